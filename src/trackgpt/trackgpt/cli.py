"""``trackgpt-track``: run instruction tracking over a video file or a folder of frames.

Writes into ``--out``:

* ``masks/000000.png`` ...: one mono8 mask per frame (0 / 255; all zeros while reasoning);
* ``track.json``: per frame the state, S_p, box, rethinking flag, plus the answers and the rethink count;
  written also when the run stops early (``complete: false`` and the ``error``), so finished frames keep
  their record;
* ``overlay.mp4``: the frames with the mask and the state drawn on them.

By default the run is offline: whenever the brain has work, the tracker waits for it before the next
frame, so results do not depend on the machine's speed. ``--live`` runs as on a robot instead: frames go
on while the brain thinks (the first frames are then REASONING without a mask).

A frame file that cannot be read is skipped with a warning (listed under ``skipped`` in ``track.json``);
outputs are named by the frame's position in the source, so they stay aligned with it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from perception_common.compiled import FRAME_COMPILE
from perception_common.images import ImageError, overlay
from perception_common.models import ModelSpecError
from perception_common.precision import FRAME_PRECISIONS
from perception_common.video import FrameSource, RunOutcome, SkippedFrames, VideoError, VideoWriter

from .aot import use_frame_compile
from .config import CONFIGS
from .errors import CheckpointError, TrackGPTError
from .tracker import OnlineTracker, TrackState, TrackStep

PROG = "trackgpt-track"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Instruction tracking over a video file or a folder of frames.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--video", required=True, type=Path, help="video file or folder of frame images")
    p.add_argument("--instruction", required=True, help="what to track, e.g. 'who will win the race?'")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="TrackGPT checkpoint folder (save_pretrained)")
    model.add_argument("--config", choices=sorted(CONFIGS), help="build a configuration with random weights (demo)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--tau", type=float, default=0.5, help="rethink when S_p < tau x the first S_p after reasoning")
    p.add_argument("--mask-threshold", type=float, default=None,
                   help="mask logit threshold (default: the model's config.sam.mask_threshold)")
    p.add_argument("--live", action="store_true", help="do not wait for the brain (robot timing)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--brain-threads", type=int, default=None, help="torch threads of the brain worker")
    p.add_argument("--frame-threads", type=int, default=None, help="torch threads of the frame loop")
    p.add_argument("--brain-timeout", type=float, default=600.0, help="seconds to wait for one brain answer offline")
    p.add_argument("--frame-precision", choices=FRAME_PRECISIONS, default="auto",
                   help="the frame path's image encoder, as tracker_node's frame_precision: auto (bf16 on a CPU with "
                        "native bf16, else fp32), fp32, bf16")
    p.add_argument("--frame-compile", choices=FRAME_COMPILE, default="auto",
                   help="the image encoder as a compiled package, as tracker_node's frame_compile: auto (when "
                        "trackgpt-compile built one for the model), on (build it now if missing), off")
    return p


def _load_model(args: argparse.Namespace):
    from .loading import load_model

    if args.model is not None:
        return load_model(str(args.model))
    print(f"{PROG}: note: configuration {args.config!r} with random weights (no checkpoint)", file=sys.stderr)
    return load_model(f"config:{args.config}")


def _draw(frame: np.ndarray, step: TrackStep) -> np.ndarray:
    img = overlay(frame, step.mask) if step.mask is not None else frame.copy()
    label = step.state.value
    if step.purport_score is not None:
        label += f"  S_p={step.purport_score:.2f}"
    if step.rethinking:
        label += "  RETHINK"
    cv2.putText(img, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2, cv2.LINE_AA)
    return img


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Track and write the outputs; returns the JSON summary.

    ``track.json`` is written however the run ends; an error is raised again after it is written.
    """
    skipped = SkippedFrames(PROG)
    source = FrameSource(args.video, on_unreadable=skipped)
    model = _load_model(args)
    if args.mask_threshold is not None:  # finite: checked in main
        model.perception.mask_threshold = args.mask_threshold
    model.perception.set_frame_precision(args.frame_precision)
    frame_compile = use_frame_compile(
        model, args.frame_compile, str(model.perception.device), spec=args.model or f"config:{args.config}",
        frame_precision=args.frame_precision, threads=args.frame_threads or torch.get_num_threads(),
        warn=lambda line: print(f"{PROG}: warning: {line}", file=sys.stderr))
    out: Path = args.out
    (out / "masks").mkdir(parents=True, exist_ok=True)
    total = len(source)
    if args.max_frames is not None:
        total = min(total, args.max_frames) if total else args.max_frames
    frames: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    outcome = RunOutcome()
    tracker = OnlineTracker(perception=model, tau=args.tau, brain_threads=args.brain_threads,
                            frame_threads=args.frame_threads)
    try:
        with outcome:
            tracker.set_instruction(args.instruction)
            with VideoWriter(out / "overlay.mp4", source.fps) as writer, \
                    tqdm(total=total or None, desc=PROG, unit="frame") as progress:
                for index, frame in source.indexed():
                    if args.max_frames is not None and index >= args.max_frames:
                        break
                    step = tracker.step(frame)
                    if not args.live and not tracker.wait_for_brain(args.brain_timeout):
                        raise TrackGPTError(f"the brain gave no answer within {args.brain_timeout} s")
                    mask = step.mask if step.mask is not None else np.zeros(frame.shape[:2], bool)
                    name = f"masks/{index:06d}.png"
                    cv2.imwrite(str(out / name), mask.astype(np.uint8) * 255)
                    writer.write(_draw(frame, step))
                    if step.answer is not None and (not answers or answers[-1]["answer"] != step.answer):
                        answers.append({"frame": index, "answer": step.answer})
                    frames.append({
                        "index": index,
                        "state": step.state.value,
                        "purport_score": step.purport_score,
                        "rethinking": step.rethinking,
                        "box": list(step.box) if step.box is not None else None,
                        "mask": name,
                        "error": step.error,
                    })
                    progress.update(1)
            if not frames:
                raise VideoError(f"{args.video} yielded no readable frames")
    finally:
        tracker.close()
        summary = {
            "instruction": args.instruction,
            "model": str(args.model) if args.model is not None else f"config:{args.config}",
            "tau": args.tau,
            "mask_threshold": model.perception.mask_threshold,
            "frame_precision": model.perception.frame_precision,
            "frame_compile": frame_compile,
            "live": args.live,
            "fps": source.fps,
            "complete": outcome.complete,
            "error": outcome.error,
            "frames": frames,
            "skipped": skipped,
            "answers": answers,
            "rethinks": sum(f["rethinking"] for f in frames),
            "tracking_frames": sum(f["state"] == TrackState.TRACKING.value for f in frames),
        }
        (out / "track.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.tau <= 1.0:
        print(f"{PROG}: error: --tau must be in [0, 1], got {args.tau}", file=sys.stderr)
        return 2
    if args.mask_threshold is not None and not math.isfinite(args.mask_threshold):
        print(f"{PROG}: error: --mask-threshold must be finite, got {args.mask_threshold}", file=sys.stderr)
        return 2
    try:
        summary = run(args)
    except (TrackGPTError, CheckpointError, ModelSpecError, VideoError, ImageError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the frames done so far are in {args.out}", file=sys.stderr)
        return 130
    skipped = f", {len(summary['skipped'])} unreadable skipped" if summary["skipped"] else ""
    print(f"{PROG}: {len(summary['frames'])} frames, {summary['tracking_frames']} tracking, "
          f"{summary['rethinks']} rethinks{skipped} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
