"""Tiny datasets written in the real on-disk layouts, for tests and smoke runs of the training scripts.

These are fixtures, not the project's generated worlds (``perception_eval.worlds``): a handful of clips
or images, just enough structure that a few training steps have something to learn (a sounding object
whose colour goes with its tone; a referred object with a name). Every writer is seeded and fast.

* :func:`write_avsbench` -- AVSBench S4 and/or MS3 layout (+ an AVSBench-Robust CSV for one split).
* :func:`write_semantic_seg`, :func:`write_refcoco`, :func:`write_llava_instruct`, :func:`write_reason_seg`
  -- the image formats of TrackGPT's first stage (see ``training/trackgpt/data.py`` for each layout).
"""

from __future__ import annotations

import csv
import json
import pickle
import zlib
from pathlib import Path

import cv2
import numpy as np

#: name, RGB colour, tone frequency (Hz), major group
TOY_CATEGORIES = (
    ("red_ball", (220, 40, 40), 330.0, "music"),
    ("green_box", (40, 200, 60), 660.0, "animal"),
    ("blue_cup", (50, 70, 230), 1320.0, "device"),
    ("yellow_star", (230, 210, 40), 2640.0, "human"),
)
SAMPLE_RATE = 16000


def _draw(canvas: np.ndarray, kind: int, centre: tuple[int, int], radius: int, colour) -> np.ndarray:
    mask = np.zeros(canvas.shape[:2], np.uint8)
    x, y = centre
    if kind % 2 == 0:
        cv2.circle(mask, (x, y), radius, 1, -1)
    else:
        cv2.rectangle(mask, (x - radius, y - radius), (x + radius, y + radius), 1, -1)
    canvas[mask > 0] = colour
    return mask.astype(bool)


def _frames(rng: np.random.Generator, size: int, n: int, target: int, distractor: int):
    """``n`` frames with a moving target and a silent distractor; returns (frames, target masks)."""
    base = rng.integers(60, 120, size=(size, size, 3), dtype=np.uint8)
    radius = max(3, size // 8)
    start = rng.integers(radius, size - radius, size=(2, 2))
    vel = rng.integers(-2, 3, size=(2, 2)) * max(1, size // 32)
    frames, masks = [], []
    for t in range(n):
        img = base.copy()
        pos = np.clip(start + vel * t, radius, size - radius - 1)
        _draw(img, distractor, tuple(int(v) for v in pos[1]), radius, TOY_CATEGORIES[distractor][1])
        m = _draw(img, target, tuple(int(v) for v in pos[0]), radius, TOY_CATEGORIES[target][1])
        frames.append(img)
        masks.append(m)
    return frames, masks


def _tone(rng: np.random.Generator, freq: float, seconds: float = 5.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    env = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, np.pi)))
    wave = 0.4 * env * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.shape)
    return wave.astype(np.float32)


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), array)


def _write_wav(path: Path, wave: np.ndarray) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave, SAMPLE_RATE)


