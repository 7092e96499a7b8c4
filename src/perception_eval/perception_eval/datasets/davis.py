"""DAVIS-2017 reader.

Layout (DAVIS-2017 TrainVal, as the davis2017-evaluation package reads it)::

    <root>/JPEGImages/480p/<seq>/00000.jpg
    <root>/Annotations/480p/<seq>/00000.png      palette PNG: id per pixel, 0 background, 255 void
    <root>/ImageSets/2017/{train,val}.txt          one sequence name per line

Rules: the sequence list comes from ``ImageSets/2017/<split>.txt`` (or ``sequences=``); frames are the
sorted ``*.jpg`` of the sequence folder; each frame's annotation is the PNG with the same stem. With
``require_masks=True`` (default; DAVIS train/val annotate every frame) a missing annotation folder or file
raises :class:`DatasetError` naming it; with ``False`` missing annotations become ``None``. The objects of a
sequence are ``1..max id of its first annotation`` (the evaluation package's rule), void excluded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .common import DatasetError, PathLike, require_dir, require_file
from .video import VideoSequence

__all__ = ["Davis2017", "DavisSequence", "davis_object_ids", "list_frames"]

DavisSequence = VideoSequence


def list_frames(folder: Path, suffix: str = ".jpg") -> list[Path]:
    """Sorted files with ``suffix`` in ``folder``; :class:`DatasetError` naming the folder if missing or empty."""
    require_dir(folder, "frame folder")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix and p.is_file())
    if not frames:
        raise DatasetError(f"frame folder {str(folder)!r} has no {suffix} frames", folder)
    return frames


def davis_object_ids(first_mask: np.ndarray, void_label: int = 255) -> tuple[int, ...]:
    """``1..max id`` of a first-frame annotation, the void label excluded."""
    ids = np.where(first_mask == void_label, 0, first_mask)
    return tuple(range(1, int(ids.max()) + 1))


class Davis2017:
    """DAVIS-2017 sequences of one split: ``Davis2017(root, "val")["bike-packing"].load_masks()``.

    Iterating yields :class:`DavisSequence` objects in ImageSets order; ``names`` lists them.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "val",
        *,
        resolution: str = "480p",
        sequences: Sequence[str] | None = None,
        require_masks: bool = True,
    ):
        self.root = require_dir(root, "DAVIS root")
        self.split = split
        self.resolution = resolution
        self.frames_dir = require_dir(self.root / "JPEGImages" / resolution, "DAVIS frames folder")
        self.masks_dir = self.root / "Annotations" / resolution
        if require_masks:
            require_dir(self.masks_dir, "DAVIS annotations folder")
        if sequences is None:
            list_file = require_file(self.root / "ImageSets" / "2017" / f"{split}.txt", "DAVIS sequence list")
            sequences = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        self.names: tuple[str, ...] = tuple(sequences)
        self._sequences = {name: self._read_sequence(name, require_masks) for name in self.names}

    def _read_sequence(self, name: str, require_masks: bool) -> DavisSequence:
        frames = list_frames(self.frames_dir / name)
        mask_folder = self.masks_dir / name
        if require_masks:
            require_dir(mask_folder, "DAVIS annotation folder")
        masks: list[Path | None] = []
        for frame in frames:
            mask = mask_folder / f"{frame.stem}.png"
            if mask.is_file():
                masks.append(mask)
            elif require_masks:
                raise DatasetError(f"annotation {str(mask)!r} is missing (frame {frame.name} of {name!r})", mask)
            else:
                masks.append(None)
        return DavisSequence(
            name=name,
            frame_names=tuple(f.stem for f in frames),
            frame_paths=tuple(frames),
            mask_paths=tuple(masks),
        )

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[DavisSequence]:
        return (self._sequences[name] for name in self.names)

    def __getitem__(self, name: str) -> DavisSequence:
        try:
            return self._sequences[name]
        except KeyError:
            raise KeyError(f"sequence {name!r} is not in DAVIS-2017 {self.split}") from None

    def object_ids(self, name: str) -> tuple[int, ...]:
        """Objects of a sequence: ``1..max id`` of its first annotation."""
        return davis_object_ids(self[name].load_mask(0))
