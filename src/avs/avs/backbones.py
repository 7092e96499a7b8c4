"""Visual backbones giving four feature stages (strides 4, 8, 16, 32).

* ``resnet50``: torchvision's ResNet-50; parameter names are torchvision's
  (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so the official
  ``resnet50-*.pth`` loads as it is. ``resnet_tiny`` is the same network with
  made-up small widths (the AVSBench importer's test fixtures).
* ``pvt_v2_*``: timm's PyramidVisionTransformerV2; loads timm's checkpoint
  format (``patch_embed.*``, ``stages.N.*``) and the official PVT-v2 format
  (``patch_embed1.*``, ``block1.N.*``, ``norm1``, as in ``pvt_v2_b5.pth`` that
  AVSBench uses), converted with timm's own ``checkpoint_filter_fn``.

Choice: the ImageNet classifier (``fc.*`` / ``head.*``) is not part of the
backbone; its keys are dropped on load (it is never used), every other key must
match exactly. BatchNorm ``num_batches_tracked`` counters, absent from older
torchvision files, are filled with zeros.

Sizes are data (:data:`BACKBONES`); ``pvt_v2_b0`` is the embedded model's
backbone and ``pvt_v2_tiny`` (made-up small widths) is for tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from perception_common.checkpoint import load_pth_state_dict, load_strict

from .errors import ConfigError

BACKBONES: dict[str, dict] = {
    "resnet50": {"kind": "resnet", "layers": (3, 4, 6, 3)},
    "resnet_tiny": {"kind": "resnet", "layers": (1, 1, 1, 1), "planes": (4, 8, 16, 32)},
    "pvt_v2_b5": {
        "kind": "pvt_v2",
        "depths": (3, 6, 40, 3),
        "embed_dims": (64, 128, 320, 512),
        "num_heads": (1, 2, 5, 8),
        "mlp_ratios": (4, 4, 4, 4),
        "sr_ratios": (8, 4, 2, 1),
    },
    "pvt_v2_b0": {
        "kind": "pvt_v2",
        "depths": (2, 2, 2, 2),
        "embed_dims": (32, 64, 160, 256),
        "num_heads": (1, 2, 5, 8),
        "mlp_ratios": (8, 8, 4, 4),
        "sr_ratios": (8, 4, 2, 1),
    },
    "pvt_v2_tiny": {
        "kind": "pvt_v2",
        "depths": (1, 1, 1, 1),
        "embed_dims": (8, 16, 24, 32),
        "num_heads": (1, 1, 1, 2),
        "mlp_ratios": (2, 2, 2, 2),
        "sr_ratios": (8, 4, 2, 1),
    },
}

_CLASSIFIER_PREFIXES = ("fc.", "head.")


class ResNetBackbone(nn.Module):
    """torchvision ResNet (Bottleneck) without its classifier: ``B x 3 x H x W`` -> 4 stages.

    Args:
        layers: blocks per stage (ResNet-50: 3, 4, 6, 3).
        planes: bottleneck widths per stage (ResNet-50: 64, 128, 256, 512; the stem has ``planes[0]`` channels).

    Output channels: ``4 * planes`` (ResNet-50: 256, 512, 1024, 2048) at strides 4, 8, 16, 32.
    """

    def __init__(self, *, layers=(3, 4, 6, 3), planes=(64, 128, 256, 512)):
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet

        net = ResNet(Bottleneck, list(layers))
        if tuple(planes) != (64, 128, 256, 512):  # torchvision fixes the widths: rebuild its stages narrower
            net.inplanes = planes[0]
            net.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
            net.bn1 = nn.BatchNorm2d(planes[0])
            net.layer1 = net._make_layer(Bottleneck, planes[0], layers[0])
            net.layer2 = net._make_layer(Bottleneck, planes[1], layers[1], stride=2)
            net.layer3 = net._make_layer(Bottleneck, planes[2], layers[2], stride=2)
            net.layer4 = net._make_layer(Bottleneck, planes[3], layers[3], stride=2)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.channels = tuple(Bottleneck.expansion * int(p) for p in planes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``B x 3 x H x W`` normalised image -> ``[B x C_i x H/2^(i+1) x W/2^(i+1)]`` for i = 1..4."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1, f2, f3, f4]


class _TokenDepthwiseConv(nn.Conv2d):
    """A PVT-v2 MLP's depthwise 3x3 convolution (timm's ``nn.Conv2d``, same parameters and names), fed its tokens
    channels-last.

    timm hands it ``B x N x C`` tokens as a ``B x C x H x W`` view; for one frame that view's batch stride is not
    channels-last's own (a size-1 dimension's stride is free), so PyTorch took the input for channels-first, copied
    it and ran oneDNN's channels-first depthwise kernel: 1.1 ms at stride 4 against 0.28 ms channels-last (one CPU
    thread, measured). The same memory is viewed with channels-last strides (no copy); the output stays
    channels-last, so timm's ``flatten(2).transpose(1, 2)`` back to tokens is free as well.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if x.permute(0, 2, 3, 1).is_contiguous():  # dense channels-last memory
            x = x.as_strided((b, c, h, w), (h * w * c, 1, w * c, c))
        return super().forward(x)


