"""The frame's objects as the embedded brain's visual tokens (``BrainConfig.vision_source == "objects"``).

A DEVIATION from the paper for the embedded configuration (issue 31). Linear probes
(``scripts/probe_trackgpt_features.py``, ``results/embedded/probe.md``) read an object's category from a small crop
of its pixels under its mask for 90 % of objects, from the SAM embedding pooled under the mask for 62 %, and the
brain's 64 pooled grid tokens let it name the colour and category of only a quarter of implicit targets: the
language model could not find an object of a named category among grid cells. Here every visual token is one
object, so a token holds the colour, the outline and the place of one thing:

1. :class:`ObjectProposer` finds the frame's objects: SAM's "segment everything" (a grid of single-point prompts
   through a prompt encoder and mask decoder of the perception's size, on the perception's image embedding, kept
   when SAM's IoU estimate passes ``min_iou``, overlaps removed greedily by that estimate). Training may give the
   true objects instead (a generated world's index masks), as LLaVA learns from clean annotations.
2. :func:`describe_objects` turns each object into a fixed-size descriptor: its box's square crop, ``CROP x CROP``
   RGB with the pixels outside the mask blanked, and the mask itself as a fourth channel; the SAM embedding
   averaged under the mask; its box (centre, size, the square root of its area share) and a presence flag. The
   objects fill ``slots`` rows from left to right (the largest ``slots`` when there are more); the rest are empty.
3. :class:`ObjectTokens` stands in for the LLaVA vision tower: a small CNN on the crops and an MLP over the whole
   descriptor give one token per slot (a learned token for empty ones), which LLaVA's projector maps into the
   language model, so its token splicing runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from perception_common.checkpoint import load_pth_state_dict, load_strict

from .config import SamConfig
from .sam import build_mask_decoder, build_prompt_encoder

#: side of an object's crop in its descriptor
CROP = 16
#: descriptor values after the crop and the pooled embedding: centre x, centre y, width, height (shares of the
#: frame), the square root of the area share, presence
GEOMETRY = 6


def descriptor_size(channels: int) -> int:
    """Length of one object's descriptor for a SAM embedding of ``channels``."""
    return 4 * CROP * CROP + int(channels) + GEOMETRY


