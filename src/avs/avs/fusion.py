"""Cross-modal fusion: ASPP per stage and TPAVI audio-visual interaction (Zhou et al. 2022).

TPAVI, as the AVSBench-Robust paper writes it::

    Z_i = Softmax(theta(V_i) . phi(A)) . g(V_i) + mu(V_i)

with theta, phi, g, mu 1 x 1 x 1 convolutions over ``T x h x w``.

Choices (the paper leaves them open or the reference code differs):

* ``attention="dot"`` (default) is what the AVSBench code runs (``mode='dot'``):
  the affinities are divided by the number of positions ``N = T h w`` instead of
  a softmax. ``attention="softmax"`` is the paper's formula. Because the audio
  is the same at every spatial position, the softmax only spreads over the T
  audio segments; with ``T = 1`` (one frame per call, as on the robot) every
  weight is 1 and the audio has NO effect. Use "dot" unless clips are fed.
* The audio is broadcast over ``h x w`` as in the reference; we use the exact
  reduced form (``THW x T`` affinities against the per-segment spatial mean of
  g) instead of the ``THW x THW`` matrix: identical result, far less memory.
* As in the reference, ``g`` halves the channels and an output projection
  ``W_z`` (1 x 1 x 1 conv + BatchNorm initialised to zero) maps back, followed
  by a LayerNorm over channels. ``mu`` is a 1 x 1 x 1 conv initialised to the
  identity, so at initialisation the block equals the reference's residual.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError, InputError


class ASPP(nn.Module):
    """Atrous spatial pyramid of parallel dilated 3 x 3 convolutions, summed (AVSBench's ``Classifier_Module``).

    Args:
        in_channels: backbone stage channels ``C_i``.
        out_channels: common width of the fused features.
        dilations: one 3 x 3 conv per dilation (reference: 3, 6, 12, 18).

    ``B x C_i x h x w`` -> ``B x out_channels x h x w``.

    A branch whose dilation reaches past the map (``d >= h``: the taps above and below every row read the zero
    padding) is computed without those taps: with ``d >= h`` and ``d >= w`` only the centre tap is left, and all
    such branches are one 1 x 1 convolution with their centre weights summed. The same sums, less work (on the
    embedded model's 4 x 4 to 32 x 32 maps, 6 of its 16 dilated convolutions are 1 x 1).
    """

    def __init__(self, *, in_channels: int, out_channels: int, dilations: Sequence[int] = (3, 6, 12, 18)):
        super().__init__()
        if not dilations:
            raise ConfigError("ASPP needs at least one dilation")
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=d, dilation=d) for d in dilations
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = None
        centre_w = centre_b = None
        for conv in self.branches:
            dh, dw = conv.dilation
            rows = slice(1, 2) if dh >= h else slice(None)
            cols = slice(1, 2) if dw >= w else slice(None)
            if rows.start is not None and cols.start is not None:  # centre tap only: joins the 1 x 1 sum
                weight = conv.weight[:, :, 1:2, 1:2]
                centre_w = weight if centre_w is None else centre_w + weight
                centre_b = conv.bias if centre_b is None else centre_b + conv.bias
                continue
            if rows.start is None and cols.start is None:
                y = _dilated_conv(conv, x)
            else:  # one axis reaches past the map: a 1 x 3 or 3 x 1 convolution along the other
                y = F.conv2d(x, conv.weight[:, :, rows, cols], conv.bias,
                             padding=(0 if rows.start is not None else dh, 0 if cols.start is not None else dw),
                             dilation=conv.dilation)
            out = y if out is None else out + y
        if centre_w is not None:
            y = F.conv2d(x, centre_w, centre_b)
            out = y if out is None else out + y
        return out


def _dilated_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``; at inference on CPU through oneDNN even for small maps.

    PyTorch sends a batch-1 convolution of fewer than 20480 input values to its own dilated kernel, which is 2x
    slower here than oneDNN's (a 64-channel 16 x 16 map: 542 against 241 us, measured); the embedded model's ASPP
    maps at strides 16 and 32 are that small. The same convolution, computed by the other library.
    """
    if (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available() and conv.dilation != (1, 1)):
        return torch.mkldnn_convolution(x.contiguous(), conv.weight, conv.bias, conv.padding, conv.stride,
                                        conv.dilation, conv.groups)
    return conv(x)


class TPAVI(nn.Module):
    """Temporal pixel-wise audio-visual interaction.

    Args:
        channels: visual channels ``C`` (the ASPP width).
        audio_dim: audio embedding size (VGGish: 128).
        inter_channels: width inside the block (default ``C // 2``, as the reference).
        attention: ``"dot"`` (reference code) or ``"softmax"`` (paper formula); see the module docstring.
    """

    def __init__(self, *, channels: int, audio_dim: int = 128, inter_channels: int | None = None,
                 attention: str = "dot"):
        super().__init__()
        if attention not in ("dot", "softmax"):
            raise ConfigError(f"TPAVI attention must be 'dot' or 'softmax', got {attention!r}")
        self.attention = attention
        self.channels = channels
        self.inter_channels = inter_channels or max(1, channels // 2)
        ci = self.inter_channels
        self.align_channel = nn.Linear(audio_dim, channels)
        self.theta = nn.Conv3d(channels, ci, kernel_size=1)
        self.phi = nn.Conv3d(channels, ci, kernel_size=1)
        self.g = nn.Conv3d(channels, ci, kernel_size=1)
        self.W_z = nn.Sequential(nn.Conv3d(ci, channels, kernel_size=1), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.W_z[1].weight)
        nn.init.zeros_(self.W_z[1].bias)
        self.mu = nn.Conv3d(channels, channels, kernel_size=1)
        with torch.no_grad():
            self.mu.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1, 1))
            self.mu.bias.zero_()
        self.norm = nn.LayerNorm(channels)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse one stage.

        Args:
            visual: ``B x C x T x h x w`` stage features V_i.
            audio: ``B x T x audio_dim`` audio embeddings (one per frame).

        Returns:
            ``(Z, A)``: fused features ``B x C x T x h x w`` and the aligned audio
            ``B x T x C`` (A_i of L_AVM).
        """
        if visual.ndim != 5 or visual.shape[1] != self.channels:
            raise InputError(f"TPAVI visual input must be B x {self.channels} x T x h x w, got {tuple(visual.shape)}")
        b, _, t, h, w = visual.shape
        if audio.ndim != 3 or audio.shape[0] != b or audio.shape[1] != t:
            raise InputError(f"TPAVI audio must be B x T x D = {b} x {t} x D, got {tuple(audio.shape)}")
        aligned = self.align_channel(audio)  # B x T x C
        a = aligned.transpose(1, 2)[..., None, None]  # B x C x T x 1 x 1
        theta = self.theta(visual).flatten(2).transpose(1, 2)  # B x THW x C'
        phi = self.phi(a).flatten(2)  # B x C' x T
        affinity = theta @ phi  # B x THW x T
        g_mean = self.g(visual).mean(dim=(3, 4)).transpose(1, 2)  # B x T x C'
        if self.attention == "dot":
            weights = affinity / t  # == (affinity repeated over hw) / (T h w), summed over hw
        else:
            weights = affinity.softmax(dim=-1)
        y = (weights @ g_mean).transpose(1, 2).reshape(b, self.inter_channels, t, h, w)
        z = self.W_z(y) + self.mu(visual)
        z = self.norm(z.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        return z, aligned
