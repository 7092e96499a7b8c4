"""The one way every entry point turns a model spec into a ready TrackGPT: :func:`load_model`.

``tracker_node``, ``trackgpt-track``, ``trackgpt-bench``, ``replay-eval``'s library path, ``perception-bench``'s bare
loop, training's ``init_from``, the calibration and the evaluation scripts all call it, so a model spec means the
same everywhere:

* ``""``: the embedded model shipped with the package (``trackgpt/pretrained/embedded``);
* ``"config:NAME"``: the registered configuration ``NAME`` with random weights (tests, benchmarks);
* a folder written by :meth:`trackgpt.TrackGPT.save_pretrained`.

A folder whose tensors do not all fit (missing, unexpected or of another shape) is a
:class:`~trackgpt.errors.CheckpointError` naming them, never a partly random model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perception_common.models import resolve_device, resolve_model_spec, shipped_model_dir

from .config import TrackGPTConfig, get_config
from .errors import CheckpointError
from .llava import foreign_checkpoint
from .model import TrackGPT


def shipped_folder() -> Path:
    """The embedded model shipped with the package."""
    import trackgpt

    return shipped_model_dir(trackgpt)


def load_model(
    spec: str | TrackGPTConfig = "",
    *,
    device: str = "cpu",
    precision: str | None = None,
    with_brain: bool = True,
    **brain_overrides: Any,
) -> TrackGPT:
    """The TrackGPT ``spec`` names (see the module docstring), on ``device`` (``auto`` = CUDA when there is one), in
    eval mode.

    Args:
        spec: ``""``, ``"config:NAME"``, a model folder, or a :class:`~trackgpt.config.TrackGPTConfig` (a fresh
            model of that configuration: training's first stage).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: the brain's precision (``fp32``, ``bf16``, ``fp16``, ``int8``, ``int4``); None keeps the
            folder's or configuration's own.
        with_brain: False loads the perception alone (no brain, no phi): what a process that decodes frames while
            another one reasons needs (:class:`trackgpt.brain_process.ProcessBrain`).
        brain_overrides: further :class:`~trackgpt.config.BrainConfig` changes (e.g. ``path=...``).

    Raises:
        perception_common.models.ModelSpecError: the spec names nothing (no folder, no shipped model, bad device).
        CheckpointError / ConfigError / BrainError: the folder or configuration cannot be loaded (named).
    """
    target = resolve_device(device)
    if precision is not None:
        brain_overrides = {**brain_overrides, "precision": precision}
    if isinstance(spec, TrackGPTConfig):
        config = spec.replace(brain=brain_overrides) if brain_overrides else spec
        model = TrackGPT.from_config(config) if with_brain else TrackGPT(config=config)
        return model.to(target).eval()
    kind, value = resolve_model_spec(spec, shipped_folder())
    if kind == "folder":
        _refuse_foreign(Path(value))
    if kind == "config":
        if with_brain:
            model = TrackGPT.from_config(value, **({"brain": brain_overrides} if brain_overrides else {}))
        else:
            model = TrackGPT(config=get_config(value))
    else:
        model = TrackGPT.from_pretrained(value, with_brain=with_brain, **brain_overrides)
    return model.to(target).eval()


def _refuse_foreign(folder: Path) -> None:
    """A published checkpoint that needs importing is named as such (not as a wrong ``model_type``)."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return  # from_pretrained says what is wrong with the folder
    why = foreign_checkpoint(config) if isinstance(config, dict) else None
    if why:
        raise CheckpointError(f"model folder {folder} is {why}")
