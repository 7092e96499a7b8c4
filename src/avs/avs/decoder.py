"""Top-down FPN decoder to one mask at the input resolution.

The paper calls it Panoptic-FPN (Kirillov et al. 2019); the AVSBench code that
it builds on fuses the four stages top-down with residual refinement blocks
(``FeatureFusionBlock``) and a small output head. We follow that structure.

Choice: the reference upsamples by fixed factors of 2 and so needs input sizes
divisible by 32; here each step resizes to the next stage's actual size and the
head resizes to the requested output size, so any input size works (identical to
the reference's factors of 2 when the size is divisible by 32).

``style`` picks between two details (the shipped models were trained with
``"project"``; imported AVSBench checkpoints need ``"avsbench"``):

* the residual unit's skip: ``"project"`` adds ``x``; AVSBench's
  ``ResidualConvUnit`` applies an in-place ReLU to its input first, so its skip
  adds ``relu(x)`` (``avs_scripts/*/model/PVT_AVSModel.py``, ``ResidualConvUnit.forward``);
* the head's resize: ``align_corners=True`` here, ``False`` in AVSBench's
  ``output_conv`` (``Interpolate(scale_factor=2, mode="bilinear")``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DECODER_STYLES = ("project", "avsbench")


def _resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool = True) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class ResidualConvUnit(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3 x 3 convs (``relu(x) + ...`` with ``skip_relu``);
    ``B x C x h x w`` -> same."""

    def __init__(self, *, channels: int, skip_relu: bool = False):
        super().__init__()
        self.skip_relu = skip_relu
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(x)
        return (r if self.skip_relu else x) + self.conv2(F.relu(self.conv1(r)))


class FusionBlock(nn.Module):
    """One top-down step: add the refined lateral feature, refine, resize to the next level."""

    def __init__(self, *, channels: int, skip_relu: bool = False):
        super().__init__()
        self.lateral = ResidualConvUnit(channels=channels, skip_relu=skip_relu)
        self.refine = ResidualConvUnit(channels=channels, skip_relu=skip_relu)

    def forward(self, top: torch.Tensor, lateral: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        out = top if lateral is None else top + self.lateral(lateral)
        return _resize(self.refine(out), size)


class FPNDecoder(nn.Module):
    """Fused stage features -> mask logits.

    Args:
        channels: width of every stage's fused features.
        head_channels: widths of the two output-head convs (reference: 128, 32).
        out_channels: 1 (one mask) or the number of classes (AVSBench's AVSS: 71, class 0 = background).
        style: ``"project"`` or ``"avsbench"`` (see the module docstring).
    """

    def __init__(self, *, channels: int, head_channels: Sequence[int] = (128, 32), out_channels: int = 1,
                 style: str = "project"):
        super().__init__()
        if style not in DECODER_STYLES:
            raise ValueError(f"decoder style must be one of {', '.join(DECODER_STYLES)}, got {style!r}")
        h1, h2 = (int(c) for c in head_channels)
        skip_relu = style == "avsbench"
        self.head_align_corners = style == "project"
        self.path4 = FusionBlock(channels=channels, skip_relu=skip_relu)
        self.path3 = FusionBlock(channels=channels, skip_relu=skip_relu)
        self.path2 = FusionBlock(channels=channels, skip_relu=skip_relu)
        self.path1 = FusionBlock(channels=channels, skip_relu=skip_relu)
        self.head_in = nn.Conv2d(channels, h1, kernel_size=3, padding=1)
        self.head_mid = nn.Conv2d(h1, h2, kernel_size=3, padding=1)
        self.head_out = nn.Conv2d(h2, int(out_channels), kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        """Decode.

        Args:
            features: four ``B x channels x h_i x w_i`` maps, finest first (strides 4 ... 32).
            out_size: ``(H, W)`` of the input image.

        Returns:
            ``B x out_channels x H x W`` mask (or class) logits.
        """
        f1, f2, f3, f4 = features
        x = self.path4(f4, None, tuple(f3.shape[-2:]))
        x = self.path3(x, f3, tuple(f2.shape[-2:]))
        x = self.path2(x, f2, tuple(f1.shape[-2:]))
        x = self.path1(x, f1, (f1.shape[-2] * 2, f1.shape[-1] * 2))
        x = _resize(self.head_in(x), out_size, self.head_align_corners)
        return self.head_out(F.relu(self.head_mid(x)))
