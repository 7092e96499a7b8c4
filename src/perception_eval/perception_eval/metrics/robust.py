"""AVSBench-Robust metrics: FPR (eq. 1), G-mIoU (eq. 2), G-F (eq. 3), G-FPR (eq. 4) of the paper
(/work/shared/papers/avsbench-robust.txt, "Evaluation Protocols"), per negative condition and overall.

Samples and conditions
    A sample is one clip (one video, T frames) with one audio condition: ``positive`` (original audio),
    the negatives ``silence``, ``noise``, ``offscreen``, and ``mixed`` (noise added to the true audio -- a
    positive, the paper's Table 4 control, reported on its own and not folded into P).

FPR of a negative sample (eq. 1)
    ``FPR = sum_x m(x) / (H * W)`` with ``m(x) = 1`` where the prediction is positive (``sigmoid > 0.5``,
    i.e. ``prob > 0.5``). The equation is per image; a clip's FPR is the mean over its frames, as the
    released ``calculate_FPR`` does per batch (its ``eps = 1e-7`` in the denominator is left out here:
    eq. (1) has none).

mIoU_P, F_P
    The AVSBench mIoU and F-score (:mod:`perception_eval.metrics.avs`, same clip-as-batch protocol) of the
    positive samples against their ground truth.

mIoU_N, F_N -- what they mean for negative samples
    The expected output for a negative sample is an empty mask everywhere. mIoU_N and F_N are NOT scores
    against that empty mask: they are the AVSBench mIoU / F-score of the prediction made under negative audio
    measured against the clip's ORIGINAL ground truth (the visible object that is not sounding now). That is
    what the released evaluation does (its silence / noise / off-screen test sets load the original
    ``gt_masks`` of each video) and what Table 1 shows: they are marked lower-is-better, a model that ignores
    audio has mIoU_N close to mIoU_P (TPAVI: 78.7 vs 78.22), and the robust model has mIoU_N near 0.
    Scoring against the empty mask instead would give, by the AVSBench empty-ground-truth rule,
    ``mIoU_N = 1 - FPR`` (higher is better), and ``1 - mIoU_N`` in eqs. (2)-(3) would then reward false
    positives. So every negative sample must carry its original ground truth ("reference" masks).

Global metrics
    * ``G-mIoU = 2 mIoU_P (1 - mIoU_N) / (mIoU_P + (1 - mIoU_N))`` (eq. 2)
    * ``G-F = 2 F_P (1 - F_N) / (F_P + (1 - F_N))`` (eq. 3)
    * ``G-FPR = (1 / |N|) sum_{i in N} FPR_i`` (eq. 4)
    * When the denominator of eq. (2)/(3) is 0 (``mIoU_P = 0`` and ``mIoU_N = 1``) the value is 0.
    Per condition ``c``: N = the samples of condition c (P is always all positive samples). Overall: N = all
    negative samples of every condition pooled (mIoU_N, F_N and G-FPR over that pool).

    Note: the paper's G figures were aggregated by hand ("using Excel", says the code's README) and Table 1's
    G columns are not exactly reproducible from its own mIoU/F columns (e.g. TPAVI S4: eq. (2) on 78.7 / 78.22
    gives 34.1, the table says 35.032); this module implements the equations literally.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .avs import avs_fscore, avs_miou, sigmoid

__all__ = [
    "NEGATIVE_CONDITIONS",
    "POSITIVE_CONDITIONS",
    "RobustClip",
    "RobustReport",
    "clip_false_positive_rate",
    "evaluate_robust",
    "false_positive_rate",
    "global_score",
    "normalize_condition",
]

NEGATIVE_CONDITIONS = ("silence", "noise", "offscreen")
POSITIVE_CONDITIONS = ("positive", "mixed")


def normalize_condition(condition: str) -> str:
    """Lower-case name without ``-``/``_``/spaces (``Off-screen`` -> ``offscreen``); refuses unknown ones."""
    name = str(condition).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if name not in NEGATIVE_CONDITIONS + POSITIVE_CONDITIONS:
        raise ValueError(
            f"unknown audio condition {condition!r}; expected one of {POSITIVE_CONDITIONS + NEGATIVE_CONDITIONS}"
        )
    return name


def false_positive_rate(pred, *, logits: bool = False) -> float:
    """Eq. (1) for one frame: fraction of pixels predicted positive (``prob > 0.5``)."""
    array = np.asarray(pred)
    if array.ndim != 2:
        raise ValueError(f"pred must be H x W, got shape {array.shape}")
    prob = sigmoid(array) if logits else array.astype(np.float32)
    return np.count_nonzero(prob > 0.5) / prob.size


def clip_false_positive_rate(pred_clip, *, logits: bool = False) -> float:
    """FPR of one negative sample: mean of eq. (1) over the clip's frames."""
    clip = np.asarray(pred_clip)
    clip = clip[None] if clip.ndim == 2 else clip
    if clip.ndim != 3:
        raise ValueError(f"pred_clip must be T x H x W, got shape {clip.shape}")
    return float(np.mean([false_positive_rate(frame, logits=logits) for frame in clip]))


