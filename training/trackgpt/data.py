"""TrackGPT training data: the paper's three stages, their datasets, templates and sampling ratios.

Stages (paper Sec. 4.1, "Training"):

1. **image pre-training** (following LISA): semantic segmentation, referring segmentation (refCOCO family),
   visual question answering (LLaVA-Instruct-150k) and reasoning segmentation (ReasonSeg); one image per
   sample (a one-frame clip);
2. **referring video segmentation** on Ref-YouTube-VOS: 3 frames per sample, "I_0, I_t and I_{t+1}";
3. **instruction tuning** on InsTrack's training split.

Each stage's config lists its datasets under ``data.datasets``, each with a ``type``, its paths and a
sampling ``ratio``. Sample ``n`` of a run picks its dataset with probability ``ratio / sum(ratios)`` and an item
of that dataset uniformly (with replacement, as LISA samples), both from ``item_rng(seed, 10, n)``; the frames,
class or sentence inside the item come from the same generator. So the stream is a pure function of ``n``:
resuming needs no sampler state.

Prompt and answer (the paper's template, Sec. 4.1): ``USER: <image>\\nCan you track the {text description} in
the video? ASSISTANT: Sure, I track the object. <TK>, <PO>``. Both come from the model's
:class:`trackgpt.BrainConfig` (``prompt_template`` / ``answer_template``), so training teaches exactly the prompt
the tracker sends; image data uses the same template with the image as a one-frame video (LISA's image
templates would train a prompt the tracker never sends). The text description is the class name
(semantic segmentation), the referring sentence (refCOCO, Ref-YouTube-VOS, Refer-DAVIS), the query (ReasonSeg)
or the instruction (InsTrack). VQA samples keep their own conversation (``USER: q ASSISTANT: a</s>`` per turn)
and train the text loss only.

Dataset types and layouts (``root`` and the other keys of a dataset entry):

``ref_youtube_vos`` / ``instrack``
    ``<root>/<split>/JPEGImages``, ``<root>/<split>/Annotations``, ``<root>/meta_expressions/<split>/
    meta_expressions.json`` (:class:`perception_eval.datasets.RefYouTubeVOS` / ``InsTrack``); the generated
    instruction world has this layout. Optional ``kinds`` keeps the expressions whose ``kind`` is listed (the
    world's ``explicit`` / ``implicit`` / ``relational``).
``refer_davis``
    DAVIS-2017 folders plus ``meta_expressions/<split>`` (:class:`perception_eval.datasets.ReferDavis17`).
``semantic_seg``
    ``<root>/<images>/<name>.{jpg,png}`` and ``<root>/<annotations>/<name>.png`` (class-id PNGs; ``images`` and
    ``annotations`` are sub-paths, ADE20K: ``images/training`` and ``annotations/training``), ``classes``: a
    ``.txt`` (one name per line, line k = id k), a ``.json`` (list, or ``{id: name}``) or ADE20K's
    ``objectInfo150.csv`` (``Name`` column, ids from 1). ``reduce_zero_label`` (ADE20K: true) makes id 0 "other"
    (ignored) and shifts the rest down by one; ``ignore_index`` (255) is ignored in the loss; ``background``
    (default ``[background]``) names classes never asked for. A sample asks for one class present in the image.
``refcoco``
    ``<root>/<dataset>/refs(<split_by>).p`` and ``<root>/<dataset>/instances.json`` (the refer API's files;
    ``dataset`` refcoco / refcoco+ / refcocog, ``split_by`` unc / umd / google) and ``image_root`` (COCO
    train2014) holding the ``file_name`` of ``instances.json``'s images. The ``.p`` file is a pickle of plain
    lists and dicts; it is read with an unpickler that refuses every class, so nothing else can be loaded.
    Masks come from the annotation's polygons or RLE (compressed or not).
``llava_instruct``
    ``json``: LLaVA-Instruct-150k (``[{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}]``,
    ``<image>`` in the first human turn) and ``image_root`` (COCO train2017).
``reason_seg``
    ``<root>/<split>/<name>.jpg`` + ``<name>.json`` with ``text`` (a list of queries), ``is_sentence`` and
    labelme ``shapes`` (polygons labelled ``target``; ``ignore`` ones are left out of the loss).
``world_objects``
    A generated instruction world (the ``instrack`` layout, whose videos list their ``objects`` with colour and
    category): questions about the reference frame's visible objects, answered from the world's own labels, as
    LLaVA's caption and VQA data teach a brain to read its image (text loss only). Two turns per sample: the
    objects listed from left to right, from top to bottom or from the largest ("red cup, blue key and black
    hammer."; ordered by the masks' centres and areas), then the colour of one object whose category is unique in
    the frame ("It is blue."). ``min_pixels`` (default 30): smaller (mostly occluded) objects are left out; a
    reference frame showing none gives way to the video's first frame that shows one.

Every path and index file is checked, and every image an index refers to must exist, when the dataset is
built (before training), and a problem raises :class:`~training.common.errors.SetupError` naming the file.
"""

