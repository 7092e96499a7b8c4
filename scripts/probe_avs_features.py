#!/usr/bin/env python3
"""Linear probe: do an AVS model's visual features know which categories are on screen?

The gate (``avs.gate``) compares the audio embedding with the average-pooled last backbone stage F_4. It can
only tell an off-screen sound from an on-screen one if those features encode the visible categories. This
script fits, for each backbone stage and pooling (mean / max over space), a linear multi-label classifier of the
visible categories on frames of one split and scores it on another, against the chance rate (always "absent").

Needs an audio-visual world with ``robust_<split>.csv`` files that carry the ``visible`` column (what
``perception-worlds audiovisual`` writes).

Examples::

    python scripts/probe_avs_features.py src/avs/avs/pretrained/embedded
    python scripts/probe_avs_features.py data/runs/avs-gated-category/model --train-clips 400 --json /tmp/p.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/probe_avs_features.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="AVS model folder (config.json + model.safetensors)")
    parser.add_argument("--world", default="data/worlds/avs", help="audio-visual world root (default: %(default)s)")
    parser.add_argument("--train-split", default="train", help="split the probes are fitted on")
    parser.add_argument("--eval-split", default="val", help="split the probes are scored on")
    parser.add_argument("--train-clips", type=int, default=800, help="clips of the train split (5 frames each)")
    parser.add_argument("--eval-clips", type=int, default=100, help="clips of the eval split")
    parser.add_argument("--steps", type=int, default=300, help="full-batch Adam steps per probe (lr 1e-2)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    return parser.parse_args(argv)


def pooled_features(model, world: Path, split: str, limit: int) -> tuple[list[torch.Tensor], list[set[str]]]:
    """Per stage, mean- and max-pooled backbone features of every frame, and each frame's visible categories."""
    from perception_eval.datasets import AVSBenchS4, DatasetError

    if str(REPO) not in sys.path:  # the training package lives at the repository root
        sys.path.insert(0, str(REPO))
    from training.avs.data import read_visible

    try:  # the table the trainer's off-screen rule reads (data.visible_csv)
        visible = read_visible(world / f"robust_{split}.csv")
    except DatasetError as err:
        hint = "no 'visible' column, no probe: write the world with perception-worlds"
        raise SystemExit(f"error: {err} ({hint})") from None
    clips = list(AVSBenchS4(world, split))[:limit]
    pooled: list[list[torch.Tensor]] = []
    labels: list[set[str]] = []
    with torch.no_grad():
        for i in range(0, len(clips), 16):
            group = clips[i : i + 16]
            x = torch.cat([model.preprocess_frame(f) for c in group for f in c.load_frames()])
            feats = model.backbone((x - model.pixel_mean) / model.pixel_std)
            parts = [p for f in feats for p in (f.mean(dim=(2, 3)), f.amax(dim=(2, 3)))]
            pooled.append(parts)
            labels += [visible.get(c.name, {c.category}) for c in group for _ in range(5)]
    return [torch.cat([p[k] for p in pooled]) for k in range(len(pooled[0]))], labels


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from avs.loading import load_model

    model = load_model(str(args.model))
    train_x, train_v = pooled_features(model, Path(args.world), args.train_split, args.train_clips)
    eval_x, eval_v = pooled_features(model, Path(args.world), args.eval_split, args.eval_clips)
    categories = sorted(set().union(*train_v))
    index = {c: i for i, c in enumerate(categories)}

    def targets(labels: list[set[str]]) -> torch.Tensor:
        out = torch.zeros(len(labels), len(categories))
        for row, names in enumerate(labels):
            for name in names & set(index):
                out[row, index[name]] = 1.0
        return out

    y, y_eval = targets(train_v), targets(eval_v)
    chance = float((y_eval == 0).float().mean())
    table = []
    print(f"{args.model}: {len(train_v)} train / {len(eval_v)} eval frames, {len(categories)} categories")
    print(f"chance per-label accuracy (always 'absent'): {chance:.3f}")
    print("| stage | pooling | per-label accuracy | recall of visible categories |")
    print("|---|---|---|---|")
    torch.manual_seed(0)
    for k, (x, x_eval) in enumerate(zip(train_x, eval_x)):
        mean, std = x.mean(0), x.std(0) + 1e-5
        x, x_eval = (x - mean) / std, (x_eval - mean) / std
        probe = torch.nn.Linear(x.shape[1], len(categories))
        optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
        for _ in range(args.steps):
            loss = F.binary_cross_entropy_with_logits(probe(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            predicted = probe(x_eval) > 0
        truth = y_eval > 0
        accuracy = float((predicted == truth).float().mean())
        recall = float((predicted & truth).sum() / truth.sum().clamp(min=1))
        row = {"stage": k // 2 + 1, "pooling": ("mean", "max")[k % 2], "accuracy": accuracy, "recall": recall}
        table.append(row)
        print(f"| {row['stage']} | {row['pooling']} | {accuracy:.3f} | {recall:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "chance": chance, "probes": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
