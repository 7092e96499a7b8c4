"""``avs-bench``: the bare AVS loop on this machine, per frame WITH its audio.

One iteration is what the ROS node does per frame, without ROS: take a camera
frame (640 x 480 uint8 by default) and the 0.975 s audio window ending at it
(44.1 kHz float by default), resample and log-mel the audio, resize the frame,
run the model, resize the mask back and apply the gate (``AVSModel.predict``).
Registered configurations (``--configs``) get random weights: they do not change the speed.
``--models`` times model folders (``save_pretrained`` output, e.g. the shipped embedded
model, which runs at 128 px where the ``embedded`` configuration says 224).

Frame paths (``--frame-paths``): ``module`` runs the model's modules from Python, ``fp32`` / ``bf16`` its frame
path (``AVSModel.set_frame_precision``: a TorchScript trace, bf16 = the FPN decoder in bf16; the node runs ``auto``,
bf16 on CPUs with native bf16); they take turns in ``--rounds`` rounds, so a machine whose speed drifts biases none,
and ``speedup`` is each path's frames/s over the first's.

Reports per configuration (the first path's figures at the top level, each path's under ``frame_paths``): frames/s
over the timed frames, p50/p99/mean ms per
frame, the work per frame (GFLOP, torch's flop counter) and the rate reached against this
machine's measured fp32 matrix product rate (``of_matmul_rate``: how close to the roofline),
parameter count; as JSON to ``--out``. With few frames, p99 is close to
the maximum; the frame count is in the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from perception_common.models import ModelSpecError
from perception_common.timing import matmul_rate, roofline_text, time_in_turns, turn_figures

from .audio import WINDOW_SAMPLES
from .config import CONFIGS
from .errors import AVSError
from .loading import load_model

DEFAULT_CONFIGS = ("tiny", "embedded", "resnet50-vggish", "pvt-v2-b5-vggish")
FRAME_PATHS = ("module", "fp32", "bf16")


def bench_config(
    name: str,
    *,
    frames: int,
    warmup: int,
    width: int,
    height: int,
    audio_rate: int,
    device: str,
    seed: int = 0,
    folder: Path | None = None,
    rate: float | None = None,
    frame_paths: tuple[str, ...] = ("module",),
    rounds: int = 1,
) -> dict:
    """Time ``frames`` iterations of the per-frame loop for configuration ``name`` (or the model ``folder``) on each
    frame path, the paths taking turns in ``rounds`` rounds (``warmup`` untimed frames before each path's first
    round, one before each later one)."""
    torch.manual_seed(seed)
    model = load_model(str(folder) if folder else f"config:{name}", device=device)
    rng = np.random.default_rng(seed)
    window = int(np.ceil(WINDOW_SAMPLES * audio_rate / 16000)) + audio_rate // 100  # + 10 ms of filter context
    images = rng.integers(0, 256, (4, height, width, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, (4, window)).astype(np.float32)
    from torch.utils.flop_counter import FlopCounterMode

    model.set_frame_precision(None)  # the counter sees the modules' operations, not those inside a trace
    with FlopCounterMode(display=False) as counter:
        model.predict(images[0], audio[0], audio_rate)
    gflop = float(counter.get_total_flops()) / 1e9

    def run(path: str, i: int) -> None:
        model.predict(images[i % 4], audio[i % 4], audio_rate)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times, rounds = time_in_turns(
        frame_paths, frames, rounds, warmup, desc=f"avs-bench {name}", run=run,
        switch=lambda path: model.set_frame_precision(None if path == "module" else path),
    )
    paths = turn_figures(times, rounds, gflop, lambda path: rate)
    return {
        "config": name,
        **({"model_folder": str(folder)} if folder else {}),
        "parameters": model.num_parameters(),
        "image_size": model.config.image_size,
        "frame_size": [height, width],
        "audio_rate": audio_rate,
        "warmup": warmup,
        "gflop_per_frame": gflop,
        **paths[frame_paths[0]],  # the first path's figures at the top level
        "frame_paths": paths,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avs-bench", description="Time the bare per-frame AVS loop (audio front end + model) on CPU or GPU."
    )
    parser.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS), choices=sorted(CONFIGS),
                        help=f"configurations to time (default: {' '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--models", nargs="*", type=Path, default=[], metavar="FOLDER",
                        help="model folders to time too (save_pretrained output, e.g. the shipped embedded model)")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per configuration (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    parser.add_argument("--frame-paths", default="module,fp32,bf16",
                        help="comma-separated: module (the modules from Python), fp32, bf16 (the frame path: a "
                             "TorchScript trace, bf16 = its decoder in bf16; the node runs auto)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="the frame paths take turns in this many rounds (default 5)")
    parser.add_argument("--width", type=int, default=640, help="camera frame width (default 640)")
    parser.add_argument("--height", type=int, default=480, help="camera frame height (default 480)")
    parser.add_argument("--audio-rate", type=int, default=44100, help="microphone sample rate (default 44100)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.configs and not args.models:
        print("avs-bench: error: nothing to time (give --configs and/or --models)", file=sys.stderr)
        return 2
    if args.frames < 1 or args.warmup < 0 or args.width < 1 or args.height < 1:
        print("avs-bench: error: --frames must be >= 1, --warmup >= 0, sizes >= 1", file=sys.stderr)
        return 2
    frame_paths = tuple(p.strip() for p in args.frame_paths.split(",") if p.strip())
    if not frame_paths or any(p not in FRAME_PATHS for p in frame_paths):
        print(f"avs-bench: error: --frame-paths takes a comma-separated list of {', '.join(FRAME_PATHS)}",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    rate = matmul_rate("fp32") if args.device == "cpu" else None
    if rate:
        print(f"avs-bench: fp32 matrix product rate here: {rate:.0f} GFLOP/s")
    try:
        with torch.inference_mode():
            jobs = [(name, None) for name in args.configs] + [(f"folder:{f.name}", f) for f in args.models]
            for name, folder in jobs:
                results.append(
                    bench_config(
                        name, frames=args.frames, warmup=args.warmup, width=args.width, height=args.height,
                        audio_rate=args.audio_rate, device=args.device, folder=folder, rate=rate,
                        frame_paths=frame_paths, rounds=args.rounds,
                    )
                )
                for path, r in results[-1]["frame_paths"].items():
                    print(f"avs-bench: {name} [{path}]: {r['fps']:.2f} frames/s "
                          f"({r['speedup']:.2f}x {frame_paths[0]}), p50 {r['p50_ms']:.1f} ms, "
                          f"p99 {r['p99_ms']:.1f} ms, {roofline_text(r)}")
    except (AVSError, ModelSpecError, RuntimeError) as exc:
        print(f"avs-bench: error: {exc}", file=sys.stderr)
        return 2
    report = {
        "benchmark": "avs bare loop (audio window + frame -> mask, per frame)",
        "device": args.device,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "matmul_gflops": {"fp32": rate} if rate else {},
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
