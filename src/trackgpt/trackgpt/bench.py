"""``trackgpt-bench``: the bare per-frame loop (encode + decode + propagation) of each configuration.

For every configuration (or the ones given with ``--configs``) the perception part is built with random
weights (the brain is not part of the frame loop and is not built) and run over synthetic frames at
``--size`` (640x480 by default), once per frame path (``--frame-paths``): ``module`` = the model's own modules in
fp32 (training's path, and the only one before the inference copies existed), ``fp32`` / ``bf16`` = the inference
copies of :mod:`trackgpt.frame_path` with the image encoder in that precision (what the node runs; ``auto`` picks
bf16 on CPUs with native bf16), ``fp32-compiled`` / ``bf16-compiled`` = the same with the image encoder as an
AOTInductor package (``trackgpt-compile``; built on first use, about a minute, then cached). The paths take
turns in ``--rounds`` rounds (module, fp32, bf16, module, ...), so a machine whose speed drifts while it runs
(this project's 2-core VM swings by 1.5x from one second to the next) biases none of them; ``speedup`` is each
path's frames/s over the first path's. Per configuration and path the JSON holds frames/s, p50 / p99 / mean latency
in ms, the work per frame (GFLOP, torch's flop counter) and the rate achieved, against this machine's measured
matrix product rate in fp32 and bf16 (the roofline: ``of_matmul_rate`` is the fraction reached), parameter count
and the settings. Configurations with a full-size SAM (ViT-H, ~640 M parameters) need ``--full``; without it they
are listed as skipped with the reason. Configurations sharing the same SAM sizes are measured once.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception_common.precision import cpu_has_bf16
from perception_common.timing import matmul_rate, roofline_text, time_in_turns, turn_figures

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
    p.add_argument("--frames", type=int, default=50, help="timed frames per configuration and frame path")
    p.add_argument("--rounds", type=int, default=5,
                   help="the frame paths take turns in this many rounds (--frames shared among them)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    p.add_argument("--size", default="640x480", help="frame WIDTHxHEIGHT")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--frame-paths", default="module,fp32,bf16",
                   help="comma-separated: module (the model's own fp32 modules), fp32, bf16 (inference copies), "
                        "fp32-compiled, bf16-compiled (the image encoder as an AOTInductor package: built once, "
                        "about a minute on 2 cores, then cached)")
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"{PROG}: error: --size must look like 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise SystemExit(f"{PROG}: error: --size must be positive, got {text!r}")
    return w, h


FRAME_PATHS = ("module", "fp32", "bf16", "fp32-compiled", "bf16-compiled")


def bench_config(name: str, *, frames: int, warmup: int, size: tuple[int, int], device: str,
                 frame_paths: tuple[str, ...] = ("module",), rates: dict[str, float] | None = None,
                 rounds: int = 1) -> dict[str, Any]:
    """Time the per-frame loop of one configuration's perception (random weights) on each frame path, the paths
    taking turns in ``rounds`` rounds (``frames`` per path in all; ``warmup`` untimed frames before each path's
    first round, one before each later one)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .model import TrackGPT

    config = get_config(name, sam={"checkpoint": None})
    torch.manual_seed(0)  # the same random weights every run: the compiled encoder's package is built once
    model = TrackGPT(config=config).to(device)
    w, h = size
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    dim = config.sam.prompt_embed_dim
    q_r = torch.randn(1, dim, device=device)
    q_p = torch.randn(1, dim, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    perception = model.perception

    def step(frame, q_t):
        return model.decode(model.encode_frame(frame), referring_query=q_r, online_query=q_t, purport_query=q_p)

    with FlopCounterMode(display=False) as counter:
        step(pool[0], q_r)
    gflop = counter.get_total_flops() / 1e9
    q_t = {path: q_r for path in frame_paths}

    def run(path: str, i: int) -> None:
        q_t[path] = step(pool[i % len(pool)], q_t[path]).next_query
        sync()

    def switch(path: str) -> None:
        perception.set_frame_precision(None if path == "module" else path.removesuffix("-compiled"))
        if path.endswith("-compiled"):
            compiled = perception.compile_frame_path()
            if not compiled.cached:
                print(f"{name} [{path}]: compiled encoder built in {compiled.seconds:.0f} s (cached: "
                      f"{compiled.path})", file=sys.stderr)

    times, rounds = time_in_turns(frame_paths, frames, rounds, warmup, desc=name, run=run, switch=switch)
    paths = turn_figures(times, rounds, gflop,
                         lambda path: (rates or {}).get("bf16" if path.startswith("bf16") else "fp32"))
    perception.set_frame_precision(None)
    return {
        "config": name,
        "sam_img_size": config.sam.img_size,
        "sam_encoder": f"embed {config.sam.encoder_embed_dim}, depth {config.sam.encoder_depth}",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "gflop_per_frame": gflop,
        # the first path's figures at the top level, as before the frame paths
        **paths[frame_paths[0]],
        "frame_paths": paths,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = _size(args.size)
    if args.frames < 1 or args.warmup < 0:
        print(f"{PROG}: error: --frames must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    frame_paths = tuple(p.strip() for p in args.frame_paths.split(",") if p.strip())
    if not frame_paths or any(p not in FRAME_PATHS for p in frame_paths):
        print(f"{PROG}: error: --frame-paths takes a comma-separated list of {', '.join(FRAME_PATHS)}", file=sys.stderr)
        return 2
    rates = {}
    if args.device == "cpu":
        rates = {dt: matmul_rate(dt) for dt in ("fp32", "bf16")}
        print(f"matrix product rate here: fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s")
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
        result = bench_config(name, frames=args.frames, warmup=args.warmup, size=size, device=args.device,
                              frame_paths=frame_paths, rates=rates, rounds=args.rounds)
        measured[key] = result
        results.append(result)
        for path, r in result["frame_paths"].items():
            print(f"{name} [{path}]: {r['fps']:.1f} frames/s ({r['speedup']:.2f}x {frame_paths[0]}), "
                  f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {roofline_text(r)}")
    report = {
        "benchmark": "trackgpt per-frame encode+decode+propagation (random weights, brain excluded)",
        "frame_size": {"width": size[0], "height": size[1]},
        "threads": torch.get_num_threads(),
        "device": args.device,
        "matmul_gflops": rates,
        "cpu_bf16": cpu_has_bf16(),
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
