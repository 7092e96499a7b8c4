"""A video with per-frame index masks, shared by the DAVIS-2017 and referring-video readers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import DatasetError, read_index_mask, read_rgb

__all__ = ["VideoSequence"]


@dataclass(frozen=True)
class VideoSequence:
    """Frames and annotation masks of one video.

    ``frame_names`` are the file stems (``"00000"``); ``frame_paths`` the JPEG files; ``mask_paths`` the
    index-mask PNGs (``None`` for frames without annotation, e.g. an unreleased validation set). Masks are
    loaded on demand: ids 0 = background, 1..K objects, 255 = void (DAVIS).
    """

    name: str
    frame_names: tuple[str, ...]
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path | None, ...]

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def has_masks(self) -> bool:
        """Whether every frame has an annotation file."""
        return all(path is not None for path in self.mask_paths)

    def load_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``H x W x 3`` RGB ``uint8``."""
        return read_rgb(self.frame_paths[index])

    def load_mask(self, index: int) -> np.ndarray:
        """Index mask of frame ``index`` (``H x W`` ids); :class:`DatasetError` if that frame has none."""
        path = self.mask_paths[index]
        if path is None:
            raise DatasetError(f"frame {self.frame_names[index]!r} of {self.name!r} has no annotation")
        return read_index_mask(path)

    def load_masks(self) -> np.ndarray:
        """All index masks, ``T x H x W``."""
        return np.stack([self.load_mask(i) for i in range(len(self))])

    def object_masks(self, object_id: int) -> np.ndarray:
        """``T x H x W`` bool masks of one object id."""
        return self.load_masks() == int(object_id)

    def void_masks(self, void_label: int = 255) -> np.ndarray:
        """``T x H x W`` bool masks of the void label."""
        return self.load_masks() == void_label
