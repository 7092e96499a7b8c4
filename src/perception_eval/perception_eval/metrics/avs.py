"""AVSBench mIoU and F-score (beta^2 = 0.3), as the AVSBench (TPAVI) test scripts compute them.

Source of each rule: ``avs_scripts/avs_s4/utils/utility.py`` (``mask_iou``, ``_eval_pr``, ``Eval_Fmeasure``)
and ``avs_scripts/avs_s4/test.py`` of OpenNLPLab/AVSBench.

Inputs
    A *clip* is one video's frames: a ``T x H x W`` array (AVSBench: T = 5) or a single ``H x W`` frame.
    Predictions are probability maps in [0, 1] (the sigmoid of the network output) or, with
    ``logits=True``, raw outputs to which the sigmoid is applied (in float32). Boolean predictions are taken
    as probabilities 0/1. Ground truths are binary (non-zero = sounding object).

The protocol's batches
    The reference test script runs with ``test_batch_size = 1``: one batch = one clip of 5 frames. Each
    metric is computed per batch and the per-batch values are averaged (``AverageMeter``). Here a clip plays
    the part of a batch, so passing clips reproduces the published protocol.

mIoU (per frame, then means)
    * Prediction = ``sigmoid > 0.5`` (``prob > 0.5``).
    * Ground truth not empty: ``IoU = |P ∩ G| / (|P ∪ G| + eps)``.
    * Ground truth EMPTY: ``IoU = |not P and not G| / (H * W + eps)`` = the fraction of pixels correctly
      left as background = ``1 - predicted foreground fraction``. So an empty prediction on an empty ground
      truth scores 1 and a full prediction 0.
    * ``eps = 1e-7`` as in the reference (it only moves the value by ~1e-7 / pixels).
    * Clip value = mean over its frames; result = mean over clips (equal to the mean over all frames when
      every clip has the same number of frames).

F-score (per clip, then mean over clips)
    * 255 thresholds ``linspace(0, 1 - 1e-10, 255)`` in float32 (as ``torch.linspace``: the last one rounds
      to 1.0); a pixel is positive at threshold ``t`` when ``prob >= t`` (so threshold 0 marks every pixel).
    * Per frame and threshold: ``precision = TP / (#positive + 1e-20)``, ``recall = TP / (#GT + 1e-20)``,
      ``F = (1 + beta^2) P R / (beta^2 P + R)`` with ``beta^2 = 0.3``; NaN (P = R = 0) becomes 0.
    * Frames whose ground truth is EMPTY are skipped ("examples with totally black GTs are out of
      consideration").
    * The F curves of the clip's remaining frames are averaged, and the clip's F-score is the MAXIMUM of that
      averaged curve over the thresholds. A clip whose ground truths are all empty scores **0** (the reference's
      ``score`` stays a zero vector) and still counts in the mean over clips.
    * Result = mean over clips.

    Batch dependence (documented, reproduced by default): because the maximum is taken per batch and
    all-empty batches count as 0, the figure changes with how frames are grouped into batches. The
    batch-independent alternative ``mode="pooled"`` averages the F curves of *all* non-empty-ground-truth frames
    of all clips and takes one maximum (0 if there is none); it is offered for analysis, not as the default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "AVS_BETA2",
    "AVS_NUM_THRESHOLDS",
    "avs_f_curve",
    "avs_frame_iou",
    "avs_fscore",
    "avs_miou",
    "avs_thresholds",
    "clip_fscore",
    "clip_miou",
    "sigmoid",
]

AVS_BETA2 = 0.3
AVS_NUM_THRESHOLDS = 255
AVS_IOU_EPS = 1e-7


def sigmoid(logits) -> np.ndarray:
    """Logistic function in float32 (as ``torch.sigmoid`` on float32 outputs)."""
    x = np.asarray(logits, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(-x, dtype=np.float32))).astype(np.float32)


def avs_thresholds(num: int = AVS_NUM_THRESHOLDS) -> np.ndarray:
    """The protocol's thresholds: ``linspace(0, 1 - 1e-10, num)`` in float32."""
    return np.linspace(0.0, 1.0 - 1e-10, num).astype(np.float32)


def _probabilities(pred, logits: bool) -> np.ndarray:
    array = np.asarray(pred)
    if logits:
        return sigmoid(array)
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32, copy=False)