def global_score(positive_score: float, negative_score: float) -> float:
    """Eqs. (2)/(3): ``2 p (1 - n) / (p + (1 - n))``, 0 when the denominator is 0."""
    complement = 1.0 - negative_score
    denominator = positive_score + complement
    if denominator == 0:
        return 0.0
    return 2.0 * positive_score * complement / denominator


@dataclass(frozen=True)
class RobustClip:
    """One scored sample.

    ``pred``: T x H x W probabilities (or logits, see ``evaluate_robust``) predicted under ``condition``.
    ``gt``: the clip's ORIGINAL ground truth (T x H x W) -- for a negative sample this is the reference used by
    mIoU_N / F_N, not the expected (empty) output.
    """

    condition: str
    pred: np.ndarray
    gt: np.ndarray
    name: str = ""


@dataclass(frozen=True)
class RobustReport:
    """Figures as fractions in [0, 1] (the paper prints mIoU/F/FPR columns in percent).

    ``positive``: ``{"mIoU": mIoU_P, "F": F_P, "count": n}``.
    ``per_condition[c]`` for each negative condition present: ``{"mIoU_N", "F_N", "FPR" (mean FPR of its
    samples), "G-mIoU", "G-F", "G-FPR", "count"}``; ``overall`` the same over all negatives pooled.
    ``mixed``: ``{"mIoU", "F", "count"}`` when mixed samples were given, else ``None``.
    """

    positive: dict[str, float]
    per_condition: dict[str, dict[str, float]] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)
    mixed: dict[str, float] | None = None


def _negative_block(
    clips: Sequence[RobustClip], positive: dict[str, float], logits: bool, f_mode: str
) -> dict[str, float]:
    preds = [c.pred for c in clips]
    refs = [c.gt for c in clips]
    miou_n = avs_miou(preds, refs, logits=logits)
    f_n = avs_fscore(preds, refs, logits=logits, mode=f_mode)
    fpr = float(np.mean([clip_false_positive_rate(p, logits=logits) for p in preds]))
    return {
        "mIoU_N": miou_n,
        "F_N": f_n,
        "FPR": fpr,
        "G-mIoU": global_score(positive["mIoU"], miou_n),
        "G-F": global_score(positive["F"], f_n),
        "G-FPR": fpr,
        "count": float(len(clips)),
    }


def evaluate_robust(clips: Iterable[RobustClip], *, logits: bool = False, f_mode: str = "per_clip") -> RobustReport:
    """Score samples of all conditions: mIoU_P/F_P, per-condition and overall negatives, G-metrics.

    Needs at least one positive sample (P) for the G-metrics; raises ``ValueError`` otherwise or when a
    negative sample's reference ground truth is empty in every frame (then mIoU_N would silently become
    ``1 - FPR``; see module docstring). ``f_mode`` is passed to :func:`avs_fscore`.
    """
    groups: dict[str, list[RobustClip]] = {}
    for clip in clips:
        groups.setdefault(normalize_condition(clip.condition), []).append(clip)
    positives = groups.get("positive", [])
    if not positives:
        raise ValueError("no positive samples: mIoU_P and F_P (and every G-metric) need them")
    positive = {
        "mIoU": avs_miou([c.pred for c in positives], [c.gt for c in positives], logits=logits),
        "F": avs_fscore([c.pred for c in positives], [c.gt for c in positives], logits=logits, mode=f_mode),
        "count": float(len(positives)),
    }
    negatives_all: list[RobustClip] = []
    per_condition = {}
    for condition in NEGATIVE_CONDITIONS:
        group = groups.get(condition, [])
        if not group:
            continue
        for clip in group:
            if not np.any(np.asarray(clip.gt)):
                raise ValueError(
                    f"negative sample {clip.name!r} ({condition}) has an all-empty reference ground truth; "
                    "mIoU_N / F_N are measured against the clip's original (positive) ground truth"
                )
        per_condition[condition] = _negative_block(group, positive, logits, f_mode)
        negatives_all.extend(group)
    overall = _negative_block(negatives_all, positive, logits, f_mode) if negatives_all else {}
    mixed = None
    if groups.get("mixed"):
        group = groups["mixed"]
        mixed = {
            "mIoU": avs_miou([c.pred for c in group], [c.gt for c in group], logits=logits),
            "F": avs_fscore([c.pred for c in group], [c.gt for c in group], logits=logits, mode=f_mode),
            "count": float(len(group)),
        }
    return RobustReport(positive=positive, per_condition=per_condition, overall=overall, mixed=mixed)


