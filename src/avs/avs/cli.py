"""``avs-segment``: segment the sounding objects of a video with its audio.

Writes into ``--out``:

* ``masks/NNNNNN.png``: one mono8 mask per frame (0 / 255), empty when the gate
  says the audio does not belong to the frame;
* ``results.json``: per frame the time, similarity ``s``, score ``sigmoid``,
  ``sounding`` flag, mask pixel count and audio padding;
* ``overlay.mp4``: the frames with the masks blended in (``--no-overlay`` to skip).

``results.json`` is written also when the run stops early (``complete: false`` and the ``error``), so
finished frames keep their record. A frame file that cannot be read is skipped with a warning (listed
under ``skipped``); outputs and timing follow the frame's position in the source.

Timing (the same rule as the ROS node): frame ``i`` is stamped ``i / fps`` and
gets the 0.975 s of audio ENDING at its stamp. Early frames (and frames past
the end of the audio) get zero padding, reported per frame.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from perception_common.images import ImageError, overlay
from perception_common.models import ModelSpecError
from perception_common.precision import FRAME_PRECISIONS
from perception_common.video import FrameSource, RunOutcome, SkippedFrames, VideoError, VideoWriter

from .audio import SAMPLE_RATE, WINDOW_SAMPLES, load_audio_file, resample_to_16k, to_mono_float
from .errors import AudioError, AVSError, CheckpointError
from .loading import load_model


def find_ffmpeg() -> str | None:
    """Path of an ffmpeg executable: imageio-ffmpeg's bundled one, else ``ffmpeg`` on PATH, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def audio_from_video(video: Path) -> tuple[np.ndarray, int]:
    """Extract a video's audio track with ffmpeg (as 16-bit WAV, native rate and channels)."""
    exe = find_ffmpeg()
    if exe is None:
        raise AudioError(
            "--audio-from-video needs ffmpeg: `pip install imageio-ffmpeg` or install ffmpeg on PATH; "
            "or extract the track yourself and pass it with --audio FILE"
        )
    if not video.is_file():
        raise AudioError(f"video file {video} does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        cmd = [exe, "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-vn", "-acodec", "pcm_s16le", str(wav)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not wav.is_file():
            raise AudioError(f"ffmpeg could not extract audio from {video}: {proc.stderr.strip() or 'no audio track'}")
        return load_audio_file(wav)


def window_ending_at(wave16k: np.ndarray, end: int) -> tuple[np.ndarray, int]:
    """The :data:`WINDOW_SAMPLES` samples ending at ``end``, zero-filled outside the track, and the fill count."""
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    start = end - WINDOW_SAMPLES
    lo, hi = max(start, 0), min(end, wave16k.shape[0])
    if hi > lo:
        window[lo - start : hi - start] = wave16k[lo:hi]
    return window, WINDOW_SAMPLES - max(0, hi - lo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avs-segment",
        description="Segment sounding objects in a video with robust audio-visual segmentation (AVSBench-Robust).",
    )
    parser.add_argument("--video", required=True, type=Path, help="video file or folder of frame images")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", type=Path, help="audio file (WAV, FLAC, OGG; any rate and channel count)")
    source.add_argument(
        "--audio-from-video", action="store_true", help="read the video's own audio track (needs ffmpeg)"
    )
    parser.add_argument("--model", required=True, type=Path, help="model folder written by save_pretrained")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--threshold", type=float, default=None, help="sounding threshold (default: the model's)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of a folder of frames (default 30)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    parser.add_argument("--frame-precision", choices=FRAME_PRECISIONS, default="auto",
                        help="the frame path, as avs_node's frame_precision: auto (the decoder in bf16 on a CPU with "
                             "native bf16, else fp32), fp32, bf16")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Segment the video; returns the results dict that is also written as JSON."""
    skipped = SkippedFrames("avs-segment")
    model = load_model(str(args.model), device=args.device)
    model.set_frame_precision(args.frame_precision)
    frames = FrameSource(args.video, default_fps=args.fps or 30.0, on_unreadable=skipped)
    fps = float(args.fps) if args.fps else frames.fps
    if args.audio_from_video:
        if args.video.is_dir():
            raise AudioError("--audio-from-video needs a video file, not a folder of frames; use --audio FILE")
        data, rate = audio_from_video(args.video)
        audio_name = f"{args.video} (audio track)"
    else:
        data, rate = load_audio_file(args.audio)
        audio_name = str(args.audio)
    mono, channels = to_mono_float(data, layout="channels_last" if data.ndim == 2 else "auto")
    wave16k = resample_to_16k(mono, rate).numpy()

    out: Path = args.out
    (out / "masks").mkdir(parents=True, exist_ok=True)
    total = len(frames) if args.max_frames is None else min(len(frames), args.max_frames)
    records = []
    outcome = RunOutcome()
    writer = None if args.no_overlay else VideoWriter(out / "overlay.mp4", fps)
    try:
        with outcome, tqdm(total=total or None, desc="avs-segment", unit="frame") as progress:
            for index, frame in frames.indexed():
                if args.max_frames is not None and index >= args.max_frames:
                    break
                time_s = index / fps
                window, padded = window_ending_at(wave16k, int(round(time_s * SAMPLE_RATE)))
                pred = model.predict(frame, window, SAMPLE_RATE, threshold=args.threshold)
                cv2.imwrite(str(out / "masks" / f"{index:06d}.png"), pred.mask.astype(np.uint8) * 255)
                if writer is not None:
                    writer.write(overlay(frame, pred.mask))
                records.append(
                    {
                        "index": index,
                        "time_s": round(time_s, 6),
                        "similarity": pred.similarity,
                        "score": pred.score,
                        "sounding": pred.sounding,
                        "mask_pixels": int(pred.mask.sum()),
                        "audio_padded_samples": int(padded),
                    }
                )
                progress.update(1)
            if not records:
                raise VideoError(f"{args.video} yielded no readable frames")
    finally:
        if writer is not None:
            writer.close()
        results = {
            "video": str(args.video),
            "audio": audio_name,
            "audio_sample_rate": rate,
            "audio_channels": channels,
            "model": str(args.model),
            "gate": model.config.gate,
            "frame_precision": model.frame_precision,
            "threshold": model.config.threshold if args.threshold is None else args.threshold,
            "fps": fps,
            "complete": outcome.complete,
            "error": outcome.error,
            "num_frames": len(records),
            "frames": records,
            "skipped": skipped,
        }
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        print(f"avs-segment: error: --threshold must be in (0, 1), got {args.threshold}", file=sys.stderr)
        return 2
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        print(f"avs-segment: error: --fps must be a positive number of frames per second, got {args.fps}",
              file=sys.stderr)
        return 2
    try:
        with torch.inference_mode():
            results = run(args)
    except (AVSError, CheckpointError, ModelSpecError, VideoError, ImageError, OSError) as exc:
        print(f"avs-segment: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avs-segment: interrupted; the frames done so far are in {args.out}", file=sys.stderr)
        return 130
    sounding = sum(r["sounding"] for r in results["frames"])
    skipped = f", {len(results['skipped'])} unreadable skipped" if results["skipped"] else ""
    print(f"avs-segment: {results['num_frames']} frames, {sounding} sounding{skipped}; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
