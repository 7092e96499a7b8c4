"""perception-models: published checkpoints and model folders, before a robot runs them.

``perception-models list`` shows the published checkpoints nearest to the two systems (upstream, size, licence,
memory at fp16 / int4, whether they import yet). ``perception-models import avsbench CHECKPOINT DST --vggish FILE``
turns an AVSBench TPAVI checkpoint into a model folder that ``avs_node`` takes as ``model:=DST``.
``perception-models fetch NAME DST`` downloads a Hugging Face entry on a machine with internet (without network it
fails at once, saying so). ``perception-models verify DIR`` loads the folder exactly as
the nodes do (``trackgpt.loading.load_model`` / ``avs.loading.load_model``, chosen by its ``config.json``'s
``model_type``) and reports what it is: kind, parameters, their dtypes, the device, and for TrackGPT its brain; any
problem (a missing, unexpected or misshaped tensor, a broken tokenizer or adapter, a published checkpoint that needs
importing) is one line and exit status 1.

Examples::

    perception-models list
    perception-models import avsbench V2_pvt_miou_best.pth /models/avss-pvt --vggish vggish-10086976.pth
    perception-models fetch lisa-7b-v1 /models/downloads/lisa-7b-v1
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
    """``"trackgpt"`` or ``"avs"`` from ``config.json`` (ValueError naming what it found otherwise;
    CheckpointError when there is no readable ``config.json``)."""
    from perception_common.checkpoint import read_config

    config = read_config(folder)
    kind = config.get("model_type")
    if kind in ("trackgpt", "avs"):
        return kind
    if kind == "llava":  # a brain folder or a published LLaVA-family checkpoint: the TrackGPT loader says which
        return "trackgpt"
    raise ValueError(f"{folder / 'config.json'} has model_type {kind!r}; expected 'trackgpt' or 'avs'")


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
        report.update(brain_source=brain.source, brain_precision=brain.precision, brain_naming=brain.naming,
                      brain_vision=brain.vision_source, mask_threshold=float(model.perception.mask_threshold))
    else:
        report.update(gate=model.config.gate, threshold=float(model.config.threshold),
                      image_size=int(model.config.image_size), classes=int(model.config.num_classes),
                      clip_frames=int(model.config.clip_frames), decoder_style=model.config.decoder_style)
    return report


def list_published(as_json: bool) -> int:
    from dataclasses import asdict

    from .published import CATALOGUE

    if as_json:
        print(json.dumps([asdict(e) for e in CATALOGUE], indent=1))
        return 0
    for e in CATALOGUE:
        int4 = f", int4 ~{e.int4_gb:g} GB" if e.int4_gb is not None else ""
        print(f"{e.name}  [{e.system}]  {e.parameters_b:g} B parameters: fp16 ~{e.fp16_gb:g} GB{int4}")
        print(f"    upstream: {e.upstream}")
        print(f"    files:    {e.files}")
        print(f"    licence:  {e.licence}")
        print(f"    import:   {e.importer}")
    print("memory: weights only, estimated from the parameter counts; activations come on top")
    return 0


def import_checkpoint(args: argparse.Namespace) -> int:
    """``import avsbench`` / ``import lisa``."""
    if args.kind == "lisa":
        return _import_lisa(args)
    from avs.avsbench import import_avsbench

    if args.dst.exists() and any(args.dst.iterdir()) and not args.force:
        print(f"{PROG}: {args.dst} exists and is not empty (--force writes into it)", file=sys.stderr)
        return 1
    try:
        model = import_avsbench(args.src, args.vggish, audio_encoder=args.audio_encoder)
    except Exception as exc:  # the importer's errors name the tensor or file: one line
        print(f"{PROG}: import avsbench {args.src}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    model.save_pretrained(args.dst)
    c = model.config
    print(f"{PROG}: imported {args.src} -> {args.dst}: {c.backbone}, {c.channels} channels, "
          f"{'one mask' if c.num_classes == 1 else f'{c.num_classes} classes (AVSS)'}, "
          f"{model.num_parameters() / 1e6:.1f} M parameters, gate off (the AVSBench baseline), "
          f"clips of {c.clip_frames} frames")
    print(f"run it: ros2 run avs_ros avs_node --ros-args -p model:={args.dst}  (or model: in the graph YAML)")
    return 0


def _import_lisa(args: argparse.Namespace) -> int:
    from trackgpt.lisa import import_lisa

    t0 = time.monotonic()
    try:
        import_lisa(args.src, args.clip, args.dst, precision=args.precision,
                    perception_precision=args.perception_precision)
    except Exception as exc:  # the importer's errors name the tensor or file: one line
        print(f"{PROG}: import lisa {args.src}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{PROG}: imported {args.src} (+ CLIP {args.clip}) -> {args.dst} in {time.monotonic() - t0:.0f} s; "
          f"brain {args.precision}, perception {args.perception_precision}")
    print(f"run it: ros2 run trackgpt_ros tracker_node --ros-args -p model:={args.dst}  (or model: in the graph YAML)")
    return 0


def _offline_reason() -> str | None:
    """Why a download cannot work here (None when it may)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection(("huggingface.co", 443), timeout=5).close()
    except OSError as exc:
        return f"huggingface.co cannot be reached ({exc})"
    return None