from __future__ import annotations

import io
import json
import pickle
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from perception_eval.datasets import DatasetError, InsTrack, ReferDavis17, RefYouTubeVOS, read_index_mask, read_rgb

from ..common.errors import SetupError
from ..common.loop import BatchKeys
from ..common.state import item_rng

VOID = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Sample:
    """One training sample.

    Attributes:
        kind: ``"mask"`` (text + masks) or ``"text"`` (VQA: text loss only).
        frames: RGB uint8 frames, the reference frame first (1 for images, K for video clips).
        masks: per frame, the bool target mask (``kind == "mask"``).
        ignore: per frame, bool pixels left out of the mask loss (void), or None.
        text: the text description / instruction (``mask``).
        target: the referred object's short name when the dataset knows it (e.g. "red cup"), else "".
        conversation: ``[(question, answer), ...]`` (``text``).
        source: the dataset's name.
        objects: the reference frame's index mask of every object (0 background, 255 void) when the dataset has
            one (a generated world), for a brain whose visual tokens are the frame's objects; else None.
        object_labels: ``{object id: (colour, category)}`` of those objects when the dataset knows them (a
            generated world lists them), for the object tokens' own loss (``loss.lambda_objects``); else None.
    """

    kind: str
    frames: list[np.ndarray]
    masks: list[np.ndarray] = field(default_factory=list)
    ignore: list[np.ndarray | None] = field(default_factory=list)
    text: str = ""
    conversation: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    target: str = ""
    objects: np.ndarray | None = None
    object_labels: dict[int, tuple[str, str]] | None = None


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise SetupError(f"{what} {str(path)!r} {'is a folder, not a file' if path.is_dir() else 'is missing'}")
    return path


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise SetupError(f"{what} {str(path)!r} {'is a file, not a folder' if path.exists() else 'is missing'}")
    return path


def _keys(spec: Mapping[str, Any], required: Sequence[str], optional: Mapping[str, Any]) -> dict[str, Any]:
    name = spec.get("name", spec.get("type"))
    known = {"name", "type", "ratio", *required, *optional}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise SetupError(f"dataset {name!r} ({spec['type']}): unknown key(s) {unknown}; known: {sorted(known)}")
    missing = [k for k in required if spec.get(k) in (None, "")]
    if missing:
        raise SetupError(f"dataset {name!r} ({spec['type']}) needs {missing}")
    return {**optional, **{k: v for k, v in spec.items() if k in known}}


def _check_reference_frame(value: str) -> None:
    if value not in ("first", "random"):
        raise SetupError(f"data.reference_frame must be 'first' or 'random', got {value!r}")


class TrainingDataset:
    """A source of samples: ``len`` items, ``sample(index, rng)`` draws one."""

    name = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        raise NotImplementedError


