"""perception-models: check a model folder before a robot runs it.

``perception-models verify DIR`` loads the folder exactly as the nodes do (``trackgpt.loading.load_model`` /
``avs.loading.load_model``, chosen by its ``config.json``'s ``model_type``) and reports what it is: kind,
parameters, their dtypes, the device, and for TrackGPT its brain; any problem (a missing, unexpected or misshaped
tensor, a broken tokenizer or adapter, a published checkpoint that needs importing) is one line and exit status 1.

Examples::

    perception-models verify src/trackgpt/trackgpt/pretrained/embedded
    perception-models verify /models/avs-gated --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

PROG = "perception-models"


def model_kind(folder: Path) -> str:
    """``"trackgpt"`` or ``"avs"`` from ``config.json`` (ValueError naming what it found otherwise)."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{folder} has no config.json (not a model folder)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON: {exc}") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind in ("trackgpt", "avs"):
        return kind
    if kind == "llava":  # a brain folder or a published LLaVA-family checkpoint: the TrackGPT loader says which
        return "trackgpt"
    raise ValueError(f"{path} has model_type {kind!r}; expected 'trackgpt' or 'avs'")


def verify(folder: Path, *, device: str = "cpu") -> dict[str, Any]:
    """Load ``folder`` as the nodes do and describe it; raises the loader's error when it does not load."""
    kind = model_kind(folder)
    t0 = time.monotonic()
    if kind == "trackgpt":
        from trackgpt.loading import load_model

        model = load_model(str(folder), device=device)
    else:
        from avs.loading import load_model

        model = load_model(str(folder), device=device)
    seconds = time.monotonic() - t0
    params = list(model.parameters())
    report: dict[str, Any] = {
        "folder": str(folder),
        "kind": kind,
        "parameters": int(sum(p.numel() for p in params)),
        "dtypes": {str(k).replace("torch.", ""): v for k, v in Counter(p.dtype for p in params).items()},
        "device": str(params[0].device) if params else device,
        "load_seconds": round(seconds, 2),
        "files_mb": round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1),
    }
    if kind == "trackgpt":
        brain = model.config.brain
        report.update(brain_source=brain.source, brain_precision=brain.precision,
                      mask_threshold=float(model.perception.mask_threshold))
    else:
        report.update(gate=model.config.gate, threshold=float(model.config.threshold),
                      image_size=int(model.config.image_size))
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="load a model folder as the nodes do and report it (exit 1 on any problem)")
    check.add_argument("folder", type=Path, help="model folder (save_pretrained output)")
    check.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = verify(args.folder, device=args.device)
    except Exception as exc:  # every loader error is a one-line answer here: that is the command's purpose
        print(f"{PROG}: {args.folder}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        width = max(len(k) for k in report)
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
        print(f"{PROG}: {args.folder} loads: OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
