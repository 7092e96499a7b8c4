"""Classifier-guided similarity gate (AVSBench-Robust, Eq. 7-8).

``F_A`` (the 128-d audio embedding) goes through a linear layer to ``C_4``
dimensions; the last backbone stage ``F_4`` is average-pooled over space (as in
the released AVSBench-Robust code); ``s = cos(F_A_hat, F_V_hat)``; the score is
``sigmoid(s)`` and is trained with BCE (label 1 for positive, 0 for negative pairs).

Two selectable modes:

* ``"cosine"``: the paper. ``s`` is bounded in [-1, 1], so ``sigmoid(s)`` lives
  in [0.269, 0.731]: BCE can never reach 0 and keeps pushing ``s`` to +-1, and a
  threshold of 0.5 means ``s > 0``.
* ``"scaled_cosine"``: a documented DEVIATION from the paper. The logit is
  ``exp(log_scale) * s + bias`` with a learnable scale (initialised to
  ``init_scale``) and bias (initialised to 0), as in CLIP, so the score can
  reach 0 and 1 and the threshold is meaningful as a probability. ``s``
  itself is unchanged, so both modes report the same similarity.

``visual_proj=True`` (a second DEVIATION, off by default) also passes the pooled
``F_4`` through a linear layer with bias, as CLIP projects both modalities. The
paper's gate relies on pretrained post-ReLU features sharing a common direction;
the embedded model's backbone is trained from scratch and ends in a LayerNorm,
so its pooled features have no such direction, and a cosine against them cannot
score silence low for every image (measured: the gate stayed at chance). The
projection's bias supplies that direction.

``audio_term=True`` (a third DEVIATION, off by default) adds a linear function of
the audio embedding alone to the logit: silence and noise can be rejected from
the audio alone, which the cosine learns slowly from scratch (measured on the
generated world: an audio-only head separated silence/noise in 60 steps, the
cosine had not after 100); the cosine then decides on-screen vs off-screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, InputError

GATE_MODES = ("cosine", "scaled_cosine", "off")


@dataclass
class GateOutput:
    """Per-pair gate values, each of shape ``B``.

    Attributes:
        similarity: ``s = cos(F_A_hat, F_V_hat)`` in [-1, 1].
        logit: the value fed to the sigmoid (``s``, or ``scale * s + bias``).
        score: ``sigmoid(logit)``.
    """

    similarity: torch.Tensor
    logit: torch.Tensor
    score: torch.Tensor


class SimilarityGate(nn.Module):
    """Audio-visual correspondence score.

    Args:
        audio_dim: ``D_a``, size of the audio embedding (VGGish: 128).
        visual_dim: ``C_4``, channels of the last backbone stage.
        mode: ``"cosine"`` (paper) or ``"scaled_cosine"`` (deviation, see module docstring).
        init_scale: initial scale of ``"scaled_cosine"`` (ignored by ``"cosine"``).
        visual_proj: project the pooled visual features too (``visual_proj.*`` keys; see the module docstring).
        audio_term: add an audio-only linear term to the logit (``audio_term.*`` keys; see the module docstring).
    """

    def __init__(
        self,
        *,
        audio_dim: int = 128,
        visual_dim: int,
        mode: str = "cosine",
        init_scale: float = 10.0,
        visual_proj: bool = False,
        audio_term: bool = False,
    ):
        super().__init__()
        if mode not in ("cosine", "scaled_cosine"):
            raise ConfigError(f"gate mode must be 'cosine' or 'scaled_cosine' here, got {mode!r}")
        if init_scale <= 0:
            raise ConfigError(f"gate init_scale must be positive, got {init_scale}")
        self.mode = mode
        self.visual_dim = visual_dim
        self.audio_proj = nn.Linear(audio_dim, visual_dim)
        self.visual_proj = nn.Linear(visual_dim, visual_dim) if visual_proj else None
        self.audio_term = nn.Linear(audio_dim, 1) if audio_term else None
        if mode == "scaled_cosine":
            self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
            self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, audio_embedding: torch.Tensor, visual_f4: torch.Tensor) -> GateOutput:
        """Score pairs.

        Args:
            audio_embedding: ``B x D_a`` audio features F_A.
            visual_f4: ``B x C_4 x h_4 x w_4`` last-stage visual features F_4.
        """
        if visual_f4.ndim != 4 or visual_f4.shape[1] != self.visual_dim:
            raise InputError(f"gate visual input must be B x {self.visual_dim} x h x w, got {tuple(visual_f4.shape)}")
        if audio_embedding.ndim != 2 or audio_embedding.shape[0] != visual_f4.shape[0]:
            raise InputError(
                f"gate audio input must be B x D with B = {visual_f4.shape[0]}, got {tuple(audio_embedding.shape)}"
            )
        audio_hat = self.audio_proj(audio_embedding)
        visual_hat = visual_f4.mean(dim=(2, 3))
        if self.visual_proj is not None:
            visual_hat = self.visual_proj(visual_hat)
        similarity = F.cosine_similarity(audio_hat, visual_hat, dim=1, eps=1e-8)
        if self.mode == "scaled_cosine":
            logit = self.log_scale.exp() * similarity + self.bias
        else:
            logit = similarity
        if self.audio_term is not None:
            logit = logit + self.audio_term(audio_embedding)[:, 0]
        return GateOutput(similarity=similarity, logit=logit, score=torch.sigmoid(logit))
