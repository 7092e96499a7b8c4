#!/usr/bin/env python3
"""Linear probes: which visual representation of a TrackGPT model reads what its brain must say about a target?

The embedded brain names the target of an instruction ("Sure, I track the red cup.") before the mask decoder finds
it, so its visual tokens must carry each object's colour and category, the group an implicit use points to
("something I could drink from": drinkware), and where it is against the others ("the leftmost fruit"). This script
measures, on the first frame of every video of an instruction world, how well a linear classifier reads those
properties from each candidate representation of each visible object:

* ``pixels``: the floor any learned feature must beat: the mean colour under the object's mask and an 8x8 crop of
  its box with the background blanked (no position: that row shows what the crop alone knows);
* ``vision tower``: the brain's vision tower at the layer LLaVA hands to the projector (the tokens' grid);
* ``brain tokens``: the projector's output, the visual tokens the language model reads (for a brain that sees
  through SAM, ``brain.vision_source: sam``, its ``vision tower`` is SAM's embedding average-pooled to the brain's
  token grid);
* ``SAM encoder``: the perception's image embedding (the frame path's ``encode_frame``);
* ``vision tower + SAM``: both, concatenated.

Each grid representation is read two ways: ``mask`` (its cells averaged under the object's mask, weighted by how
much of each cell the mask covers) and ``point`` (the one cell under the mask's centroid: what a reader that
attends to a place, without the mask, can get). Labels per object: ``colour``, ``category``, ``use group`` (the
category's group, which implicit instructions name by use), ``x third`` (left / centre / right third of the frame),
``leftmost`` and ``largest`` (whether it is the scene's leftmost / largest visible object: relational, so a pooled
feature knows it only if the representation mixes the scene in). Probes are multinomial logistic regressions
(standardised features, full-batch Adam, weight decay) fitted on one split and scored on another, against the
chance rate (always the fitted split's most common label). Rows ``colour (held-out pairs)`` / ``category
(held-out pairs)`` score only the objects whose colour/category pair the fitted split never shows.

Examples::

    python scripts/probe_trackgpt_features.py                                   # shipped model, train -> val
    python scripts/probe_trackgpt_features.py --eval-split test --json results/embedded/probe.json \\
        --markdown results/embedded/probe.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
LABELS = ("colour", "category", "use group", "x third", "leftmost", "largest")
CANDIDATES = ("pixels", "vision tower", "brain tokens", "SAM encoder", "vision tower + SAM")
MIN_PIXELS = 120  # the instruction world's own floor for a visible object


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/probe_trackgpt_features.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", default=None, help="TrackGPT model (default: the shipped embedded one)")
    parser.add_argument("--world", default="data/worlds/instruction", help="instruction world root (%(default)s)")
    parser.add_argument("--train-split", default="train", help="split the probes are fitted on (%(default)s)")
    parser.add_argument("--eval-split", default="val", help="split the probes are scored on (%(default)s)")
    parser.add_argument("--train-videos", type=int, default=400, help="videos of the fitted split (first frames)")
    parser.add_argument("--eval-videos", type=int, default=100, help="videos of the scored split")
    parser.add_argument("--steps", type=int, default=300, help="full-batch Adam steps per probe (lr 1e-2)")
    parser.add_argument("--weight-decay", type=float, default=1e-3, help="probe weight decay (%(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table as Markdown here")
    return parser.parse_args(argv)


@dataclass
class Objects:
    """Every probed object of one split: its labels and each representation's features (rows in step)."""

    labels: dict[str, list] = field(default_factory=lambda: {k: [] for k in LABELS})
    pairs: list[tuple[str, str]] = field(default_factory=list)
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, name: str, row: np.ndarray) -> None:
        self.features.setdefault(name, []).append(np.asarray(row, np.float32))

    def matrix(self, name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack(self.features[name]))

    def __len__(self) -> int:
        return len(self.pairs)


def first_frames(world: Path, split: str, limit: int):
    """``(frame RGB, id mask, objects meta)`` of frame 0 of the first ``limit`` videos of ``split``."""
    from perception_eval.datasets.common import DatasetError, read_index_mask

    meta_path = world / "meta_expressions" / split / "meta_expressions.json"
    if not meta_path.is_file():
        raise SystemExit(f"error: {meta_path} not found (write the world with perception-worlds instruction)")
    videos = json.loads(meta_path.read_text())["videos"]
    for video_id in sorted(videos)[:limit]:
        entry = videos[video_id]
        if "objects" not in entry:
            raise SystemExit(f"error: {meta_path}: video {video_id} has no 'objects' table (not an instruction world)")
        first = entry["frames"][0]
        bgr = cv2.imread(str(world / split / "JPEGImages" / video_id / f"{first}.jpg"), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"error: cannot read frame {first} of {video_id} in {world / split}")
        try:
            ids = read_index_mask(world / split / "Annotations" / video_id / f"{first}.png")
        except DatasetError as err:
            raise SystemExit(f"error: {err}") from None
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), ids, entry["objects"]


