"""One checkpoint format for every model of the workspace.

A model folder holds ``config.json`` (the constructor's keyword arguments plus
a ``model_type`` tag) and ``model.safetensors`` (the tensors). Nothing is
unpickled: safetensors only, and :func:`load_pth_state_dict` for official
``.pth`` files goes through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the model."""


def save_folder(folder: str | Path, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder``.

    Tensors are made contiguous and de-duplicated (shared storage is cloned),
    as safetensors requires.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        t = tensor.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    save_file(out, str(folder / WEIGHTS_NAME))
    return folder


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON file holding an object (a ``config.json``, a weight index, a preprocessor config); CheckpointError
    naming the file when it is missing, unreadable, not JSON or not an object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent} has no {path.name}") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_config(folder: str | Path, expected_type: str | None = None) -> dict[str, Any]:
    """Read a model folder's ``config.json``; check its ``model_type`` tag."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    if not path.is_file():
        raise CheckpointError(f"model folder {folder} has no {CONFIG_NAME}")
    config = read_json_object(path)
    if expected_type is not None and config.get("model_type") != expected_type:
        raise CheckpointError(
            f"{path} describes model_type={config.get('model_type')!r}, expected {expected_type!r}"
        )
    return config


def read_tensors(folder: str | Path, name: str = WEIGHTS_NAME) -> dict[str, torch.Tensor]:
    """Read a safetensors file from ``folder`` with a clear error when it is missing or corrupt."""
    path = Path(folder) / name
    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"corrupt weights file {path}: {exc}") from exc


def load_pth_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load an official ``.pth`` state dict safely (``weights_only=True``).

    Accepts a bare state dict or the common wrappers ``{"state_dict": ...}`` and
    ``{"model": ...}``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} is not a state dict of tensors")
    return obj


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names what is missing or mismatched."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:5])})")
    if mismatched:
        problems.append(f"{len(mismatched)} with mismatched shapes (e.g. {'; '.join(mismatched[:3])})")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + ", ".join(problems))
    module.load_state_dict(state, strict=True)