class PVTv2Backbone(nn.Module):
    """timm PyramidVisionTransformerV2 without its classifier: ``B x 3 x H x W`` -> 4 stages.

    Args:
        depths, embed_dims, num_heads, mlp_ratios, sr_ratios: per-stage sizes (see :data:`BACKBONES`).
        drop_path_rate: stochastic depth for training (0 at inference).

    Output channels are ``embed_dims`` at strides 4, 8, 16, 32. Parameter names are
    timm's, under ``model.`` in this module.
    """

    def __init__(self, *, depths, embed_dims, num_heads, mlp_ratios, sr_ratios, drop_path_rate: float = 0.0):
        super().__init__()
        from timm.models.pvt_v2 import PyramidVisionTransformerV2

        self.model = PyramidVisionTransformerV2(
            depths=tuple(depths),
            embed_dims=tuple(embed_dims),
            num_heads=tuple(num_heads),
            mlp_ratios=tuple(mlp_ratios),
            sr_ratios=tuple(sr_ratios),
            num_classes=0,
            drop_path_rate=drop_path_rate,
        )
        self.channels = tuple(int(c) for c in embed_dims)
        for module in self.model.modules():  # the MLPs' depthwise convolutions: see _TokenDepthwiseConv
            if type(module) is nn.Conv2d and module.groups > 1 and module.groups == module.in_channels:
                module.__class__ = _TokenDepthwiseConv

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``B x 3 x H x W`` normalised image -> ``[B x C_i x H/2^(i+1) x W/2^(i+1)]`` for i = 1..4."""
        return list(self.model.forward_intermediates(x, intermediates_only=True))


def build_backbone(name: str) -> ResNetBackbone | PVTv2Backbone:
    """Build a registered backbone (randomly initialised)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    spec = dict(BACKBONES[name])
    kind = spec.pop("kind")
    if kind == "resnet":
        return ResNetBackbone(**spec)
    return PVTv2Backbone(**spec)


def load_backbone_state_dict(
    backbone: nn.Module, state: Mapping[str, torch.Tensor] | str | Path, *, source: str = ""
) -> None:
    """Load an official backbone checkpoint (file or dict) strictly, except for the dropped classifier.

    ResNet: torchvision's format. PVT-v2: timm's or the official PVT-v2 format.
    """
    if isinstance(state, (str, Path)):
        source = source or str(state)
        state = load_pth_state_dict(state)
    source = source or f"{type(backbone).__name__} state dict"
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    if isinstance(backbone, PVTv2Backbone):
        from timm.models.pvt_v2 import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, backbone.model)
        state = {f"model.{k}": v for k, v in state.items()}
    own = backbone.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    load_strict(backbone, state, source)
