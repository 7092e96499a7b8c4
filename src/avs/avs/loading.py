"""The one way every entry point turns a model spec into a ready AVS model: :func:`load_model`.

``avs_node``, ``avs-segment``, ``avs-bench``, ``replay-eval``'s library path, ``perception-bench``'s bare loop,
training's ``init_from``, the calibration and the evaluation scripts all call it, so a model spec means the same
everywhere:

* ``""``: the gated embedded model shipped with the package (``avs/pretrained/embedded``;
  ``avs/pretrained/embedded-baseline`` is its un-gated baseline, a folder like any other);
* ``"config:NAME"``: the registered configuration ``NAME`` with random weights (tests, benchmarks);
* a folder written by :meth:`avs.AVSModel.save_pretrained`.

A folder whose tensors do not all fit is a :class:`~avs.errors.CheckpointError` naming them, never a partly
random model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perception_common.models import resolve_device, resolve_model_spec, shipped_model_dir

from .model import AVSModel, build_model


def shipped_folder(baseline: bool = False) -> Path:
    """The gated embedded model shipped with the package, or (``baseline``) its un-gated baseline."""
    import avs

    folder = shipped_model_dir(avs)
    return folder.with_name(folder.name + "-baseline") if baseline else folder


def load_model(
    spec: str = "",
    *,
    device: str = "cpu",
    gate_overrides: Mapping[str, Any] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
) -> AVSModel:
    """The AVS model ``spec`` names (see the module docstring), on ``device`` (``auto`` = CUDA when there is one),
    in eval mode.

    Args:
        spec: ``""``, ``"config:NAME"`` or a model folder.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        gate_overrides: folders only: change the saved gate (see :meth:`AVSModel.from_pretrained`).
        config_overrides: ``config:NAME`` only: field changes of the registered configuration.

    Raises:
        perception_common.models.ModelSpecError: the spec names nothing (no folder, no shipped model, bad device).
        CheckpointError / ConfigError: the folder or configuration cannot be loaded (named).
    """
    kind, value = resolve_model_spec(spec, shipped_folder())
    target = resolve_device(device)
    if kind == "config":
        if gate_overrides:
            raise ValueError("gate_overrides apply to model folders; use config_overrides with config:NAME")
        return build_model(value, **dict(config_overrides or {})).to(target).eval()
    if config_overrides:
        raise ValueError("config_overrides apply to config:NAME; a folder's configuration is its own")
    return AVSModel.from_pretrained(value, device=target, gate_overrides=gate_overrides).eval()
