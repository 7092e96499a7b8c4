"""How nodes and command-line tools name a model: one rule for both libraries.

``model`` parameter values:

* ``""``: the embedded model shipped with the package (``<package>/pretrained/embedded``);
* ``"config:NAME"``: the library's registered configuration ``NAME`` with random
  weights (tests, benchmarks; meaningless outputs);
* anything else: a model folder written by ``save_pretrained``.
"""

from __future__ import annotations

from pathlib import Path


def shipped_model_dir(package) -> Path:
    """Where a model library ships its embedded model: ``<package folder>/pretrained/embedded``.

    ``package`` is the imported library module (``trackgpt`` or ``avs``); symbolic links (colcon's
    ``--symlink-install``) are resolved to the source folder, where the weights are committed.
    """
    return Path(package.__file__).resolve().parent / "pretrained" / "embedded"


class ModelSpecError(ValueError):
    """A model parameter names nothing usable."""


def resolve_model_spec(spec: str, shipped: Path) -> tuple[str, str]:
    """``("config", NAME)`` or ``("folder", PATH)`` for a ``model`` parameter value (see module doc)."""
    spec = spec.strip()
    if spec.startswith("config:"):
        name = spec.split(":", 1)[1]
        if not name:
            raise ModelSpecError("model 'config:' needs a configuration name, e.g. config:tiny")
        return "config", name
    folder = Path(spec).expanduser() if spec else shipped
    if not folder.is_dir():
        if not spec:
            raise ModelSpecError(
                f"the shipped embedded model is missing ({folder}); run `make train-embedded` "
                "or set the model parameter to a model folder"
            )
        raise ModelSpecError(f"model folder {folder} does not exist")
    return "folder", str(folder)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda[:N]`` is checked to exist."""
    import torch

    device = device.strip() or "auto"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelSpecError(f"device {device!r} requested but CUDA is not available on this machine")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ModelSpecError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    if device != "cpu":
        raise ModelSpecError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device
