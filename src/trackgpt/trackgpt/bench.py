"""``trackgpt-bench``: the bare per-frame loop (encode + decode + propagation) of each configuration.

For every configuration (or the ones given with ``--configs``) the perception part is built with random
weights (the brain is not part of the frame loop and is not built) and run over synthetic frames at
``--size`` (640x480 by default). Per configuration the JSON holds frames/s, p50 / p99 / mean latency in ms,
parameter count and the settings. Configurations with a full-size SAM (ViT-H, ~640 M parameters) need
``--full``; without it they are listed as skipped with the reason. Configurations sharing the same SAM
sizes are measured once.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from perception_common.timing import frame_time_stats

from .config import CONFIGS, SAM_SIZES, get_config

PROG = "trackgpt-bench"
#: SAM sizes cheap enough to build and run by default on a robot CPU.
LIGHT_SAM = {SAM_SIZES["tiny"].encoder_embed_dim, SAM_SIZES["small"].encoder_embed_dim}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Per-frame TrackGPT perception benchmark (JSON).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS), help="configurations")
    p.add_argument("--full", action="store_true", help="also build full-size SAM configurations (lots of RAM)")
    p.add_argument("--frames", type=int, default=50, help="timed frames per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    p.add_argument("--size", default="640x480", help="frame WIDTHxHEIGHT")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"{PROG}: error: --size must look like 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise SystemExit(f"{PROG}: error: --size must be positive, got {text!r}")
    return w, h


def bench_config(name: str, *, frames: int, warmup: int, size: tuple[int, int], device: str) -> dict[str, Any]:
    """Time the per-frame loop of one configuration's perception (random weights)."""
    from .model import TrackGPT

    config = get_config(name, sam={"checkpoint": None})
    model = TrackGPT(config=config).to(device)
    w, h = size
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    dim = config.sam.prompt_embed_dim
    q_r = torch.randn(1, dim, device=device)
    q_p = torch.randn(1, dim, device=device)
    q_t = q_r
    times = []
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for i in tqdm(range(warmup + frames), desc=name, unit="frame", leave=False):
        sync()
        t0 = time.perf_counter()
        decoded = model.decode(model.encode_frame(pool[i % len(pool)]), referring_query=q_r, online_query=q_t,
                               purport_query=q_p)
        q_t = decoded.next_query
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {
        "config": name,
        "sam_img_size": config.sam.img_size,
        "sam_encoder": f"embed {config.sam.encoder_embed_dim}, depth {config.sam.encoder_depth}",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        **frame_time_stats(times),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = _size(args.size)
    if args.frames < 1 or args.warmup < 0:
        print(f"{PROG}: error: --frames must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results: list[dict[str, Any]] = []
    measured: dict[Any, dict[str, Any]] = {}
    for name in args.configs:
        sam = CONFIGS[name].sam
        key = (sam.img_size, sam.encoder_embed_dim, sam.encoder_depth, sam.prompt_embed_dim)
        if sam.encoder_embed_dim not in LIGHT_SAM and not args.full:
            results.append({"config": name, "skipped": "full-size SAM; pass --full to build it with random weights"})
            continue
        if key in measured:
            results.append({**measured[key], "config": name, "same_perception_as": measured[key]["config"]})
            continue
        result = bench_config(name, frames=args.frames, warmup=args.warmup, size=size, device=args.device)
        measured[key] = result
        results.append(result)
        print(f"{name}: {result['fps']:.1f} frames/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    report = {
        "benchmark": "trackgpt per-frame encode+decode+propagation (random weights, brain excluded)",
        "frame_size": {"width": size[0], "height": size[1]},
        "threads": torch.get_num_threads(),
        "device": args.device,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
