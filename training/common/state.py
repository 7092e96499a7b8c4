"""Random states and seeded per-item generators, so a resumed run continues exactly.

Two kinds of randomness in a run:

* **global** (torch, numpy, Python ``random``, CUDA): dropout, LoRA dropout, anything a library draws. Their
  states are captured into the checkpoint after each saved step and restored on resume
  (:func:`capture_rng` / :func:`restore_rng`).
* **per item** (which frames of a clip, which negative audio, flips): drawn from
  :func:`item_rng` ``(seed, *keys)``, a fresh generator per item, so data never depends on the order in
  which worker processes load it or on anything drawn before.

States are stored as plain lists and tensors so ``torch.load(weights_only=True)`` reads them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def item_rng(seed: int, *keys: int) -> np.random.Generator:
    """A numpy generator that depends only on ``seed`` and the integer ``keys`` (e.g. step, slot)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) & 0xFFFFFFFF for k in keys)])


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """The global random states (Python, numpy legacy, torch CPU, every CUDA device)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), [int(v) for v in internal], gauss],
        "numpy": [
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda: Sequence[torch.Tensor] = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(list(cuda))