def write_avsbench(
    root: str | Path,
    *,
    subset: str = "s4",
    clips: dict[str, int] | None = None,
    size: int = 64,
    seed: int = 0,
    robust_split: str | None = "val",
) -> Path:
    """Write a tiny AVSBench ``s4`` or ``ms3`` layout under ``root`` (CSV beside the data folders).

    Args:
        root: output folder.
        subset: ``"s4"`` or ``"ms3"``.
        clips: clips per split (default 8 train, 4 val).
        size: frame side in pixels.
        seed: the seed.
        robust_split: also write ``robust_<split>.csv`` with the four audio conditions for that split.
    """
    root = Path(root)
    clips = clips or {"train": 8, "val": 4}
    rows = []
    per_split: dict[str, list[tuple[str, int]]] = {}
    for split, count in clips.items():
        for i in range(count):
            rng = np.random.default_rng([seed, zlib.crc32(split.encode()), i])
            target = i % len(TOY_CATEGORIES)
            distractor = (target + 1 + int(rng.integers(len(TOY_CATEGORIES) - 1))) % len(TOY_CATEGORIES)
            name = f"{split}_{i:03d}"
            cat = TOY_CATEGORIES[target][0]
            frames, masks = _frames(rng, size, 5, target, distractor)
            for k in range(5):
                if subset == "s4":
                    _write_png(root / "visual_frames" / split / cat / name / f"{name}_{k + 1}.png", frames[k])
                    _write_png(
                        root / "gt_masks" / split / cat / name / f"{name}_{k + 1}.png", masks[k].astype(np.uint8) * 255
                    )
                else:
                    _write_png(root / "visual_frames" / name / f"{name}.mp4_{k + 1}.png", frames[k])
                    _write_png(
                        root / "gt_masks" / split / name / f"{name}_{k + 1}.png", masks[k].astype(np.uint8) * 255
                    )
            wav = root / "audio_wav" / split / (cat if subset == "s4" else "") / f"{name}.wav"
            _write_wav(wav, _tone(rng, TOY_CATEGORIES[target][2]))
            rows.append({"name": name, "uid": i, "category": cat, "split": split})
            per_split.setdefault(split, []).append((name, target))
    csv_name = "s4_meta_data.csv" if subset == "s4" else "ms3_meta_data.csv"
    with open(root / csv_name, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "uid", "category", "split"])
        writer.writeheader()
        writer.writerows(rows)
    if robust_split and robust_split in per_split:
        items = per_split[robust_split]
        out_rows = []
        rng = np.random.default_rng([seed, 99])
        for name, target in items:
            cat = TOY_CATEGORIES[target][0]
            src = Path("audio_wav") / robust_split / (cat if subset == "s4" else "") / f"{name}.wav"
            out_rows.append({"name": name, "category": cat, "condition": "positive", "audio_path": str(src)})
            silence = Path("robust_audio") / robust_split / f"{name}_silence.wav"
            _write_wav(root / silence, np.zeros(5 * SAMPLE_RATE, np.float32))
            out_rows.append({"name": name, "category": cat, "condition": "silence", "audio_path": str(silence)})
            noise = Path("robust_audio") / robust_split / f"{name}_noise.wav"
            _write_wav(root / noise, rng.uniform(-1, 1, 5 * SAMPLE_RATE).astype(np.float32))
            out_rows.append({"name": name, "category": cat, "condition": "noise", "audio_path": str(noise)})
            other = (target + 2) % len(TOY_CATEGORIES)
            off = Path("robust_audio") / robust_split / f"{name}_offscreen.wav"
            _write_wav(root / off, _tone(rng, TOY_CATEGORIES[other][2]))
            out_rows.append({"name": name, "category": cat, "condition": "offscreen", "audio_path": str(off)})
        with open(root / f"robust_{robust_split}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["name", "category", "condition", "audio_path"])
            writer.writeheader()
            writer.writerows(out_rows)
    return root


# ----------------------------------------------------------------------------- TrackGPT stage-1 formats
def _scene(rng: np.random.Generator, size: int):
    """An image with 2 objects of different categories: (image, {category index: mask})."""
    img = rng.integers(60, 120, size=(size, size, 3), dtype=np.uint8)
    cats = rng.choice(len(TOY_CATEGORIES), size=2, replace=False)
    radius = max(4, size // 6)
    masks = {}
    xs = [size // 4, 3 * size // 4]
    for k, c in enumerate(cats):
        y = int(rng.integers(radius, size - radius))
        masks[int(c)] = _draw(img, int(c), (xs[k], y), radius, TOY_CATEGORIES[int(c)][1])
    return img, masks


def _name(c: int) -> str:
    return TOY_CATEGORIES[c][0].replace("_", " ")


def write_semantic_seg(
    root: str | Path, *, images: int = 6, size: int = 64, split: str = "training", seed: int = 0
) -> Path:
    """Semantic segmentation folder: ``images/<split>/*.jpg``, ``annotations/<split>/*.png`` (class ids,
    0 = background), ``classes.txt`` (one name per line; line k is class k, line 0 the background)."""
    root = Path(root)
    for i in range(images):
        img, masks = _scene(np.random.default_rng([seed, 1, i]), size)
        label = np.zeros((size, size), np.uint8)
        for c, m in masks.items():
            label[m] = c + 1
        _write_png(root / "images" / split / f"img_{i:04d}.jpg", img)
        _write_png(root / "annotations" / split / f"img_{i:04d}.png", label)
    (root / "classes.txt").write_text("background\n" + "\n".join(_name(c) for c in range(len(TOY_CATEGORIES))) + "\n")
    return root


def _polygon(mask: np.ndarray) -> list[float]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [float(v) for v in max(contours, key=cv2.contourArea).reshape(-1)]


def write_refcoco(
    root: str | Path, *, images: int = 6, size: int = 64, dataset: str = "refcoco", split_by: str = "unc", seed: int = 0
) -> Path:
    """refCOCO layout: ``<root>/<dataset>/refs(<split_by>).p`` (pickled list of refs), ``instances.json``
    (COCO: images, annotations with polygons, categories) and ``<root>/images/*.jpg``."""
    root = Path(root)
    coco: dict = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c + 1, "name": _name(c)} for c in range(len(TOY_CATEGORIES))],
    }
    refs = []
    ann_id = 0
    for i in range(images):
        img, masks = _scene(np.random.default_rng([seed, 2, i]), size)
        file_name = f"COCO_train2014_{i:012d}.jpg"
        _write_png(root / "images" / file_name, img)
        coco["images"].append({"id": i + 1, "file_name": file_name, "height": size, "width": size})
        for c, m in masks.items():
            ann_id += 1
            ys, xs = np.nonzero(m)
            coco["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "iscrowd": 0,
                    "segmentation": [_polygon(m)],
                    "area": float(m.sum()),
                    "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                }
            )
            side = "left" if xs.mean() < size / 2 else "right"
            refs.append(
                {
                    "ref_id": ann_id,
                    "ann_id": ann_id,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "split": "train" if i < images - 1 else "val",
                    "file_name": file_name,
                    "sentences": [
                        {"sent": f"the {_name(c)}", "raw": f"The {_name(c)}", "sent_id": 2 * ann_id},
                        {"sent": f"the {side} one", "raw": f"the {side} one", "sent_id": 2 * ann_id + 1},
                    ],
                }
            )
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instances.json").write_text(json.dumps(coco))
    with open(folder / f"refs({split_by}).p", "wb") as handle:
        pickle.dump(refs, handle)
    return root