def fetch(name: str, dst: Path) -> int:
    from .published import find

    try:
        entry = find(name)
    except KeyError as exc:
        print(f"{PROG}: {exc.args[0]}", file=sys.stderr)
        return 1
    if entry.hf_repo is None:
        print(f"{PROG}: {name} is not on Hugging Face: download it by hand from {entry.upstream}", file=sys.stderr)
        return 1
    reason = _offline_reason()
    if reason:
        print(f"{PROG}: fetch {name}: no network ({reason}); download {entry.hf_repo} on a machine with internet "
              f"and copy the folder here", file=sys.stderr)
        return 1
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(entry.hf_repo, local_dir=str(dst))
    except Exception as exc:  # network and hub errors: one line
        print(f"{PROG}: fetch {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{PROG}: {entry.hf_repo} -> {path}; import: {entry.importer}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the published checkpoints: upstream, size, licence, memory, importer")
    listing.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    imp = sub.add_parser("import", help="turn a published checkpoint into a model folder the nodes take")
    imp_sub = imp.add_subparsers(dest="kind", required=True)
    avsb = imp_sub.add_parser("avsbench", help="an AVSBench TPAVI checkpoint (S4 / MS3 / AVSS, ResNet-50 / PVT-v2-b5)")
    avsb.add_argument("src", type=Path, help="the .pth AVSBench's train.py wrote (e.g. V2_pvt_miou_best.pth)")
    avsb.add_argument("dst", type=Path, help="model folder to write")
    avsb.add_argument("--vggish", type=Path, required=True, help="torchvggish vggish-10086976.pth (the audio network)")
    avsb.add_argument("--audio-encoder", default="vggish", help=argparse.SUPPRESS)  # small sizes for tests
    avsb.add_argument("--force", action="store_true", help="write into a non-empty DST")
    lisa = imp_sub.add_parser("lisa", help="a LISA folder (xinlai/LISA-7B-v1, ...) and a CLIP ViT-L/14 folder")
    lisa.add_argument("src", type=Path, help="the LISA folder (config.json, pytorch_model*.bin, tokenizer.model)")
    lisa.add_argument("dst", type=Path, help="model folder to write (must not exist or be empty)")
    lisa.add_argument("--clip", type=Path, required=True,
                      help="CLIP folder (openai/clip-vit-large-patch14): LISA's folders carry no vision tower")
    lisa.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16", "int8", "int4"),
                      help="the brain's precision saved in the folder (default bf16; int4/int8 need CUDA)")
    lisa.add_argument("--perception-precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                      help="SAM and phi (default fp32, as LISA keeps them)")
    get = sub.add_parser("fetch", help="download a Hugging Face entry of `list` (needs internet)")
    get.add_argument("name", help="a name from `perception-models list`")
    get.add_argument("dst", type=Path, help="folder to download into")
    check = sub.add_parser("verify", help="load a model folder as the nodes do and report it (exit 1 on any problem)")
    check.add_argument("folder", type=Path, help="model folder (save_pretrained output)")
    check.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return list_published(args.json)
    if args.command == "import":
        return import_checkpoint(args)
    if args.command == "fetch":
        return fetch(args.name, args.dst)
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
