"""Frame and mask transforms of the AVS training and evaluation (apart from the network, as in torchvision).

AVSBench resizes every frame to ``image_size`` squared without keeping the aspect ratio and applies no other
augmentation; the model's :meth:`avs.AVSModel.preprocess_frame` does the same resize (OpenCV bilinear), so
training, evaluation and the node see identical inputs. Masks are resized with nearest-neighbour.
An optional horizontal flip (off by default) flips the frames and masks of a clip together.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """``T x H x W x 3`` uint8 -> ``T x S x S x 3`` uint8 (bilinear, like ``AVSModel.preprocess_frame``)."""
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in frames])


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """``M x H x W`` bool -> ``M x S x S`` bool (nearest)."""
    return np.stack(
        [cv2.resize(m.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool) for m in masks]
    )


class ClipTransform:
    """Resize (and optionally flip) one clip.

    Args:
        image_size: side of the model input.
        hflip: probability of flipping a whole clip horizontally (training only).
    """

    def __init__(self, *, image_size: int, hflip: float = 0.0):
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip must be a probability, got {hflip}")
        self.image_size = int(image_size)
        self.hflip = float(hflip)

    def __call__(
        self, frames: np.ndarray, masks: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(T x 3 x S x S float in [0, 1], M x 1 x S x S float 0/1)``."""
        f = resize_frames(frames, self.image_size)
        m = resize_masks(masks, self.image_size)
        if rng is not None and self.hflip > 0 and rng.random() < self.hflip:
            f, m = f[:, :, ::-1], m[:, :, ::-1]
        ft = torch.from_numpy(np.ascontiguousarray(f)).permute(0, 3, 1, 2).float().div_(255.0)
        mt = torch.from_numpy(np.ascontiguousarray(m)).unsqueeze(1).float()
        return ft, mt