def _clip(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise ValueError(f"{name} must be T x H x W or H x W, got shape {array.shape}")
    return array


def avs_frame_iou(pred, gt, *, logits: bool = False, eps: float = AVS_IOU_EPS) -> float:
    """IoU of one frame by the AVSBench rule (empty ground truth -> fraction of true background)."""
    prob = _probabilities(pred, logits)
    gt = np.asarray(gt) != 0
    if prob.shape != gt.shape or prob.ndim != 2:
        raise ValueError(f"pred {prob.shape} and gt {gt.shape} must be equal H x W")
    positive = prob > 0.5
    if not gt.any():
        return np.count_nonzero(~positive & ~gt) / (gt.size + eps)
    return np.count_nonzero(positive & gt) / (np.count_nonzero(positive | gt) + eps)


def clip_miou(pred_clip, gt_clip, *, logits: bool = False, eps: float = AVS_IOU_EPS) -> float:
    """Mean frame IoU of one clip (one batch of the reference test loop)."""
    preds = _clip(pred_clip, "pred_clip")
    gts = _clip(gt_clip, "gt_clip")
    if preds.shape != gts.shape:
        raise ValueError(f"pred clip {preds.shape} and gt clip {gts.shape} differ")
    return float(np.mean([avs_frame_iou(p, g, logits=logits, eps=eps) for p, g in zip(preds, gts)]))


def avs_miou(pred_clips: Sequence, gt_clips: Sequence, *, logits: bool = False, eps: float = AVS_IOU_EPS) -> float:
    """mIoU: mean over clips of each clip's mean frame IoU (see module docstring)."""
    if len(pred_clips) != len(gt_clips):
        raise ValueError(f"{len(pred_clips)} predicted clips but {len(gt_clips)} ground-truth clips")
    if not len(gt_clips):
        raise ValueError("no clips to score")
    return float(np.mean([clip_miou(p, g, logits=logits, eps=eps) for p, g in zip(pred_clips, gt_clips)]))


def avs_f_curve(
    pred, gt, *, logits: bool = False, beta2: float = AVS_BETA2, num_thresholds: int = AVS_NUM_THRESHOLDS
) -> np.ndarray:
    """F at each of the protocol's thresholds for one frame (``num_thresholds`` values).

    For an empty ground truth the curve is all zeros (recall is 0); callers following the protocol skip
    such frames instead of averaging this curve.
    """
    prob = _probabilities(pred, logits)
    gt = np.asarray(gt) != 0
    if prob.shape != gt.shape or prob.ndim != 2:
        raise ValueError(f"pred {prob.shape} and gt {gt.shape} must be equal H x W")
    thresholds = avs_thresholds(num_thresholds)
    all_sorted = np.sort(prob.reshape(-1))
    fg_sorted = np.sort(prob[gt])
    # number of pixels with prob >= t == size - (number with prob < t)
    n_positive = all_sorted.size - np.searchsorted(all_sorted, thresholds, side="left")
    true_positive = fg_sorted.size - np.searchsorted(fg_sorted, thresholds, side="left")
    n_positive = n_positive.astype(np.float64)
    true_positive = true_positive.astype(np.float64)
    precision = true_positive / (n_positive + 1e-20)
    recall = true_positive / (fg_sorted.size + 1e-20)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (1.0 + beta2) * precision * recall / (beta2 * precision + recall)
    f[np.isnan(f)] = 0.0
    return f


def clip_fscore(
    pred_clip, gt_clip, *, logits: bool = False, beta2: float = AVS_BETA2, num_thresholds: int = AVS_NUM_THRESHOLDS
) -> float:
    """F-score of one clip (one batch): max over thresholds of the mean F curve of its non-empty-GT frames.

    0.0 when every ground truth of the clip is empty (the protocol's behaviour).
    """
    preds = _clip(pred_clip, "pred_clip")
    gts = _clip(gt_clip, "gt_clip")
    if preds.shape != gts.shape:
        raise ValueError(f"pred clip {preds.shape} and gt clip {gts.shape} differ")
    curves = [
        avs_f_curve(p, g, logits=logits, beta2=beta2, num_thresholds=num_thresholds)
        for p, g in zip(preds, gts)
        if np.any(g)
    ]
    if not curves:
        return 0.0
    return float(np.mean(curves, axis=0).max())


def avs_fscore(
    pred_clips: Sequence,
    gt_clips: Sequence,
    *,
    logits: bool = False,
    beta2: float = AVS_BETA2,
    num_thresholds: int = AVS_NUM_THRESHOLDS,
    mode: str = "per_clip",
) -> float:
    """F-score over clips.

    ``mode="per_clip"`` (default, the protocol): mean over clips of :func:`clip_fscore`.
    ``mode="pooled"`` (batch-independent): max over thresholds of the mean F curve of every non-empty-GT
    frame of every clip; 0.0 when there is none.
    """
    if len(pred_clips) != len(gt_clips):
        raise ValueError(f"{len(pred_clips)} predicted clips but {len(gt_clips)} ground-truth clips")
    if not len(gt_clips):
        raise ValueError("no clips to score")
    kwargs = {"logits": logits, "beta2": beta2, "num_thresholds": num_thresholds}
    if mode == "per_clip":
        return float(np.mean([clip_fscore(p, g, **kwargs) for p, g in zip(pred_clips, gt_clips)]))
    if mode == "pooled":
        curves = []
        for pred_clip, gt_clip in zip(pred_clips, gt_clips):
            preds, gts = _clip(pred_clip, "pred_clip"), _clip(gt_clip, "gt_clip")
            if preds.shape != gts.shape:
                raise ValueError(f"pred clip {preds.shape} and gt clip {gts.shape} differ")
            curves.extend(avs_f_curve(p, g, **kwargs) for p, g in zip(preds, gts) if np.any(g))
        return float(np.mean(curves, axis=0).max()) if curves else 0.0
    raise ValueError(f"mode must be 'per_clip' or 'pooled', got {mode!r}")