def _cell_weights(mask: np.ndarray, canvas: tuple[int, int], place: tuple[int, int, int, int], grid: int):
    """The mask's coverage of each cell of a ``grid x grid`` token map whose input canvas holds the frame resized
    into ``place`` = (x0, y0, width, height)."""
    x0, y0, w, h = place
    full = np.zeros(canvas, np.float32)
    full[y0 : y0 + h, x0 : x0 + w] = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return cv2.resize(full, (grid, grid), interpolation=cv2.INTER_AREA)


def _read_grid(grid_feats: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``C x g x g`` features -> (mask-weighted mean, the cell under the weights' centroid)."""
    total = weights.sum()
    pooled = (grid_feats * weights[None]).reshape(grid_feats.shape[0], -1).sum(1) / max(total, 1e-6)
    g = weights.shape[0]
    ys, xs = np.mgrid[0:g, 0:g]
    cy = int(np.clip(np.floor((weights * (ys + 0.5)).sum() / max(total, 1e-6)), 0, g - 1))
    cx = int(np.clip(np.floor((weights * (xs + 0.5)).sum() / max(total, 1e-6)), 0, g - 1))
    return pooled, grid_feats[:, cy, cx]


def _pixels(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mean = frame[mask].mean(0) / 255.0
    ys, xs = np.nonzero(mask)
    crop = np.where(mask[..., None], frame, 0)[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    small = cv2.resize(crop.astype(np.float32) / 255.0, (8, 8), interpolation=cv2.INTER_AREA)
    return np.concatenate([mean, small.reshape(-1)])


class Readers:
    """The model's representations of one frame, as grids with the placement of the frame on their canvas."""

    def __init__(self, model) -> None:
        self.model = model
        brain = model.brain
        self.brain = brain
        cfg = brain.model.config
        self.layer = int(getattr(cfg, "vision_feature_layer", -2))
        self.strategy = getattr(cfg, "vision_feature_select_strategy", "default")
        self.vision_size = brain.vision_image_size
        self.sam_size = int(model.perception.transform.img_size)
        self.tower = brain.submodule("vision_tower")
        self.projector = brain.submodule("multi_modal_projector")

    @torch.no_grad()
    def grids(self, frame: np.ndarray) -> dict[str, tuple[np.ndarray, tuple, tuple]]:
        """name -> (C x g x g features, canvas shape, frame placement on the canvas)."""
        h, w = frame.shape[:2]
        out = {}
        pixel_values = self.brain.preprocess_image(frame)
        tower = self.tower(pixel_values, output_hidden_states=True)
        tokens = tower.hidden_states[self.layer]
        if self.strategy == "default":
            tokens = tokens[:, 1:]  # LLaVA drops the class token
        projected = self.projector(tokens)
        features = self.model.perception.encode_frame(frame)
        emb = features.embeddings[0].float().cpu().numpy()
        rh, rw = features.input_size  # SAM resizes the long side and pads bottom / right
        sam_place = (0, 0, int(rw), int(rh))
        if self.brain.config.vision_source == "sam":  # the brain's tokens pool SAM's embedding: SAM's placement
            canvas, place = (self.sam_size, self.sam_size), sam_place
        else:
            side = max(h, w)  # the brain pads to a square (centred), then resizes
            scale = self.vision_size / side
            canvas = (self.vision_size, self.vision_size)
            place = (int(round((side - w) / 2 * scale)), int(round((side - h) / 2 * scale)),
                     max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        for name, t in (("vision tower", tokens), ("brain tokens", projected)):
            g = int(round(t.shape[1] ** 0.5))
            grid = t[0].float().reshape(g, g, -1).permute(2, 0, 1).cpu().numpy()
            out[name] = (grid, canvas, place)
        out["SAM encoder"] = (emb, (self.sam_size, self.sam_size), sam_place)
        return out


def collect(readers: Readers, world: Path, split: str, limit: int, desc: str) -> Objects:
    from tqdm import tqdm

    objs = Objects()
    frames = list(first_frames(world, split, limit))
    for frame, ids, meta in tqdm(frames, desc=desc, unit="frame", file=sys.stderr):
        grids = readers.grids(frame)
        visible = []
        for obj_id, info in sorted(meta.items(), key=lambda kv: int(kv[0])):
            mask = ids == int(obj_id)
            if mask.sum() >= MIN_PIXELS:
                xs = np.nonzero(mask)[1]
                visible.append((info, mask, float(xs.mean()), int(mask.sum())))
        if not visible:
            continue
        leftmost = min(range(len(visible)), key=lambda i: visible[i][2])
        largest = max(range(len(visible)), key=lambda i: visible[i][3])
        width = frame.shape[1]
        for i, (info, mask, cx, _) in enumerate(visible):
            for key, value in (("colour", info["colour"]), ("category", info["category"]),
                               ("use group", info["group"]), ("x third", min(2, int(3 * cx / width))),
                               ("leftmost", i == leftmost), ("largest", i == largest)):
                objs.labels[key].append(value)
            objs.pairs.append((info["category"], info["colour"]))
            objs.add("pixels", _pixels(frame, mask))
            pooled = {}
            for name, (grid, canvas, place) in grids.items():
                weights = _cell_weights(mask, canvas, place, grid.shape[1])
                pooled[name], point = _read_grid(grid, weights)
                objs.add(f"{name}|mask", pooled[name])
                objs.add(f"{name}|point", point)
            objs.add("vision tower + SAM|mask", np.concatenate([pooled["vision tower"], pooled["SAM encoder"]]))
    return objs


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int, weight_decay: float):
    """A multinomial logistic regression on standardised ``x``; returns a predict function."""
    mean, std = x.mean(0), x.std(0) + 1e-5
    probe = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=weight_decay)
    xs = (x - mean) / std
    for _ in range(steps):
        loss = F.cross_entropy(probe(xs), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return lambda z: probe((z - mean) / std).argmax(1)


def probe_table(train: Objects, test: Objects, *, steps: int, weight_decay: float) -> dict:
    """Accuracy of every (label, representation) probe on ``test``, the chance rates and the held-out-pair rows."""
    seen_pairs = set(train.pairs)
    held = torch.tensor([p not in seen_pairs for p in test.pairs])
    reps = [name for name in train.features]
    rows: dict[str, dict] = {}
    torch.manual_seed(0)
    for label in LABELS:
        classes = sorted({str(v) for v in train.labels[label]})
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[str(v)] for v in train.labels[label]])
        y_test = torch.tensor([index.get(str(v), -1) for v in test.labels[label]])
        majority = int(torch.bincount(y, minlength=len(classes)).argmax())
        row = {"classes": len(classes), "chance": float((y_test == majority).float().mean()), "accuracy": {}}
        held_row = {"count": int(held.sum()), "chance": None, "accuracy": {}}
        if held.any():
            held_row["chance"] = float((y_test[held] == majority).float().mean())
        for rep in reps:
            predict = fit_probe(train.matrix(rep), y, len(classes), steps, weight_decay)
            with torch.no_grad():
                hit = predict(test.matrix(rep)) == y_test
            row["accuracy"][rep] = float(hit.float().mean())
            if held.any():
                held_row["accuracy"][rep] = float(hit[held].float().mean())
        rows[label] = row
        if label in ("colour", "category") and held.any():
            rows[f"{label} (held-out pairs)"] = held_row
    return {"objects": {"fitted": len(train), "scored": len(test), "held_out_pairs": int(held.sum())},
            "representations": reps, "rows": rows}


def markdown(report: dict) -> str:
    reps = report["representations"]
    lines = [
        f"Linear probes on first frames: fitted on {report['fitted_on']} ({report['objects']['fitted']} objects), "
        f"scored on {report['scored_on']} ({report['objects']['scored']} objects, "
        f"{report['objects']['held_out_pairs']} with a colour/category pair the fitted split never shows); "
        f"model {report['model']}.",
        "",
        "| label | chance | " + " | ".join(r.replace("|", ", ") for r in reps) + " |",
        "|---|---|" + "---|" * len(reps),
    ]
    for label, row in report["rows"].items():
        best = max(row["accuracy"].values()) if row["accuracy"] else None
        cells = [(f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in (row["accuracy"][r] for r in reps)]
        chance = "-" if row["chance"] is None else f"{row['chance']:.3f}"
        lines.append(f"| {label} | {chance} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from trackgpt.loading import load_model, shipped_folder

    spec = args.model or str(shipped_folder())
    model = load_model(spec, device="cpu")
    model.eval()
    readers = Readers(model)
    world = Path(args.world)
    t0 = time.monotonic()
    train = collect(readers, world, args.train_split, args.train_videos, f"features {args.train_split}")
    test = collect(readers, world, args.eval_split, args.eval_videos, f"features {args.eval_split}")
    if not len(train) or not len(test):
        raise SystemExit(f"error: no visible objects in {world} ({args.train_split}: {len(train)}, "
                         f"{args.eval_split}: {len(test)})")
    report = probe_table(train, test, steps=args.steps, weight_decay=args.weight_decay)
    report.update(model=spec, world=str(world), fitted_on=args.train_split, scored_on=args.eval_split,
                  seconds=round(time.monotonic() - t0, 1))
    text = markdown(report)
    print(text, end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
