#!/usr/bin/env python3
"""How well a TrackGPT model's object proposer finds a generated world's objects (``brain.vision_source: objects``).

On frame 0 of each video of a split: the proposer's objects (SAM's "segment everything" on the perception's image
embedding, :class:`trackgpt.objects.ObjectProposer`) against the world's own objects of at least ``--min-pixels``:
recall (the share of true objects that a proposal covers with IoU >= 0.5 / 0.75), precision (the share of proposals
that cover a true object with IoU >= 0.5), the mean best IoU per object, proposals per frame and milliseconds per
frame (image encoder included). ``--from-sam`` scores the prompt encoder and mask decoder of a SAM state dict (e.g.
a ``training/trackgpt/pretrain_sam.py`` run's ``sam.pth``) in the model's proposer instead of its own.

Example::

    python scripts/eval_object_proposer.py data/runs/trackgpt-object-vision/model --split val
    python scripts/eval_object_proposer.py src/trackgpt/trackgpt/pretrained/embedded \
        --from-sam data/runs/trackgpt-proposer/model/sam.pth
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from perception_common.checkpoint import CheckpointError
from perception_eval.datasets import DatasetError, InsTrack
from trackgpt.errors import TrackGPTError
from trackgpt.loading import load_model
from trackgpt.objects import ObjectProposer, index_mask_objects


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def evaluate_proposer(model, root: str | Path, split: str, *, max_videos: int | None = None, min_pixels: int = 30,
                      progress: bool = False) -> dict:  # fmt: skip
    """The figures of the module docstring for ``model`` (a TrackGPT whose perception has an object proposer)."""
    perception = model.perception
    proposer = perception.object_proposer
    best, matched, proposals, seconds = [], [], [], []
    videos = list(InsTrack(root, split, require_masks=True))[:max_videos]
    for video in tqdm(videos, desc="proposals", disable=not progress):
        frame, ids = video.load_frame(0), video.load_mask(0)
        t0 = time.perf_counter()
        features = perception.encode_frame(frame)
        found = proposer(features.embeddings, features.input_size, features.original_size,
                         perception.transform.postprocess)  # fmt: skip
        seconds.append(time.perf_counter() - t0)
        truth = index_mask_objects(ids, min_pixels=min_pixels)
        best += [max((_iou(t, p) for p in found), default=0.0) for t in truth]
        matched += [max((_iou(t, p) for t in truth), default=0.0) >= 0.5 for p in found]
        proposals.append(len(found))
    best_arr = np.asarray(best)
    return {
        "split": split, "frames": len(videos), "objects": len(best),
        "recall@0.5": float((best_arr >= 0.5).mean()) if best else 0.0,
        "recall@0.75": float((best_arr >= 0.75).mean()) if best else 0.0,
        "mean_best_iou": float(best_arr.mean()) if best else 0.0,
        "precision@0.5": float(np.mean(matched)) if matched else 0.0,
        "proposals_per_frame": float(np.mean(proposals)) if proposals else 0.0,
        "ms_per_frame": 1000 * float(np.mean(seconds)) if seconds else 0.0,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a TrackGPT model folder whose brain.vision_source is objects (or any, with "
                                 "--from-sam)")  # fmt: skip
    p.add_argument("--world", default="data/worlds/instruction", help="a generated instruction world")
    p.add_argument("--split", default="val")
    p.add_argument("--max-videos", type=int, default=0, help="0: all")
    p.add_argument("--min-pixels", type=int, default=30, help="true objects smaller than this are left out")
    p.add_argument("--from-sam", help="a SAM state dict whose prompt encoder and mask decoder are scored instead")
    p.add_argument("--grid", type=int, help="point prompts per side (default: the proposer's, 8)")
    p.add_argument("--min-iou", type=float, help="SAM IoU estimate a proposal needs (default: the proposer's, 0.5)")
    p.add_argument("--overlap", type=float, help="IoU with a better proposal that drops one (default 0.5)")
    p.add_argument("--contain", type=float, help="share of the smaller one's pixels that drops a proposal "
                                                 "(default: the proposer's, 0.7)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the figures here too")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        model = load_model(args.model, with_brain=False)  # the perception alone: the proposer is part of it
        if args.from_sam:
            proposer = ObjectProposer(model.config.sam).to(model.perception.dtype)
            proposer.load_sam_state_dict(args.from_sam, f"--from-sam {args.from_sam}")
            model.perception.object_proposer = proposer
        if model.perception.object_proposer is None:
            raise TrackGPTError(f"{args.model}: its brain's vision_source is not 'objects' (give --from-sam)")
        for name in ("grid", "min_iou", "overlap", "contain"):
            if getattr(args, name) is not None:
                setattr(model.perception.object_proposer, name, getattr(args, name))
        res = evaluate_proposer(model, args.world, args.split, max_videos=args.max_videos or None,
                                min_pixels=args.min_pixels, progress=not args.no_progress)  # fmt: skip
    except (TrackGPTError, CheckpointError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    proposer = model.perception.object_proposer
    res.update(model=args.model, from_sam=args.from_sam, grid=proposer.grid, min_iou=proposer.min_iou,
               overlap=proposer.overlap, contain=proposer.contain)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