# ----------------------------------------------------------------------------- video (stages 2 and 3)
class VideoReferring(TrainingDataset):
    """(video, expression) pairs of a referring / instruction video dataset, ``frames_per_clip`` frames each.

    Frame sampling (paper: "randomly sample 3 frames ... to simulate the initial frame I_0, the current frame
    I_t, as well as the next frame I_{t+1}"): the reference frame I_0 is frame 0 (``reference_frame: first``,
    for instructions that are decided on the first frame, like the generated world's relational ones) or a
    random frame where the target is visible (``random``, the paper); then ``frames_per_clip - 1``
    consecutive frames from a random later start. Short videos repeat their last frame.

    ``colour_noise`` (generated worlds, whose expressions name the target's colour and category): the share of
    samples whose taught answer names another colour of the dataset ("Sure, I track the green book." for an orange
    book), so a reader trained on a frozen brain learns not to follow a wrongly named colour (the brain's most
    frequent error on implicit instructions). 0 (default) draws nothing from ``rng``.
    """

    def __init__(
        self,
        name: str,
        reader,
        *,
        frames_per_clip: int,
        reference_frame: str,
        kinds: Sequence[str] | None = None,
        colour_noise: float = 0.0,
    ):
        _check_reference_frame(reference_frame)
        if frames_per_clip < 1:
            raise SetupError(f"data.frames_per_clip must be at least 1, got {frames_per_clip}")
        if not 0.0 <= float(colour_noise) <= 1.0:
            raise SetupError(f"dataset {name!r}: colour_noise must be in [0, 1], got {colour_noise}")
        self.name = name
        self.frames_per_clip = int(frames_per_clip)
        self.reference_frame = reference_frame
        self.items = [
            (v, e)
            for v, e in reader.iter_expressions()
            if e.obj_id is not None and v.has_masks and (not kinds or e.kind in kinds)
        ]
        if not self.items:
            wanted = f" of kind {list(kinds)}" if kinds else ""
            raise SetupError(f"dataset {name!r}: no expression{wanted} with an obj_id and annotated frames")
        self.colour_noise = float(colour_noise)
        self.colours = sorted({str(e.extra["colour"]) for _, e in self.items if (e.extra or {}).get("colour")})
        if self.colour_noise > 0 and len(self.colours) < 2:
            raise SetupError(f"dataset {name!r}: colour_noise needs expressions naming at least two colours")

    def __len__(self) -> int:
        return len(self.items)

    def _frame_indices(self, video, obj_id: int, rng: np.random.Generator) -> list[int]:
        n = len(video)
        i0 = 0
        if self.reference_frame == "random":
            candidates = rng.permutation(n)[:8]
            i0 = int(candidates[0])
            for c in candidates:  # prefer a reference frame where the target is visible
                if np.any(video.load_mask(int(c)) == obj_id):
                    i0 = int(c)
                    break
        rest = self.frames_per_clip - 1
        if rest == 0:
            return [i0]
        last_start = n - rest
        start = int(rng.integers(i0 + 1, last_start + 1)) if last_start >= i0 + 1 else i0 + 1
        return [i0] + [min(start + k, n - 1) for k in range(rest)]

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        video, expression = self.items[index]
        frames, masks, ignore, objects = [], [], [], None
        for i in self._frame_indices(video, int(expression.obj_id), rng):
            ids = video.load_mask(i)
            objects = ids if objects is None else objects
            frames.append(video.load_frame(i))
            masks.append(ids == int(expression.obj_id))
            void = ids == VOID
            ignore.append(void if void.any() else None)
        extra = expression.extra or {}
        colour = extra.get("colour")
        if colour and self.colour_noise > 0 and rng.random() < self.colour_noise:
            others = [c for c in self.colours if c != str(colour)]
            colour = others[int(rng.integers(len(others)))]
        target = target_name(colour, extra.get("category"))
        return Sample(
            "mask", frames, masks, ignore, text=expression.text, source=self.name, target=target, objects=objects,
            object_labels=world_object_labels(video) or None,
        )


