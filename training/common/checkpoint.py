"""Training checkpoints: one dict that ``--resume`` restores (torchvision references style).

Output folder of a run::

    <output_dir>/config.yaml                      the resolved config of the run
    <output_dir>/checkpoints/step_000200/
        training_state.pt                         the checkpoint dict (below)
        config.yaml                               the config it was written with
    <output_dir>/checkpoints/last                 text file: the name of the newest complete checkpoint

The checkpoint dict::

    {"format": 1, "step": int, "epoch": float,
     "model": {name: tensor},        # trainable parameters and buffers (the frozen rest is rebuilt)
     "optimizer": ..., "lr_scheduler": ...,
     "rng": capture_rng(),           # Python, numpy, torch, CUDA
     "data": {...},                  # data position (samples consumed, epoch, position in the epoch)
     "best": {...}, "config": {...}}

A checkpoint folder is written under a temporary name and renamed when complete, and ``last`` is updated
after that, so an interrupted save never leaves a broken "last" checkpoint. Only ``keep_last`` checkpoints
are kept. Files are read with ``torch.load(weights_only=True)``: nothing but tensors and plain Python
values is unpickled.

With DeepSpeed, model and optimizer states are sharded; they are then saved by accelerate's
``save_state`` into ``<checkpoint>/accelerate/`` and the dict holds the rest.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from .config import dump_config
from .errors import SetupError

FORMAT = 1
STATE_NAME = "training_state.pt"
LAST_NAME = "last"
CHECKPOINTS = "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def save_checkpoint(
    output_dir: str | Path, state: dict[str, Any], config: dict[str, Any], *, keep_last: int = 2, extra_writer=None
) -> Path:
    """Write ``state`` (must hold ``step``) as a complete checkpoint folder and point ``last`` at it.

    Args:
        output_dir: the run's output folder.
        state: the checkpoint dict.
        config: the resolved config (written beside it).
        keep_last: checkpoints to keep (older ones are deleted; 0 keeps all).
        extra_writer: optional ``callable(folder)`` writing more files into the folder before it is published
            (accelerate's sharded states with DeepSpeed).
    """
    root = Path(output_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(int(state["step"]))
    final = root / name
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save({"format": FORMAT, **state}, tmp / STATE_NAME)
    dump_config(config, tmp / "config.yaml")
    if extra_writer is not None:
        extra_writer(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    last = root / LAST_NAME
    last_tmp = root / f".{LAST_NAME}.tmp"
    last_tmp.write_text(name + "\n")
    last_tmp.replace(last)
    if keep_last > 0:
        done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))
        for old in done[:-keep_last]:
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder (its ``last``), a ``checkpoints`` folder, or the folder itself.

    Raises:
        SetupError: nothing resumable there (named in the message).
    """
    path = Path(path)
    if (path / STATE_NAME).is_file():
        return path
    for root in (path / CHECKPOINTS, path):
        last = root / LAST_NAME
        if last.is_file():
            folder = root / last.read_text().strip()
            if (folder / STATE_NAME).is_file():
                return folder
            raise SetupError(f"{last} names {folder.name!r}, which has no {STATE_NAME}")
    if not path.exists():
        raise SetupError(f"--resume {str(path)!r}: no such folder")
    raise SetupError(
        f"--resume {str(path)!r}: no checkpoint there (expected {STATE_NAME}, or {CHECKPOINTS}/{LAST_NAME})"
    )


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Read a checkpoint dict (tensors and plain values only)."""
    path = Path(folder) / STATE_NAME
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SetupError(f"checkpoint {path} cannot be read: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SetupError(f"checkpoint {path} is not a format-{FORMAT} training checkpoint")
    return state
