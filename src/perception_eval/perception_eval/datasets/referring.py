"""Referring / instruction video readers: Ref-YouTube-VOS, InsTrack, Refer-DAVIS-17.

Layouts::

    Ref-YouTube-VOS and InsTrack (InsTrack is stored exactly like Ref-YouTube-VOS; the expression text is the
    instruction):
        <root>/<split>/JPEGImages/<video_id>/<frame>.jpg
        <root>/<split>/Annotations/<video_id>/<frame>.png     palette PNG, value = object id
        <root>/meta_expressions/<split>/meta_expressions.json

    Refer-DAVIS-17: DAVIS-2017 frames and annotations plus the expressions file:
        <root>/JPEGImages/480p/<video_id>/<frame>.jpg
        <root>/Annotations/480p/<video_id>/<frame>.png
        <root>/meta_expressions/<split>/meta_expressions.json
      also read: ReferFormer's arrangement ``<root>/DAVIS/{JPEGImages,Annotations}/480p`` (used when
      ``<root>/DAVIS/JPEGImages`` exists) and its split folder name ``valid`` for ``split="val"`` (used when
      ``meta_expressions/val`` does not exist).

``meta_expressions.json`` = ``{"videos": {"<video_id>": {"frames": ["00000", ...], "expressions": {"0":
{"exp": "<text>", "obj_id": "<id>", ...}}, ...}}}``.

Rules:
    * Videos are those of the JSON, in its order; expressions are sorted by their numeric id.
    * ``exp`` is required; ``obj_id`` is optional (Ref-YouTube-VOS ``valid`` has none) and becomes ``int`` or
      ``None``. Every other key of an expression (the instruction world's ``kind``, ``template``,
      ``heldout``, ``category``, ...) is kept in ``Expression.extra``; every other key of a video (e.g. the
      world's ``objects``) in ``ReferringVideo.extra``.
    * Frames are the JSON's ``frames`` list (or, without one, the sorted ``*.jpg`` of the video folder); every
      listed frame must exist.
    * Masks: ``require_masks=None`` (default) requires an annotation for every frame when the split has an
      ``Annotations`` folder and reads none otherwise (Ref-YouTube-VOS ``valid``); ``True`` / ``False`` force it.
    * Anything missing or malformed raises :class:`DatasetError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import DatasetError, PathLike, read_json, require_dir
from .davis import list_frames
from .video import VideoSequence

__all__ = [
    "Expression",
    "InsTrack",
    "RefYouTubeVOS",
    "ReferDavis17",
    "ReferringDataset",
    "ReferringVideo",
    "read_meta_expressions",
]


@dataclass(frozen=True)
class Expression:
    """One referring expression (or instruction) about one object of a video."""

    expression_id: str
    text: str
    obj_id: int | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def instruction(self) -> str:
        """The text, under InsTrack's name for it."""
        return self.text

    @property
    def kind(self) -> str | None:
        """``explicit`` / ``implicit`` / ``relational`` when the file says so (instruction world), else None."""
        return self.extra.get("kind")

    @property
    def heldout(self) -> bool:
        """The instruction world's ``heldout`` flag (False when absent)."""
        return bool(self.extra.get("heldout", False))