def target_name(colour: Any, category: Any) -> str:
    """The name the brain is taught for a generated world's target ("red cup"; what is known of it, or "")."""
    return " ".join(str(v) for v in (colour, category) if v)


def _video_reader(spec: Mapping[str, Any]):
    kind = spec["type"]
    opts = _keys(spec, ["root"], {"split": "train", "kinds": None, "colour_noise": 0.0})
    if kind == "ref_youtube_vos":
        return RefYouTubeVOS(opts["root"], opts["split"], require_masks=True)
    if kind == "instrack":
        return InsTrack(opts["root"], opts["split"], require_masks=True)
    return ReferDavis17(opts["root"], opts["split"])


# ----------------------------------------------------------------------------- semantic segmentation
def read_class_names(path: Path, *, reduce_zero_label: bool) -> dict[int, str]:
    """Class id -> name from a ``.txt`` / ``.json`` / ADE20K ``objectInfo150.csv`` (see module docstring)."""
    _require_file(path, "class names file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        names = dict(enumerate(data)) if isinstance(data, list) else {int(k): v for k, v in data.items()}
    elif path.suffix == ".csv":
        import csv

        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or "Name" not in rows[0]:
            raise SetupError(f"class names file {str(path)!r} has no 'Name' column")
        names = {int(r.get("Idx", i + 1)): r["Name"] for i, r in enumerate(rows)}
    else:
        names = {i: line.strip() for i, line in enumerate(text.splitlines()) if line.strip()}
    names = {k: str(v).split(";")[0].strip() for k, v in names.items()}
    if reduce_zero_label:
        names = {k - 1: v for k, v in names.items() if k >= 1}
    return names


class SemanticSeg(TrainingDataset):
    """Semantic segmentation images; a sample asks for one class present in the image."""

    def __init__(self, name: str, spec: Mapping[str, Any]):
        o = _keys(
            spec,
            ["root", "classes"],
            {
                "images": "images/training",
                "annotations": "annotations/training",
                "reduce_zero_label": False,
                "ignore_index": VOID,
                "background": ["background"],
                "min_pixels": 16,
            },
        )
        self.name = name
        root = _require_dir(Path(o["root"]), f"dataset {name!r} root")
        images = _require_dir(root / o["images"], f"dataset {name!r} images folder")
        annotations = _require_dir(root / o["annotations"], f"dataset {name!r} annotations folder")
        classes = Path(o["classes"])
        self.classes = read_class_names(
            classes if classes.is_absolute() else root / classes, reduce_zero_label=bool(o["reduce_zero_label"])
        )
        self.reduce_zero_label = bool(o["reduce_zero_label"])
        self.ignore_index = int(o["ignore_index"])
        self.skip = {k for k, v in self.classes.items() if v in set(o["background"] or [])}
        self.min_pixels = int(o["min_pixels"])
        self.items = []
        for image in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            label = annotations / f"{image.stem}.png"
            _require_file(label, f"dataset {name!r} annotation of {image.name}")
            self.items.append((image, label))
        if not self.items:
            raise SetupError(f"dataset {name!r}: no images in {str(images)!r}")

    def __len__(self) -> int:
        return len(self.items)

    def _labels(self, path: Path) -> np.ndarray:
        ids = read_index_mask(path).astype(np.int32)
        if self.reduce_zero_label:
            ids = np.where(ids == 0, self.ignore_index, ids - 1)
            ids[ids == self.ignore_index - 1] = self.ignore_index
        return ids

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        for _ in range(10):
            image, label = self.items[index]
            ids = self._labels(label)
            present, counts = np.unique(ids, return_counts=True)
            choices = [
                int(c)
                for c, n in zip(present, counts)
                if c != self.ignore_index
                and int(c) not in self.skip
                and int(c) in self.classes
                and n >= self.min_pixels
            ]
            if choices:
                c = choices[int(rng.integers(len(choices)))]
                void = ids == self.ignore_index
                return Sample(
                    "mask",
                    [read_rgb(image)],
                    [ids == c],
                    [void if void.any() else None],
                    text=self.classes[c],
                    source=self.name,
                )
            index = int(rng.integers(len(self.items)))  # an image with no nameable class: draw another
        raise DatasetError(f"dataset {self.name!r}: no image with a nameable class found in 10 draws")


# ----------------------------------------------------------------------------- refCOCO family
class _PlainUnpickler(pickle.Unpickler):
    """Loads only built-in containers and scalars (the refer API's refs files hold nothing else)."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a refs file (plain data only)")


def read_refs(path: Path) -> list[dict]:
    _require_file(path, "refCOCO refs file")
    try:
        with open(path, "rb") as handle:
            refs = _PlainUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise SetupError(f"refCOCO refs file {str(path)!r} cannot be read as plain data: {exc}") from None
    if not isinstance(refs, list):
        raise SetupError(f"refCOCO refs file {str(path)!r} does not hold a list of refs")
    return refs


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE (``counts`` as a list or the compressed string) -> ``H x W`` bool (column-major, as COCO)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str | bytes):
        s = counts.encode() if isinstance(counts, str) else counts
        values, p = [], 0
        while p < len(s):
            x, k, more = 0, 0, True
            while more:
                c = s[p] - 48
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                p += 1
                k += 1
                if not more and (c & 0x10):
                    x |= -1 << (5 * k)
            if len(values) > 2:
                x += values[-2]
            values.append(x)
        counts = values
    flat = np.zeros(h * w, dtype=bool)
    pos, value = 0, False
    for n in counts:
        n = int(n)
        if value:
            flat[pos : pos + n] = True
        pos += n
        value = not value
    return flat.reshape(w, h).T


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO annotation's ``segmentation`` (polygons or RLE) as an ``H x W`` bool mask."""
    if isinstance(segmentation, list):
        mask = np.zeros((height, width), np.uint8)
        for poly in segmentation:
            pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            if len(pts) >= 3:
                cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        return mask.astype(bool)
    if isinstance(segmentation, Mapping):
        if isinstance(segmentation.get("counts"), list) and list(segmentation.get("size", [])) != [height, width]:
            raise DatasetError(f"RLE size {segmentation.get('size')} differs from the image {height}x{width}")
        return rle_decode(segmentation)
    raise DatasetError(f"unknown segmentation format {type(segmentation).__name__}")


class RefCOCO(TrainingDataset):
    """refCOCO / refCOCO+ / refCOCOg referring expressions (one sentence and its object's mask per sample)."""

    def __init__(self, name: str, spec: Mapping[str, Any]):
        o = _keys(spec, ["root", "image_root"], {"dataset": "refcoco", "split_by": "unc", "split": "train"})
        self.name = name
        folder = _require_dir(Path(o["root"]) / o["dataset"], f"dataset {name!r} folder")
        image_root = _require_dir(Path(o["image_root"]), f"dataset {name!r} image_root")
        refs = read_refs(folder / f"refs({o['split_by']}).p")
        instances_path = _require_file(folder / "instances.json", f"dataset {name!r} instances file")
        try:
            instances = json.loads(instances_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SetupError(f"{str(instances_path)!r} is not valid JSON: {exc}") from None
        images = {int(im["id"]): im for im in instances.get("images", [])}
        anns = {int(a["id"]): a for a in instances.get("annotations", [])}
        self.items = []
        for ref in refs:
            if ref.get("split") != o["split"] or not ref.get("sentences"):
                continue
            ann = anns.get(int(ref["ann_id"]))
            image = images.get(int(ref["image_id"]))
            if ann is None or image is None:
                raise SetupError(
                    f"{str(instances_path)!r} lacks annotation {ref['ann_id']} / image {ref['image_id']}"
                    f" of ref {ref.get('ref_id')}"
                )
            path = image_root / image["file_name"]
            self.items.append((path, ann, image, [s["sent"] for s in ref["sentences"]]))
        if not self.items:
            raise SetupError(f"dataset {name!r}: no refs of split {o['split']!r} in {str(folder)!r}")
        for path in {item[0] for item in self.items}:
            _require_file(path, f"dataset {name!r} image")

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        path, ann, _, sentences = self.items[index]
        rgb = read_rgb(path)
        mask = annotation_mask(ann["segmentation"], rgb.shape[0], rgb.shape[1])
        return Sample(
            "mask", [rgb], [mask], [None], text=sentences[int(rng.integers(len(sentences)))], source=self.name
        )


# ----------------------------------------------------------------------------- VQA
class LlavaInstruct(TrainingDataset):
    """LLaVA-Instruct conversations about an image (text loss only)."""

    def __init__(self, name: str, spec: Mapping[str, Any]):
        o = _keys(spec, ["json", "image_root"], {})
        self.name = name
        path = _require_file(Path(o["json"]), f"dataset {name!r} json")
        image_root = _require_dir(Path(o["image_root"]), f"dataset {name!r} image_root")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SetupError(f"{str(path)!r} is not valid JSON: {exc}") from None
        if not isinstance(data, list):
            raise SetupError(f"{str(path)!r} must hold a list of conversations")
        self.items = []
        for k, entry in enumerate(data):
            turns = entry.get("conversations") if isinstance(entry, dict) else None
            if not entry.get("image") or not isinstance(turns, list) or len(turns) < 2:
                raise SetupError(f"{str(path)!r} entry {k} needs 'image' and at least two 'conversations' turns")
            pairs = []
            for q, a in zip(turns[0::2], turns[1::2]):
                if q.get("from") != "human" or a.get("from") != "gpt":
                    raise SetupError(f"{str(path)!r} entry {k}: turns must alternate human / gpt")
                pairs.append((str(q["value"]).replace("<image>", "").strip(), str(a["value"]).strip()))
            self.items.append((image_root / entry["image"], pairs))
        if not self.items:
            raise SetupError(f"dataset {name!r}: {str(path)!r} holds no conversation")
        for image in {p for p, _ in self.items}:
            _require_file(image, f"dataset {name!r} image")

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        path, pairs = self.items[index]
        return Sample("text", [read_rgb(path)], conversation=list(pairs), source=self.name)


# ----------------------------------------------------------------------------- the world's own VQA
#: (question, what its objects are ordered by: 0 the mask centre's x, 1 its y, 2 minus the area) of
#: :class:`WorldObjects`' listing turn
OBJECT_ORDERS = (
    ("Which objects do you see, from left to right?", 0),
    ("Which objects do you see, from top to bottom?", 1),
    ("Which objects do you see, from the largest to the smallest?", 2),
)


def list_names(names: Sequence[str]) -> str:
    """``["red cup", "blue key", "black hammer"]`` -> ``"red cup, blue key and black hammer."``"""
    parts = list(names)
    return (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]) + "."


def world_object_labels(video) -> dict[int, tuple[str, str]]:
    """``{object id: (colour, category)}`` of a generated world's video (its ``objects`` entry); {} elsewhere."""
    objects = (video.extra or {}).get("objects")
    if not isinstance(objects, Mapping):
        return {}
    return {
        int(k): (str(v["colour"]), str(v["category"]))
        for k, v in objects.items()
        if isinstance(v, Mapping) and v.get("colour") and v.get("category")
    }


def object_vocabulary(datasets: Sequence[TrainingDataset]) -> tuple[list[str], list[str]]:
    """The colours and categories (sorted) of every object the datasets' videos list (generated worlds)."""
    colours, categories = set(), set()
    for ds in datasets:
        for item in getattr(ds, "items", []):
            video = item[0] if isinstance(item, tuple) else None
            for colour, category in (world_object_labels(video) if hasattr(video, "extra") else {}).values():
                colours.add(colour)
                categories.add(category)
    return sorted(colours), sorted(categories)


class WorldObjects(TrainingDataset):
    """Questions about a generated world's visible objects, answered from its labels (see the module docstring)."""

    def __init__(self, name: str, spec: Mapping[str, Any], *, reference_frame: str):
        o = _keys(spec, ["root"], {"split": "train", "min_pixels": 30})
        _check_reference_frame(reference_frame)
        self.name = name
        self.reference_frame = reference_frame
        self.min_pixels = int(o["min_pixels"])
        reader = InsTrack(o["root"], o["split"], require_masks=True)
        self.items = []
        for video in reader:
            labels = world_object_labels(video)
            if labels and video.has_masks:
                self.items.append((video, labels))
        if not self.items:
            raise SetupError(
                f"dataset {name!r}: no video of {str(o['root'])!r} ({o['split']}) lists its objects' colour and "
                "category (a generated instruction world does)"
            )

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        video, labels = self.items[index]
        first = 0 if self.reference_frame == "first" else int(rng.integers(len(video)))
        for i in [first, *(k for k in range(len(video)) if k != first)]:  # the first frame showing an object
            ids = video.load_mask(i)
            seen = []  # (x, y, -area, colour, category)
            for obj_id, (colour, category) in labels.items():
                ys, xs = np.nonzero(ids == obj_id)
                if len(xs) >= self.min_pixels:
                    seen.append((float(xs.mean()), float(ys.mean()), -len(xs), colour, category))
            if seen:
                break
        else:
            raise DatasetError(f"dataset {self.name!r}: no object of {video.name!r} shows {self.min_pixels} pixels")
        question, key = OBJECT_ORDERS[int(rng.integers(len(OBJECT_ORDERS)))]
        ordered = sorted(seen, key=lambda s: s[key])
        conversation = [(question, list_names([f"{c} {k}" for *_, c, k in ordered]))]
        counts = Counter(category for *_, category in seen)
        unique = [(c, k) for *_, c, k in seen if counts[k] == 1]
        if unique:
            colour, category = unique[int(rng.integers(len(unique)))]
            conversation.append((f"What colour is the {category}?", f"It is {colour}."))
        return Sample(
            "text", [video.load_frame(i)], conversation=conversation, source=self.name, objects=ids,
            object_labels=labels,
        )


# ----------------------------------------------------------------------------- reasoning segmentation
class ReasonSeg(TrainingDataset):
    """ReasonSeg images with implicit queries and polygon masks."""

    def __init__(self, name: str, spec: Mapping[str, Any]):
        o = _keys(spec, ["root"], {"split": "train"})
        self.name = name
        folder = _require_dir(Path(o["root"]) / o["split"], f"dataset {name!r} split folder")
        self.items = []
        for js in sorted(folder.glob("*.json")):
            try:
                data = json.loads(js.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise SetupError(f"{str(js)!r} is not valid JSON: {exc}") from None
            texts = data.get("text")
            if isinstance(texts, str):
                texts = [texts]
            if not texts or not isinstance(data.get("shapes"), list):
                raise SetupError(f"{str(js)!r} needs 'text' and 'shapes'")
            image = next((js.with_suffix(s) for s in IMAGE_SUFFIXES if js.with_suffix(s).is_file()), None)
            if image is None:
                raise SetupError(f"image of {str(js)!r} is missing (expected {js.with_suffix('.jpg').name})")
            self.items.append((image, [str(t) for t in texts], data["shapes"]))
        if not self.items:
            raise SetupError(f"dataset {name!r}: no *.json annotations in {str(folder)!r}")

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        image, texts, shapes = self.items[index]
        rgb = read_rgb(image)
        h, w = rgb.shape[:2]
        target = np.zeros((h, w), np.uint8)
        ignore = np.zeros((h, w), np.uint8)
        for shape in shapes:
            pts = np.round(np.asarray(shape.get("points", []), dtype=np.float64)).astype(np.int32)
            if len(pts) < 3:
                continue
            cv2.fillPoly(ignore if shape.get("label") == "ignore" else target, [pts], 1)
        void = (ignore > 0) & (target == 0)
        return Sample(
            "mask",
            [rgb],
            [target.astype(bool)],
            [void if void.any() else None],
            text=texts[int(rng.integers(len(texts)))],
            source=self.name,
        )


# ----------------------------------------------------------------------------- building and mixing
DATASET_TYPES = (
    "ref_youtube_vos",
    "instrack",
    "refer_davis",
    "semantic_seg",
    "refcoco",
    "llava_instruct",
    "reason_seg",
    "world_objects",
)
VIDEO_TYPES = ("ref_youtube_vos", "instrack", "refer_davis")


def build_dataset(spec: Mapping[str, Any], *, frames_per_clip: int, reference_frame: str) -> TrainingDataset:
    """One dataset from its config entry; :class:`SetupError` naming what is wrong."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise SetupError(f"each data.datasets entry needs a 'type' ({', '.join(DATASET_TYPES)}), got {spec!r}")
    kind = spec["type"]
    name = str(spec.get("name") or kind)
    try:
        if kind in VIDEO_TYPES:
            return VideoReferring(
                name,
                _video_reader(spec),
                frames_per_clip=frames_per_clip,
                reference_frame=reference_frame,
                kinds=spec.get("kinds"),
                colour_noise=float(spec.get("colour_noise", 0.0)),
            )
        if kind == "semantic_seg":
            return SemanticSeg(name, spec)
        if kind == "refcoco":
            return RefCOCO(name, spec)
        if kind == "llava_instruct":
            return LlavaInstruct(name, spec)
        if kind == "reason_seg":
            return ReasonSeg(name, spec)
        if kind == "world_objects":
            return WorldObjects(name, spec, reference_frame=reference_frame)
    except DatasetError as exc:
        raise SetupError(f"dataset {name!r}: {exc}") from exc
    raise SetupError(f"dataset {name!r}: unknown type {kind!r}; known: {', '.join(DATASET_TYPES)}")


class MixedStream:
    """Samples by number from datasets mixed by ratio (see the module docstring)."""

    def __init__(self, datasets: Sequence[TrainingDataset], ratios: Sequence[float], *, seed: int):
        if not datasets:
            raise SetupError("data.datasets is empty: a stage needs at least one dataset")
        ratios = np.asarray([float(r) for r in ratios], dtype=np.float64)
        if np.any(ratios < 0) or ratios.sum() <= 0:
            raise SetupError(f"dataset ratios must be >= 0 with a positive sum, got {ratios.tolist()}")
        self.datasets = list(datasets)
        self.probabilities = ratios / ratios.sum()
        self.seed = int(seed)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def choose(self, n: int) -> tuple[int, int, np.random.Generator]:
        rng = item_rng(self.seed, 10, n)
        d = int(rng.choice(len(self.datasets), p=self.probabilities))
        return d, int(rng.integers(len(self.datasets[d]))), rng

    def __getitem__(self, n: int) -> Sample:
        d, index, rng = self.choose(n)
        return self.datasets[d].sample(index, rng)


def stream_batches(
    stream, start: int, config: Mapping[str, Any], *, rank: int, world: int, collate_fn, generator
) -> Iterator[Any]:
    """Micro-batches ``start, start + 1, ...`` of a numbered sample stream for one process (:class:`BatchKeys`),
    ``config["train"]["batch_size"]`` samples each, loaded by ``config["data"]["num_workers"]`` workers."""
    keys = BatchKeys(start, batch_size=int(config["train"]["batch_size"]), rank=rank, world=world)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_sampler=keys,
        collate_fn=collate_fn,
        num_workers=int(config["data"]["num_workers"]),
        generator=generator,
    )
    return iter(loader)


def collate(samples: Sequence[Sample]) -> list[Sample]:
    """Samples stay a list: the training module tokenises and pre-processes them with the model's own code."""
    return list(samples)
