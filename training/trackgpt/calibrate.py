"""Choose a trained TrackGPT's mask threshold on a VAL split of an instruction world (InsTrack layout).

Usage::

    python -m training.trackgpt.calibrate RUN/model --data data/worlds/instruction                # print the table
    python -m training.trackgpt.calibrate RUN/model --data data/worlds/instruction --write --plot RUN/mask.png

The tracker's mask is ``logits > sam.mask_threshold`` (0, as in SAM). A small decoder trained for a few thousand
steps is not calibrated around 0, so this tool tracks the split's (video, instruction) pairs once (every video,
up to ``--max-expressions`` instructions each, the evaluation's selection) as the tracker does
(``perception_eval.tracking.evaluate_video``, synchronous timing: reasoning on frame 0, propagation, rethinking
below ``tau`` x the reference purport score; the threshold changes none of these, only which pixels are in the
mask), keeps each frame's logits, and scores J&F by the workspace's one rule (every frame,
``perception_eval.metrics.score_track``) at every threshold of ``--thresholds``. ``--write`` stores the best one in the
model folder's ``config.json`` (``config.sam.mask_threshold``); weights are not touched. Choose on VAL, never on the
split you report.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.config import float_grid


@dataclass
class TrackRecord:
    """One tracked (video, instruction): the ground truth and the logits of every frame."""

    video: str
    expression_id: str
    kind: str
    gts: np.ndarray  # T x H x W bool
    logits: np.ndarray  # T x H x W float32


def instruction_pairs(root: str | Path, split: str, *, max_videos: int | None = None, max_expressions: int = 2):
    """The first ``max_videos`` videos of ``split`` (all when None) and at most ``max_expressions`` instructions
    of each, as ``(video, expression)`` pairs (the held-out evaluation's selection)."""
    from perception_eval.datasets import InsTrack

    ds = InsTrack(root, split, require_masks=True)
    pairs = []
    for v, video in enumerate(ds):
        if max_videos is not None and v >= max_videos:
            break
        for expression in video.expressions[:max_expressions]:
            pairs.append((video, expression))
    return pairs


def track_records(model, pairs, *, tau: float = 0.5, progress: bool = False) -> list[TrackRecord]:
    """Track each pair as the tracker does (rethinking on) and keep the ground truth and the per-frame logits."""
    from tqdm import tqdm

    from perception_eval.tracking import evaluate_video

    records = []
    for video, expression in tqdm(pairs, desc="track", unit="instruction", disable=not progress, dynamic_ncols=True):
        _, run = evaluate_video(model, video, expression, tau=tau, keep_logits=True)
        records.append(track_record(video, expression, run.logits))
    return records


def track_record(video, expression, logits: Sequence[np.ndarray]) -> TrackRecord:
    """The record of one tracked pair from the per-frame logits ``evaluate_video`` collected."""
    gts = np.stack([video.load_mask(i) == int(expression.obj_id) for i in range(len(logits))])
    return TrackRecord(video.name, expression.expression_id, expression.kind, gts, np.stack(logits))


def score_record(record: TrackRecord, threshold: float):
    """J/F scores (``DavisObjectScore``) of ``record``'s masks at ``threshold``, every frame (the one rule)."""
    from perception_eval.metrics import score_track

    return score_track(record.gts, record.logits > threshold, sequence=record.video, object_id=record.expression_id)


def jf_by_threshold(records: Sequence[TrackRecord], thresholds: Sequence[float]) -> dict[float, dict[str, float]]:
    """J&F (every frame, as the evaluation) overall and per instruction kind at each
    threshold: ``{threshold: {"overall": J&F, "kind=explicit": J&F, ...}}``."""
    from perception_eval.metrics import summarize_davis

    table: dict[float, dict[str, float]] = {}
    for t in thresholds:
        groups: dict[str, list] = {}
        for r in records:
            obj = score_record(r, t)
            for key in ("overall", f"kind={r.kind}"):
                groups.setdefault(key, []).append(obj)
        table[float(t)] = {k: summarize_davis(v).overall["J&F-Mean"] for k, v in sorted(groups.items())}
    return table


def write_mask_threshold(folder: str | Path, threshold: float) -> None:
    """Set ``config.sam.mask_threshold`` in a TrackGPT folder's ``config.json`` (nothing else changes)."""
    path = Path(folder) / "config.json"
    meta = json.loads(path.read_text())
    meta["config"]["sam"]["mask_threshold"] = float(threshold)
    path.write_text(json.dumps(meta, indent=2) + "\n")


def plot_table(table: dict[float, dict[str, float]], chosen: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = sorted(table)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for key in table[ts[0]]:
        ax.plot(ts, [table[t][key] for t in ts], marker=".", label=key, lw=2 if key == "overall" else 1)
    ax.axvline(chosen, color="black", lw=1, ls=":")
    ax.set_xlabel("mask logit threshold")
    ax.set_ylabel("J&F (VAL)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.trackgpt.calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="the TrackGPT model folder (save_pretrained output)")
    p.add_argument("--data", type=Path, default=Path("data/worlds/instruction"), help="instruction world root")
    p.add_argument("--split", default="val", help="the split calibrated on (default: val)")
    p.add_argument("--max-videos", type=int, default=0, help="first N videos (0: all)")
    p.add_argument("--max-expressions", type=int, default=2, help="instructions per video (default 2)")
    p.add_argument("--tau", type=float, default=0.5, help="rethinking threshold factor (default 0.5)")
    p.add_argument(
        "--thresholds",
        type=float_grid,
        default=float_grid("-4:1:0.5"),
        help="start:stop:step or a,b,c (default -4:1:0.5; write --thresholds=-2,-1,0 when it starts with '-')",
    )
    p.add_argument("--write", action="store_true", help="store the best threshold in <model>/config.json")
    p.add_argument("--plot", type=Path, default=None, help="write J&F against the threshold here (PNG)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    import torch

    from perception_common.checkpoint import CheckpointError
    from perception_eval.datasets import DatasetError
    from trackgpt.loading import load_model

    torch.set_num_threads(max(1, args.threads))
    try:
        model = load_model(str(args.model))
        pairs = instruction_pairs(
            args.data, args.split, max_videos=args.max_videos or None, max_expressions=args.max_expressions
        )
        if not pairs:
            raise ValueError(f"{args.data}: no instructions in split {args.split!r}")
        records = track_records(model, pairs, tau=args.tau, progress=not args.no_progress)
        table = jf_by_threshold(records, args.thresholds)
    except (CheckpointError, DatasetError, OSError, ValueError) as exc:
        print(f"calibrate: error: {exc}", file=sys.stderr)
        return 2
    chosen = max(table, key=lambda t: table[t]["overall"])
    keys = list(table[chosen])
    now = model.perception.mask_threshold
    print(f"{len(records)} instructions of {args.data} {args.split}; J&F by mask threshold (the model's: {now})")
    print(f"{'threshold':>9}  " + "  ".join(f"{k:>16}" for k in keys))
    for t, row in sorted(table.items()):
        mark = "  <- best" if t == chosen else ""
        print(f"{t:9.2f}  " + "  ".join(f"{row[k]:16.4f}" for k in keys) + mark)
    if args.plot:
        plot_table(table, chosen, args.plot)
    if args.write:
        write_mask_threshold(args.model, chosen)
        print(f"calibrate: {args.model}/config.json: sam.mask_threshold = {chosen}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
