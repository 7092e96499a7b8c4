"""The frame's objects as words: the embedded brain's namer (``BrainConfig.naming == "scene"``, issue 31).

A DEVIATION from the paper for the embedded configuration. Five sessions of training the embedded brain's visual
tokens (a from-scratch vision tower, the SAM encoder's grid, one token per object, with and without a per-object
label loss; ``results/embedded/probe.md``) left SmolLM2-135M naming the colour and category of a quarter of implicit
targets, although linear probes read both from its tokens for nine objects in ten: the small language model does not
read its visual tokens one by one. It does read text. So, before it answers, the brain reasons over a listing of the
frame's objects in words, in the manner of "Socratic" pipelines:

1. the perception's object proposer (:class:`trackgpt.objects.ObjectProposer`) finds the frame's objects;
2. :class:`ObjectNamer`, a small CNN on each object's masked crop, names its colour and category from the
   vocabulary it was trained on;
3. :func:`scene_text` lists them three ways (left to right, top to bottom, largest first), so that "the leftmost
   fruit" or "the smallest cup" is the first or last match in a list rather than a comparison of numbers;
4. the language model, with its own LoRA adapter (``namer``), reads the listing and the instruction and answers the
   target's name ("red cup", :func:`namer_prompt`);
5. the brain's usual answer is then teacher-forced with that name, so the ``<TK>`` / ``<PO>`` states, phi and the
   perception are those of the model as trained (the "oracle answer" path of the evaluation, with a name the brain
   chose).

The namer's words are the closed vocabulary of the world it was trained on: it names nothing else, and on real
cameras it is no better than the brain without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .objects import CROP, object_crop

#: the namer's prompt: SmolLM2's chat format, the listing and the instruction
NAMER_PROMPT = (
    "<|im_start|>user\n{scene}\nInstruction: {instruction}\nWhich object is meant?<|im_end|>\n<|im_start|>assistant\n"
)


@dataclass(frozen=True)
class SceneObject:
    """One object of a frame, named: its colour and category words, its centroid (shares of the frame's width and
    height) and its visible area (share of the frame)."""

    colour: str
    category: str
    x: float
    y: float
    area: float

    @property
    def name(self) -> str:
        return f"{self.colour} {self.category}"


def scene_objects(masks: Sequence[np.ndarray], names: Sequence[tuple[str, str]]) -> list[SceneObject]:
    """``masks`` (``H x W`` bool, non-empty) with their ``(colour, category)`` names as :class:`SceneObject`."""
    if len(masks) != len(names):
        raise ValueError(f"{len(masks)} masks but {len(names)} names")
    out = []
    for mask, (colour, category) in zip(masks, names):
        ys, xs = np.nonzero(mask)
        if not len(xs):
            continue
        h, w = mask.shape
        out.append(SceneObject(colour, category, float(xs.mean()) / w, float(ys.mean()) / h, len(xs) / (h * w)))
    return out


def scene_text(objects: Sequence[SceneObject]) -> str:
    """The namer's listing of a frame's objects: left to right, top to bottom and largest first (one line each)."""
    if not objects:
        return "No objects."

    def listing(ordered: Sequence[SceneObject]) -> str:
        return ", ".join(o.name for o in ordered) + "."

    return "\n".join([
        "Left to right: " + listing(sorted(objects, key=lambda o: o.x)),
        "Top to bottom: " + listing(sorted(objects, key=lambda o: o.y)),
        "Largest first: " + listing(sorted(objects, key=lambda o: -o.area)),
    ])  # fmt: skip


def namer_prompt(scene: str, instruction: str) -> str:
    """The namer's prompt for a listing (:func:`scene_text`) and an instruction (already validated)."""
    return NAMER_PROMPT.replace("{scene}", scene).replace("{instruction}", instruction)


def colour_statistics(crops: torch.Tensor) -> torch.Tensor:
    """``N x 15``: per RGB channel of each crop's pixels inside its mask (channel 3 above 0.5), the mean, the standard
    deviation and the 10th, 50th and 90th percentiles: the object's colours without its shape."""
    rgb, inside = crops[:, :3].flatten(2), (crops[:, 3] > 0.5).flatten(1)  # N x 3 x P, N x P
    count = inside.sum(1).clamp_min(1)[:, None]
    mean = (rgb * inside[:, None]).sum(2) / count
    std = (((rgb - mean[..., None]) ** 2 * inside[:, None]).sum(2) / count).sqrt()
    # percentiles over the masked pixels: the others pushed past the top end, then ranks among the first `count`
    ranked = rgb.masked_fill(~inside[:, None], float("inf")).sort(2).values
    quantiles = []
    for q in (0.1, 0.5, 0.9):
        rank = ((count - 1) * q).round().long()  # N x 1
        quantiles.append(ranked.gather(2, rank[:, None].expand(-1, 3, 1))[..., 0])
    stats = torch.cat([mean, std, *quantiles], 1)
    return torch.where(torch.isfinite(stats), stats, torch.zeros_like(stats))


class ObjectNamer(nn.Module):
    """Names an object's colour and category from its masked crop (:func:`trackgpt.objects.object_crop`), with two
    branches that cannot lean on each other: the category from a small CNN on the crop (trained on crops whose
    colours are scrambled, so that it reads the shape: ``training.trackgpt.train_namer``), the colour from the
    statistics of the pixels inside the mask (:func:`colour_statistics`), which hold no shape. One network reading
    both from the crop learned the world's colour / category pairs: on VAL objects of pairs it never saw it named the
    category of 53 % (seen pairs 99 %).

    Args:
        colours, categories: the vocabulary (the words of the world it is trained on); saved in the model's config.
        width: channels of the CNN's last layer.
    """

    def __init__(self, colours: Sequence[str], categories: Sequence[str], *, width: int = 64) -> None:
        super().__init__()
        if not colours or not categories:
            raise ValueError("ObjectNamer needs at least one colour and one category")
        self.colours, self.categories = list(colours), list(categories)
        self.shape = nn.Sequential(
            nn.Conv2d(4, 32, 3, padding=1), nn.BatchNorm2d(32), nn.GELU(),
            nn.Conv2d(32, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.GELU(),
            nn.Flatten(), nn.Linear(width * (CROP // 4) ** 2, 128), nn.GELU(),
        )  # fmt: skip
        self.category_head = nn.Linear(128, len(self.categories))
        self.colour_mlp = nn.Sequential(nn.Linear(15, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU())
        self.colour_head = nn.Linear(128, len(self.colours))

    def forward(
        self, crops: torch.Tensor, category_crops: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``N x 4 x CROP x CROP`` crops -> colour and category logits (the category read from ``category_crops``
        instead when given: training's colour-scrambled copies)."""
        crops = crops.to(self.colour_head.weight.dtype)
        shape_in = crops if category_crops is None else category_crops.to(crops.dtype)
        colour = self.colour_head(self.colour_mlp(colour_statistics(crops.float()).to(crops.dtype)))
        return colour, self.category_head(self.shape(shape_in))

    @torch.no_grad()
    def name(self, frame: np.ndarray, masks: Sequence[np.ndarray]) -> list[tuple[str, str]]:
        """``(colour, category)`` of each of ``masks`` (non-empty ``H x W`` bool) in ``frame`` (``H x W x 3`` uint8
        RGB)."""
        if not len(masks):
            return []
        device = self.colour_head.weight.device
        crops = torch.from_numpy(np.stack([object_crop(frame, m) for m in masks])).to(device)
        colour, category = self(crops)
        return [(self.colours[int(c)], self.categories[int(k)])
                for c, k in zip(colour.argmax(1), category.argmax(1))]  # fmt: skip