@dataclass(frozen=True)
class ReferringVideo(VideoSequence):
    """A video with its expressions; ``extra`` holds the video's other JSON keys."""

    expressions: tuple[Expression, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def target_masks(self, expression: Expression) -> np.ndarray:
        """``T x H x W`` bool ground truth of the object an expression refers to."""
        if expression.obj_id is None:
            raise DatasetError(f"expression {expression.expression_id!r} of {self.name!r} has no obj_id")
        return self.object_masks(expression.obj_id)


def _expression_order(key: str):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def read_meta_expressions(path: PathLike) -> dict[str, dict[str, Any]]:
    """Parse and check a ``meta_expressions.json``: ``{video_id: {"frames": [...] | None, "expressions":
    (Expression, ...), "extra": {...}}}``. :class:`DatasetError` naming the file on any problem."""
    path = Path(path)
    data = read_json(path, "expressions file")
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise DatasetError(f"expressions file {str(path)!r} has no 'videos' object", path)
    videos = {}
    for video_id, entry in data["videos"].items():
        if not isinstance(entry, dict):
            raise DatasetError(f"expressions file {str(path)!r}: video {video_id!r} is not an object", path)
        frames = entry.get("frames")
        if frames is not None and not (isinstance(frames, list) and all(isinstance(f, str) for f in frames)):
            raise DatasetError(f"expressions file {str(path)!r}: 'frames' of {video_id!r} is not a list of names", path)
        raw = entry.get("expressions", {})
        if not isinstance(raw, dict):
            raise DatasetError(f"expressions file {str(path)!r}: 'expressions' of {video_id!r} is not an object", path)
        expressions = []
        for key in sorted(raw, key=_expression_order):
            item = raw[key]
            if not isinstance(item, dict) or not isinstance(item.get("exp"), str):
                raise DatasetError(
                    f"expressions file {str(path)!r}: expression {key!r} of {video_id!r} has no 'exp' text", path
                )
            obj_id = item.get("obj_id")
            if obj_id is not None:
                try:
                    obj_id = int(obj_id)
                except (TypeError, ValueError):
                    raise DatasetError(
                        f"expressions file {str(path)!r}: obj_id {obj_id!r} of {video_id!r}/{key} is not an integer",
                        path,
                    ) from None
            extra = {k: v for k, v in item.items() if k not in ("exp", "obj_id")}
            expressions.append(Expression(str(key), item["exp"], obj_id, extra))
        videos[video_id] = {
            "frames": frames,
            "expressions": tuple(expressions),
            "extra": {k: v for k, v in entry.items() if k not in ("frames", "expressions")},
        }
    return videos


class ReferringDataset:
    """Videos with expressions read from a frames folder, a masks folder and a ``meta_expressions.json``.

    Use the named subclasses; iterate for :class:`ReferringVideo`, ``dataset[video_id]`` for one, and
    :meth:`iter_expressions` for ``(video, expression)`` pairs (one tracking episode each).
    """

    def __init__(self, *, meta_path: Path, frames_dir: Path, masks_dir: Path, require_masks: bool | None):
        self.meta_path = Path(meta_path)
        self.frames_dir = require_dir(frames_dir, "frames folder")
        self.masks_dir = Path(masks_dir)
        if require_masks is None:
            require_masks = self.masks_dir.is_dir()
        elif require_masks:
            require_dir(self.masks_dir, "annotations folder")
        self.require_masks = require_masks
        meta = read_meta_expressions(self.meta_path)
        self._videos = {video_id: self._read_video(video_id, entry) for video_id, entry in meta.items()}

    def _read_video(self, video_id: str, entry: dict[str, Any]) -> ReferringVideo:
        folder = self.frames_dir / video_id
        if entry["frames"] is None:
            frame_paths = list_frames(folder)
        else:
            require_dir(folder, "frame folder")
            frame_paths = [folder / f"{name}.jpg" for name in entry["frames"]]
            for path in frame_paths:
                if not path.is_file():
                    raise DatasetError(f"frame {str(path)!r} listed in {str(self.meta_path)!r} is missing", path)
        mask_paths: list[Path | None] = []
        if self.require_masks:
            mask_folder = require_dir(self.masks_dir / video_id, "annotation folder")
            for frame in frame_paths:
                mask = mask_folder / f"{frame.stem}.png"
                if not mask.is_file():
                    raise DatasetError(
                        f"annotation {str(mask)!r} is missing (frame {frame.name} of {video_id!r})", mask
                    )
                mask_paths.append(mask)
        else:
            mask_paths = [None] * len(frame_paths)
        return ReferringVideo(
            name=video_id,
            frame_names=tuple(p.stem for p in frame_paths),
            frame_paths=tuple(frame_paths),
            mask_paths=tuple(mask_paths),
            expressions=entry["expressions"],
            extra=entry["extra"],
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._videos)

    def __len__(self) -> int:
        return len(self._videos)

    def __iter__(self) -> Iterator[ReferringVideo]:
        return iter(self._videos.values())

    def __getitem__(self, video_id: str) -> ReferringVideo:
        try:
            return self._videos[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in {str(self.meta_path)!r}") from None

    def iter_expressions(self) -> Iterator[tuple[ReferringVideo, Expression]]:
        """Every ``(video, expression)`` pair, videos in file order, expressions by id."""
        for video in self:
            for expression in video.expressions:
                yield video, expression


class RefYouTubeVOS(ReferringDataset):
    """Ref-YouTube-VOS split ``<root>/<split>`` with ``<root>/meta_expressions/<split>/meta_expressions.json``."""

    def __init__(self, root: PathLike, split: str = "train", *, require_masks: bool | None = None):
        self.root = require_dir(root, f"{type(self).__name__} root")
        self.split = split
        split_dir = require_dir(self.root / split, "split folder")
        super().__init__(
            meta_path=self.root / "meta_expressions" / split / "meta_expressions.json",
            frames_dir=split_dir / "JPEGImages",
            masks_dir=split_dir / "Annotations",
            require_masks=require_masks,
        )


class InsTrack(RefYouTubeVOS):
    """InsTrack (instruction tracking), stored like Ref-YouTube-VOS; ``Expression.instruction`` is the text."""

    def __init__(self, root: PathLike, split: str = "test", *, require_masks: bool | None = None):
        super().__init__(root, split, require_masks=require_masks)

    def iter_instructions(self) -> Iterator[tuple[ReferringVideo, Expression]]:
        """Alias of :meth:`iter_expressions`."""
        return self.iter_expressions()


class ReferDavis17(ReferringDataset):
    """Refer-DAVIS-17: DAVIS-2017 frames / annotations and ``meta_expressions/<split>/meta_expressions.json``."""

    def __init__(self, root: PathLike, split: str = "val", *, resolution: str = "480p", require_masks: bool = True):
        self.root = require_dir(root, "Refer-DAVIS-17 root")
        self.split = split
        davis_root = self.root / "DAVIS" if (self.root / "DAVIS" / "JPEGImages").is_dir() else self.root
        meta_path = self.root / "meta_expressions" / split / "meta_expressions.json"
        if split == "val" and not meta_path.parent.is_dir() and (self.root / "meta_expressions" / "valid").is_dir():
            meta_path = self.root / "meta_expressions" / "valid" / "meta_expressions.json"
        super().__init__(
            meta_path=meta_path,
            frames_dir=davis_root / "JPEGImages" / resolution,
            masks_dir=davis_root / "Annotations" / resolution,
            require_masks=require_masks,
        )