def write_llava_instruct(root: str | Path, *, images: int = 4, size: int = 64, seed: int = 0) -> Path:
    """LLaVA-Instruct: ``<root>/llava_instruct.json`` (list of ``{id, image, conversations}``) and
    ``<root>/images/*.jpg``."""
    root = Path(root)
    items = []
    for i in range(images):
        img, masks = _scene(np.random.default_rng([seed, 3, i]), size)
        name = f"{i:012d}.jpg"
        _write_png(root / "images" / name, img)
        names = " and a ".join(_name(c) for c in masks)
        items.append(
            {
                "id": f"{i:012d}",
                "image": name,
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat objects are in the picture?"},
                    {"from": "gpt", "value": f"There is a {names}."},
                    {"from": "human", "value": "How many objects are there?"},
                    {"from": "gpt", "value": f"There are {len(masks)} objects."},
                ],
            }
        )
    (root / "llava_instruct.json").write_text(json.dumps(items))
    return root


def write_reason_seg(root: str | Path, *, images: int = 4, size: int = 64, split: str = "train", seed: int = 0) -> Path:
    """ReasonSeg layout: ``<root>/<split>/<name>.jpg`` + ``<name>.json`` with ``text`` (queries),
    ``is_sentence`` and ``shapes`` (labelme polygons labelled ``target`` / ``ignore``)."""
    root = Path(root)
    uses = {
        0: "something to play with",
        1: "a thing to store toys in",
        2: "something to drink from",
        3: "a decoration for the top of a tree",
    }
    for i in range(images):
        img, masks = _scene(np.random.default_rng([seed, 4, i]), size)
        c = sorted(masks)[0]
        pts = np.asarray(_polygon(masks[c])).reshape(-1, 2).tolist()
        _write_png(root / split / f"r_{i:04d}.jpg", img)
        (root / split / f"r_{i:04d}.json").write_text(
            json.dumps(
                {
                    "text": [f"What object in this image is {uses[c]}?"],
                    "is_sentence": True,
                    "shapes": [{"label": "target", "points": pts, "shape_type": "polygon"}],
                }
            )
        )
    return root


def write_all(root: str | Path, *, seed: int = 0) -> Path:
    """Every toy layout under ``root``: ``avs/s4``, ``avs/ms3``, ``ade``, ``refer``, ``llava``, ``reason``."""
    root = Path(root)
    write_avsbench(root / "avs" / "s4", subset="s4", seed=seed)
    write_avsbench(root / "avs" / "ms3", subset="ms3", clips={"train": 4, "val": 2}, seed=seed, robust_split=None)
    write_semantic_seg(root / "ade", seed=seed)
    write_refcoco(root / "refer", seed=seed)
    write_llava_instruct(root / "llava", seed=seed)
    write_reason_seg(root / "reason", seed=seed)
    return root


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m training.common.toydata",
        description="Write tiny datasets in the real layouts (AVSBench S4/MS3 + robust CSV, semantic segmentation, "
        "refCOCO, LLaVA-Instruct, ReasonSeg) for smoke runs of the training scripts.",
    )
    parser.add_argument("--out", default="data/toy", help="output folder (default: data/toy)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_all(args.out, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