def _crop(frame: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``4 x CROP x CROP`` float32: the box's square surroundings, RGB in about [-2, 2] with the background at 0,
    and the mask."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * 1.15 + 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = side / 2
    # an affine map of the square onto CROP x CROP (bilinear: warpAffine has no area filter); outside the frame: 0
    scale = CROP / side
    m = np.array([[scale, 0, (half - cx) * scale], [0, scale, (half - cy) * scale]], np.float32)
    rgb = cv2.warpAffine(frame.astype(np.float32), m, (CROP, CROP), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(mask.astype(np.float32), m, (CROP, CROP), flags=cv2.INTER_LINEAR)
    rgb = (rgb / 255.0 - 0.5) / 0.25 * (inside[..., None] > 0.5)
    return np.concatenate([rgb.transpose(2, 0, 1), inside[None]], 0)


def object_crop(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``4 x CROP x CROP`` float32 crop of one object (``mask``: ``H x W`` bool, not empty) of ``frame`` (``H x W x
    3`` uint8 RGB): the square around its box, RGB in about [-2, 2] with the pixels outside the mask at 0, and the
    mask (the crop :func:`describe_objects` puts in a descriptor)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        raise ValueError("object_crop: the mask is empty")
    return _crop(frame, mask, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def describe_objects(
    frame: np.ndarray,
    masks: list[np.ndarray],
    embedding: torch.Tensor,
    input_size: tuple[int, int],
    *,
    img_size: int,
    slots: int,
) -> torch.Tensor:
    """``slots x D`` float32 descriptors (module docstring) of ``masks`` (``H x W`` bool, the frame's size).

    Args:
        frame: ``H x W x 3`` uint8 RGB.
        masks: the objects; empty masks are skipped.
        embedding: ``1 x C x h x w`` the frame's SAM image embedding (of the padded input).
        input_size: ``(h, w)`` of the resized frame inside SAM's padded input.
        img_size: the side of SAM's padded input.
        slots: rows of the result.
    """
    height, width = frame.shape[:2]
    channels, side = int(embedding.shape[1]), int(embedding.shape[-1])
    out = torch.zeros(slots, descriptor_size(channels))
    found = []
    for i in slot_order(masks, slots):
        ys, xs = np.nonzero(masks[i])
        found.append((masks[i], xs, ys))
    if not found:
        return out
    # each mask on the embedding's grid: resized like the frame, padded like SAM's input, averaged per cell
    stack = torch.from_numpy(np.stack([f[0] for f in found]).astype(np.float32))[:, None]
    h_in, w_in = input_size
    resized = F.interpolate(stack, (h_in, w_in), mode="area")
    padded = F.pad(resized, (0, img_size - w_in, 0, img_size - h_in))
    weights = F.adaptive_avg_pool2d(padded, side)[:, 0]  # n x h x w
    emb = embedding[0].float().cpu()
    pooled = torch.einsum("nhw,chw->nc", weights, emb) / weights.sum((1, 2)).clamp_min(1e-6)[:, None]
    for i, (mask, xs, ys) in enumerate(found):
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        crop = torch.from_numpy(_crop(frame, mask, box)).flatten()
        geometry = torch.tensor([
            float(xs.mean()) / width, float(ys.mean()) / height, (box[2] - box[0]) / width,
            (box[3] - box[1]) / height, (len(xs) / (height * width)) ** 0.5, 1.0,
        ])  # fmt: skip
        out[i] = torch.cat([crop, pooled[i], geometry])
    return out


def slot_order(masks: list[np.ndarray], slots: int) -> list[int]:
    """Which of ``masks`` fill the ``slots`` and in what order: the largest ``slots`` non-empty ones, ordered by
    their centre from left to right (:func:`describe_objects`' rows)."""
    sized = [(i, np.nonzero(m)[1]) for i, m in enumerate(masks)]
    sized = sorted([(i, xs) for i, xs in sized if len(xs)], key=lambda f: -len(f[1]))[:slots]
    return [i for i, _ in sorted(sized, key=lambda f: float(f[1].mean()))]


def index_mask_ids(ids: np.ndarray, *, min_pixels: int, void: int = 255) -> list[int]:
    """The object ids of an index mask (0 background, ``void`` left out) with at least ``min_pixels`` pixels."""
    values, counts = np.unique(ids, return_counts=True)
    return [int(v) for v, n in zip(values, counts) if v not in (0, void) and n >= min_pixels]


def index_mask_objects(ids: np.ndarray, *, min_pixels: int, void: int = 255) -> list[np.ndarray]:
    """The masks of :func:`index_mask_ids`' objects, in that order."""
    return [ids == v for v in index_mask_ids(ids, min_pixels=min_pixels, void=void)]


class ObjectTokens(nn.Module):
    """Stands in for a LLaVA vision tower when the brain's tokens are the frame's objects: ``B x slots x D``
    descriptors -> every hidden state LLaVA may select holds a zero class token (which its "default" feature
    selection drops) followed by one ``hidden``-wide token per slot."""

    def __init__(self, *, slots: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.slots, self.channels = int(slots), int(channels)
        self.crop_net = nn.Sequential(
            nn.Conv2d(4, 32, 3, padding=1), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Flatten(),
        )  # fmt: skip
        crop_features = 64 * (CROP // 4) ** 2
        self.mlp = nn.Sequential(
            nn.Linear(crop_features + self.channels + GEOMETRY, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.empty = nn.Parameter(torch.zeros(hidden))

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        b, n, d = pixel_values.shape
        if n != self.slots or d != descriptor_size(self.channels):
            raise ValueError(f"object descriptors must be B x {self.slots} x {descriptor_size(self.channels)}, "
                             f"got {tuple(pixel_values.shape)}")  # fmt: skip
        x = pixel_values.to(self.empty.dtype)
        crops = x[..., : 4 * CROP * CROP].reshape(b * n, 4, CROP, CROP)
        features = torch.cat([self.crop_net(crops).reshape(b, n, -1), x[..., 4 * CROP * CROP :]], dim=-1)
        present = x[..., -1:]
        tokens = self.mlp(features) * present + self.empty * (1 - present)
        hidden = torch.cat([tokens.new_zeros(b, 1, tokens.shape[2]), tokens], dim=1)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden, pooler_output=hidden[:, 0], hidden_states=(hidden,) * 2
        )


def use_object_tokens(model: nn.Module) -> None:
    """Replace a LLaVA model's vision tower by :class:`ObjectTokens` with one slot per token of its grid (image size
    over patch size of its vision config, squared) and its vision hidden size as the embedding's channels."""
    vc = model.config.vision_config
    owner = model.model if hasattr(model, "model") and hasattr(model.model, "vision_tower") else model
    slots = (int(vc.image_size) // int(vc.patch_size)) ** 2
    owner.vision_tower = ObjectTokens(slots=slots, channels=int(vc.hidden_size), hidden=int(vc.hidden_size))


class ObjectProposer(nn.Module):
    """SAM's "segment everything" on the perception's image embedding (module docstring, step 1): a prompt encoder
    and a mask decoder of the perception's size under SAM's names (so a SAM state dict's ``prompt_encoder.*`` and
    ``mask_decoder.*`` load into it).

    Args:
        config: the perception's SAM sizes.
        grid: prompts per side (``grid x grid`` single points over the frame).
        min_iou: SAM's IoU estimate a proposal needs.
        min_pixels: smallest object kept, in frame pixels.
        max_share: largest share of the frame an object may cover (larger ones are background).
        overlap: a proposal overlapping a better one by this IoU is dropped.
        contain: ... or sharing this share of the smaller one's pixels (a part of an object, or an object and a
            part of the background around it).
    """

    def __init__(
        self, config: SamConfig, *, grid: int = 8, min_iou: float = 0.5, min_pixels: int = 30,
        max_share: float = 0.4, overlap: float = 0.5, contain: float = 0.7,
    ) -> None:  # fmt: skip
        super().__init__()
        self.prompt_encoder = build_prompt_encoder(config)
        self.mask_decoder = build_mask_decoder(config)
        self.grid, self.min_iou, self.min_pixels = int(grid), float(min_iou), int(min_pixels)
        self.max_share, self.overlap, self.contain = float(max_share), float(overlap), float(contain)
        self.requires_grad_(False)

    def load_sam_state_dict(self, path: str | Path, what: str) -> None:
        """Take the prompt encoder and mask decoder of the SAM state dict at ``path`` (``.pth``, official names, e.g.
        a ``pretrain_sam.py`` run's ``sam.pth``); its image encoder is left out. ``what`` names the source in errors.

        Raises:
            perception_common.checkpoint.CheckpointError: the file cannot be read, or its tensors do not fit.
        """
        state = load_pth_state_dict(path)
        parts = {k: v for k, v in state.items() if k.startswith(("prompt_encoder.", "mask_decoder."))}
        load_strict(self, parts, what)

    @torch.no_grad()
    def forward(
        self,
        embedding: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
        postprocess: Callable[[torch.Tensor, tuple[int, int], tuple[int, int]], torch.Tensor],
    ) -> list[np.ndarray]:
        """The frame's objects, ``H x W`` bool masks, best first.

        Args:
            embedding: ``1 x C x h x w`` the frame's SAM image embedding.
            input_size, original_size: the resized and the original frame size (``FrameFeatures``).
            postprocess: the perception's low-resolution-logits-to-frame upsampling (``SamTransform.postprocess``).
        """
        h, w = input_size
        centres = (np.arange(self.grid) + 0.5) / self.grid
        xs, ys = np.meshgrid(centres * w, centres * h)
        dtype = self.mask_decoder.iou_token.weight.dtype
        points = torch.tensor(np.stack([xs.ravel(), ys.ravel()], 1), dtype=torch.float32, device=embedding.device)
        n = len(points)
        labels = torch.ones(n, 1, dtype=torch.int, device=embedding.device)
        sparse, dense = self.prompt_encoder(points=(points[:, None], labels), boxes=None, masks=None)
        out = self.mask_decoder(
            image_embeddings=embedding.to(dtype).expand(n, -1, -1, -1),
            image_pe=self.prompt_encoder.get_dense_pe().to(dtype),
            prompt_tokens=sparse.to(dtype),
            purport_query=torch.ones(n, sparse.shape[-1], dtype=dtype, device=embedding.device),
            dense_prompt=dense.to(dtype),
        )
        iou = out.iou_prediction[:, 0].float().cpu().numpy()
        keep_idx = [i for i in np.argsort(-iou) if iou[i] >= self.min_iou]
        if not keep_idx:
            return []
        masks = (postprocess(out.mask_logits[keep_idx], input_size, original_size)[:, 0] > 0).cpu().numpy()
        limit = self.max_share * masks.shape[1] * masks.shape[2]
        kept: list[np.ndarray] = []
        for mask in masks:
            area = int(mask.sum())
            if area < self.min_pixels or area > limit:
                continue
            if all(self._apart(mask, area, k) for k in kept):
                kept.append(mask)
        return kept

    def _apart(self, mask: np.ndarray, area: int, kept: np.ndarray) -> bool:
        """``mask`` neither overlaps the better ``kept`` by ``overlap`` IoU nor shares ``contain`` of the smaller."""
        both = int((mask & kept).sum())
        return both < self.overlap * int((mask | kept).sum()) and both < self.contain * min(area, int(kept.sum()))
