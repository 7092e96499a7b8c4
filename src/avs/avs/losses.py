"""Training objective of AVSBench-Robust (Eq. 5, 6, 8, 9).

``L = lambda1 * L_BCE + L_Seg + lambda2 * L_AVM``

* ``L_Seg``: binary cross-entropy between the predicted mask and the ground
  truth (empty for negative pairs, which is what suppresses their masks).
* ``L_AVM``: for every TPAVI stage, KL divergence between the audio A_i and the
  mask-weighted average of the fused features, ``avg(M_pred * Z_i)``, as the
  AVSBench code computes it (``kl_flag``): mask logits average-pooled to the
  stage size then sigmoid; both vectors L2-normalised, then softmax over
  channels; ``F.kl_div(log softmax(v), softmax(a))``, i.e. ``KL(A || V)``.
* ``L_BCE``: BCE on ``sigmoid(s)`` with label 1 for positive and 0 for negative
  pairs, computed from the logit (numerically stable, same value).

Choices (left open by the paper):

* ``avm_reduction="sum"`` (default) sums over the batch and averages over
  stages like the AVSBench code, which is what its lambda (0.5) was tuned with;
  ``"batchmean"`` divides by the batch size instead.
* With ``pair_labels`` given, L_AVM uses the positive pairs only: matching
  masked visual features to the audio is meaningless when the audio does not
  belong to the frame (their masks should be empty).
* Default weights: ``lambda_avm = 0.5`` (AVSBench MS3 ``--lambda_1 0.5``),
  ``lambda_bce = 1.0`` (the paper gives no value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import InputError


@dataclass
class LossTerms:
    """The total and its parts (each a scalar tensor)."""

    total: torch.Tensor
    seg: torch.Tensor
    avm: torch.Tensor
    bce: torch.Tensor


def segmentation_loss(mask_logits: torch.Tensor, gt_masks: torch.Tensor) -> torch.Tensor:
    """L_Seg: mean BCE between ``B x 1 x H x W`` logits and ``B x 1 x H x W`` (or ``B x H x W``) targets in [0, 1]."""
    if gt_masks.ndim == 3:
        gt_masks = gt_masks.unsqueeze(1)
    if gt_masks.shape != mask_logits.shape:
        raise InputError(
            f"ground-truth masks {tuple(gt_masks.shape)} do not match mask logits {tuple(mask_logits.shape)}"
        )
    return F.binary_cross_entropy_with_logits(mask_logits, gt_masks.to(mask_logits.dtype))


def gate_bce_loss(gate_logit: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
    """L_BCE (Eq. 8): mean BCE of ``sigmoid(gate_logit)`` against labels (1 positive, 0 negative), shape ``B``."""
    if gate_logit.shape != pair_labels.shape:
        raise InputError(f"pair labels {tuple(pair_labels.shape)} do not match gate logits {tuple(gate_logit.shape)}")
    return F.binary_cross_entropy_with_logits(gate_logit, pair_labels.to(gate_logit.dtype))


def avm_loss(
    mask_logits: torch.Tensor,
    fused: Sequence[torch.Tensor],
    audio_aligned: Sequence[torch.Tensor | None],
    *,
    select: torch.Tensor | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """L_AVM (Eq. 6) over the stages that have aligned audio.

    Args:
        mask_logits: ``B x 1 x H x W``.
        fused: per stage ``B x C x h_i x w_i`` Z_i.
        audio_aligned: per stage ``B x C`` A_i or None (no TPAVI there).
        select: optional ``B`` bool, the pairs to use (e.g. positives only).
        reduction: ``"sum"`` over the batch (AVSBench code) or ``"batchmean"``.
    """
    if reduction not in ("sum", "batchmean"):
        raise InputError(f"reduction must be 'sum' or 'batchmean', got {reduction!r}")
    terms = []
    for z, a in zip(fused, audio_aligned, strict=True):
        if a is None:
            continue
        if select is not None:
            z, a, m = z[select], a[select], mask_logits[select]
        else:
            m = mask_logits
        if z.shape[0] == 0:
            terms.append(z.sum() * 0.0)
            continue
        weights = torch.sigmoid(F.adaptive_avg_pool2d(m, z.shape[-2:]))
        v = F.normalize((z * weights).mean(dim=(2, 3)), dim=-1)
        a = F.normalize(a, dim=-1)
        kl = F.kl_div(v.softmax(dim=-1).log(), a.softmax(dim=-1), reduction="sum")
        terms.append(kl / z.shape[0] if reduction == "batchmean" else kl)
    if not terms:
        return mask_logits.sum() * 0.0
    return torch.stack(terms).mean()


def total_loss(
    output,
    gt_masks: torch.Tensor,
    pair_labels: torch.Tensor | None = None,
    *,
    lambda_bce: float = 1.0,
    lambda_avm: float = 0.5,
    avm_reduction: str = "sum",
) -> LossTerms:
    """Eq. 9 from an :class:`avs.model.AVSOutput`.

    Args:
        output: the model's output for the batch.
        gt_masks: ``B x 1 x H x W`` targets (all zero for negative pairs).
        pair_labels: ``B`` 1 for positive, 0 for negative pairs. Needed for the gate
            term; without it (or with the gate off) L_BCE is 0 and the loss is the
            baseline's ``L_Seg + lambda2 * L_AVM``.
        lambda_bce, lambda_avm: the balancing weights lambda1, lambda2.
        avm_reduction: see :func:`avm_loss`.
    """
    seg = segmentation_loss(output.mask_logits, gt_masks)
    select = None
    if pair_labels is not None:
        if pair_labels.ndim != 1 or pair_labels.shape[0] != output.mask_logits.shape[0]:
            raise InputError(
                f"pair_labels must have shape ({output.mask_logits.shape[0]},), got {tuple(pair_labels.shape)}"
            )
        select = pair_labels > 0.5
    avm = avm_loss(output.mask_logits, output.fused, output.audio_aligned, select=select, reduction=avm_reduction)
    if output.gate_logit is not None and pair_labels is not None:
        bce = gate_bce_loss(output.gate_logit, pair_labels.float())
    else:
        bce = seg.new_zeros(())
    return LossTerms(total=lambda_bce * bce + seg + lambda_avm * avm, seg=seg, avm=avm, bce=bce)
