"""DAVIS-2017 region (J) and boundary (F) measures, their statistics, and J&F.

These are the TrackGPT paper's metrics (J, F, J&F, J-R, F-R) on Refer-DAVIS-17, Ref-YouTube-VOS and InsTrack.
Every rule below follows the DAVIS-2017 evaluation package (``davis2017/metrics.py``, ``utils.py``,
``evaluation.py``); where the released code and the documented protocol disagree, the choice is stated.

Region similarity J (per frame)
    ``J = |G ∩ P \\ V| / |(G ∪ P) \\ V|`` with ``V`` the void pixels (label 255 in DAVIS annotations), which are
    left out of both counts. When the union is empty (both masks empty outside the void) ``J = 1``.

Boundary measure F (per frame)
    * Void pixels are set to background in both masks (the reference multiplies each mask by ``not void``).
    * Boundaries by ``seg2bmap``: pixel ``(y, x)`` is a boundary pixel when its value differs from its east,
      south or south-east neighbour, the neighbour beyond the image counting as background -- except that on the
      last row only the east neighbour is compared, on the last column only the south neighbour, and the
      bottom-right pixel is never a boundary. Consequences worth knowing: the image border itself is not a
      boundary (a full mask has no boundary pixels at all), and boundaries sit half a pixel towards the origin
      (a one-pixel mask at ``(y, x)`` gives the 2x2 block ``y-1..y, x-1..x``).
    * Tolerance: ``bound_pix = bound_th`` if ``bound_th >= 1`` else ``ceil(bound_th * sqrt(H^2 + W^2))``
      (``bound_th = 0.008`` by default: 8 px at 480x854).
    * Each boundary map is dilated by a disk of radius ``bound_pix`` (``x^2 + y^2 <= r^2``, as skimage's
      ``disk``); dilation does not reach beyond the image.
    * precision = |B_P ∩ dil(B_G)| / |B_P|, recall = |B_G ∩ dil(B_P)| / |B_G|, with the reference's special
      cases: no predicted and no true boundary -> P = R = 1; no predicted boundary only -> P = 1, R = 0; no true
      boundary only -> P = 0, R = 1. ``F = 2PR / (P + R)``, and 0 when ``P + R = 0``.

Statistics per object (over the scored frames of one object)
    * mean: ``nanmean(values)``;
    * recall: ``nanmean(values > 0.5)`` (strictly greater);
    * decay: with ``n`` values, ``ids = round(linspace(1, n, 5) + 1e-10) - 1``, bins ``values[ids[i]:ids[i+1]+1]``
      for i = 0..3 (neighbouring bins share their edge frame), decay = mean(bin 0) - mean(bin 3).
      The reference casts ``ids`` to ``uint8``, which wraps for sequences of 257 frames or more (the last bin
      becomes empty and decay NaN); here the indices are ``int64``, so long videos (Ref-YouTube-VOS,
      InsTrack) get a real decay and shorter ones the reference's exact value. Masks are handled as ``bool``
      and counted with ``np.count_nonzero`` (``int64``), never in ``uint8`` arithmetic.

First and last frame
    DAVIS-2017's semi-supervised protocol drops the first frame (it is given) and the last frame of every
    sequence before scoring (``all_gt_masks[:, 1:-1]``); that is :func:`evaluate_object`'s default
    (``exclude_first_last=True``), kept so the semi-supervised numbers reproduce. The unsupervised task of the
    same package scores every frame, and that is how the referring benchmarks' numbers are published:
    ReferFormer's ``eval_davis.py`` scores Refer-DAVIS-17 through davis2017-evaluation with
    ``--task unsupervised``. Instruction tracking has no given first mask either, so the workspace has ONE
    rule for every TrackGPT figure (training's evaluation, calibration, ``scripts/eval_embedded.py``,
    ``replay-eval``, the demo): every frame scored, :func:`score_track`.

Void pixels in the released tool
    ``DAVISEvaluation`` builds its void mask as ``all_gt_masks == 255`` *after* the masks were binarised per
    object, so it is always empty: the released tool scores void pixels as background. The functions here
    ignore void pixels when given them (the documented rule, ``ignore_void=True``); pass
    ``ignore_void=False`` to :func:`evaluate_index_sequence` to reproduce the released tool's numbers.

Aggregation
    Objects are ``1..max id of the first annotated frame`` (the reference's ``get_all_masks``). Overall
    J-Mean / J-Recall / J-Decay (and F-...) are means over *all objects* of all sequences; J&F = (J-Mean +
    F-Mean) / 2. Per sequence: means over that sequence's objects (the reference's per-"sequence" table is per
    object, ``<seq>_<k>``; both are given).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "DAVIS_VOID_LABEL",
    "TRACKING_RULE",
    "DavisObjectScore",
    "DavisSummary",
    "boundary_measure",
    "boundary_tolerance_px",
    "davis_statistics",
    "disk",
    "evaluate_index_sequence",
    "evaluate_object",
    "region_similarity",
    "score_track",
    "seg2bmap",
    "summarize_davis",
]

DAVIS_VOID_LABEL = 255


def _as_bool_mask(mask, name: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"{name} must be an H x W mask, got shape {array.shape}")
    return array.astype(bool, copy=False) if array.dtype == bool else array != 0


def _check_same_shape(*arrays: np.ndarray) -> None:
    shapes = {a.shape for a in arrays if a is not None}
    if len(shapes) > 1:
        raise ValueError(f"masks differ in shape: {sorted(shapes)}")


def region_similarity(gt, pred, void=None) -> float:
    """J of one frame: IoU of ``gt`` and ``pred`` (H x W, non-zero = foreground) outside ``void``.

    Returns 1.0 when the union outside the void is empty (both masks empty).
    """
    gt = _as_bool_mask(gt, "gt")
    pred = _as_bool_mask(pred, "pred")
    void = None if void is None else _as_bool_mask(void, "void")
    _check_same_shape(gt, pred, void)
    valid = np.ones_like(gt) if void is None else ~void
    intersection = np.count_nonzero(gt & pred & valid)
    union = np.count_nonzero((gt | pred) & valid)
    return 1.0 if union == 0 else intersection / union


def seg2bmap(mask) -> np.ndarray:
    """One-pixel-wide boundary map (bool H x W) of a binary mask, by the rule in the module docstring."""
    seg = _as_bool_mask(mask, "mask")
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def boundary_tolerance_px(shape: Sequence[int], bound_th: float = 0.008) -> int:
    """Dilation radius in pixels: ``bound_th`` itself if >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return int(bound_th)
    height, width = int(shape[0]), int(shape[1])
    return math.ceil(bound_th * math.hypot(height, width))


def disk(radius: int) -> np.ndarray:
    """``(2r+1) x (2r+1)`` uint8 structuring element with ones where ``x^2 + y^2 <= r^2``."""
    radius = int(radius)
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius).astype(np.uint8)


def _dilate(boundary: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # cv2's default border for dilation never adds foreground, i.e. the image is zero padded.
    return cv2.dilate(boundary.astype(np.uint8), kernel) > 0


def boundary_measure(gt, pred, void=None, bound_th: float = 0.008) -> float:
    """F of one frame: boundary precision/recall F-measure of ``pred`` against ``gt`` (rules above)."""
    gt = _as_bool_mask(gt, "gt")
    pred = _as_bool_mask(pred, "pred")
    void = None if void is None else _as_bool_mask(void, "void")
    _check_same_shape(gt, pred, void)
    if void is not None:
        gt = gt & ~void
        pred = pred & ~void
    gt_boundary = seg2bmap(gt)
    pred_boundary = seg2bmap(pred)
    n_pred = np.count_nonzero(pred_boundary)
    n_gt = np.count_nonzero(gt_boundary)
    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        kernel = disk(boundary_tolerance_px(gt.shape, bound_th))
        precision = np.count_nonzero(pred_boundary & _dilate(gt_boundary, kernel)) / n_pred
        recall = np.count_nonzero(gt_boundary & _dilate(pred_boundary, kernel)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def davis_statistics(values) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame values, by the rules in the module docstring.

    An empty sequence gives NaN for all three (nothing was scored).
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(values))
        recall = float(np.nanmean(values > 0.5))
        ids = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)
        first_bin = values[ids[0] : ids[1] + 1]
        last_bin = values[ids[3] : ids[4] + 1]
        decay = float(np.nanmean(first_bin) - np.nanmean(last_bin))
    return mean, recall, decay


@dataclass(frozen=True)
class DavisObjectScore:
    """Scores of one object (one referred target) over one sequence.

    ``j`` and ``f`` hold the per-frame values of the scored frames (after leaving out first/last frame when
    that rule is on); ``frame_indices`` are their indices in the input sequence.
    """

    sequence: str
    object_id: str
    j: np.ndarray
    f: np.ndarray
    frame_indices: np.ndarray
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float

    @property
    def jf_mean(self) -> float:
        """(J-Mean + F-Mean) / 2 of this object."""
        return (self.j_mean + self.f_mean) / 2.0

    @property
    def name(self) -> str:
        """``<sequence>_<object>``, the reference's per-object row name."""
        return f"{self.sequence}_{self.object_id}"


def _stack(masks, name: str) -> list[np.ndarray]:
    if isinstance(masks, np.ndarray) and masks.ndim == 3:
        return [masks[i] for i in range(masks.shape[0])]
    frames = list(masks)
    for frame in frames:
        if np.asarray(frame).ndim != 2:
            raise ValueError(f"{name} must be a sequence of H x W masks")
    return frames


def evaluate_object(
    gt_masks,
    pred_masks,
    void_masks=None,
    *,
    exclude_first_last: bool = True,
    bound_th: float = 0.008,
    sequence: str = "",
    object_id: str | int = 1,
) -> DavisObjectScore:
    """J and F of one object over a sequence, with mean / recall / decay.

    Arguments:
        gt_masks: T masks (T x H x W array or sequence of H x W), non-zero = the object.
        pred_masks: T predicted masks of the same shapes. A frame without a prediction must be passed as an
            empty mask (it then scores J = 0 unless the ground truth is empty too) -- never skipped.
        void_masks: optional T masks of void pixels (ignored by J, background for F).
        exclude_first_last: leave out frame 0 and frame T-1 (DAVIS-2017 semi-supervised protocol; see module
            docstring for the referring benchmarks).
        bound_th: boundary tolerance (fraction of the diagonal, or pixels if >= 1).
        sequence, object_id: names carried into the result.
    """
    gts = _stack(gt_masks, "gt_masks")
    preds = _stack(pred_masks, "pred_masks")
    voids = None if void_masks is None else _stack(void_masks, "void_masks")
    if len(gts) != len(preds) or (voids is not None and len(voids) != len(gts)):
        raise ValueError(
            f"sequence lengths differ: {len(gts)} ground-truth, {len(preds)} predicted"
            + ("" if voids is None else f", {len(voids)} void")
        )
    indices = np.arange(len(gts))
    if exclude_first_last:
        indices = indices[1:-1]
    j = np.array([region_similarity(gts[i], preds[i], None if voids is None else voids[i]) for i in indices])
    f = np.array(
        [boundary_measure(gts[i], preds[i], None if voids is None else voids[i], bound_th) for i in indices]
    )
    j_stats = davis_statistics(j)
    f_stats = davis_statistics(f)
    return DavisObjectScore(
        sequence=sequence,
        object_id=str(object_id),
        j=j,
        f=f,
        frame_indices=indices,
        j_mean=j_stats[0],
        j_recall=j_stats[1],
        j_decay=j_stats[2],
        f_mean=f_stats[0],
        f_recall=f_stats[1],
        f_decay=f_stats[2],
    )


TRACKING_RULE = "every frame scored (referring benchmarks' protocol: davis2017-evaluation's unsupervised task)"


def score_track(
    gt_masks, pred_masks, *, sequence: str = "", object_id: str | int = 1, bound_th: float = 0.008
) -> DavisObjectScore:
    """J and F of one tracked instruction under the workspace's one rule (:data:`TRACKING_RULE`).

    Every frame counts, the first and last included; a frame without a prediction must come as an empty mask.
    """
    return evaluate_object(
        gt_masks, pred_masks, exclude_first_last=False, bound_th=bound_th, sequence=sequence, object_id=object_id
    )


def evaluate_index_sequence(
    gt_index_masks,
    pred_index_masks,
    *,
    sequence: str = "",
    object_ids: Iterable[int] | None = None,
    void_label: int | None = DAVIS_VOID_LABEL,
    ignore_void: bool = True,
    exclude_first_last: bool = True,
    bound_th: float = 0.008,
) -> list[DavisObjectScore]:
    """Score every object of one sequence given id masks (DAVIS annotation / result PNG contents).

    ``object_ids`` defaults to ``1..max id in the first ground-truth frame`` (void excluded), as the
    reference does. Object ``k`` is ``gt == k`` versus ``pred == k``; pixels equal to ``void_label`` in the
    ground truth are void (ignored when ``ignore_void``, else plain background as in the released tool).
    A predicted id equal to ``void_label`` is just not any object.
    """
    gts = [np.asarray(m) for m in _stack(gt_index_masks, "gt_index_masks")]
    preds = [np.asarray(m) for m in _stack(pred_index_masks, "pred_index_masks")]
    if not gts:
        raise ValueError("empty sequence")
    if object_ids is None:
        first = gts[0]
        if void_label is not None:
            first = np.where(first == void_label, 0, first)
        object_ids = range(1, int(first.max()) + 1)
    voids = None
    if void_label is not None:
        void_frames = [g == void_label for g in gts]
        voids = void_frames if ignore_void else None
    scores = []
    for object_id in object_ids:
        scores.append(
            evaluate_object(
                [g == object_id for g in gts],
                [p == object_id for p in preds],
                voids,
                exclude_first_last=exclude_first_last,
                bound_th=bound_th,
                sequence=sequence,
                object_id=object_id,
            )
        )
    return scores


@dataclass(frozen=True)
class DavisSummary:
    """Overall, per-sequence and per-object DAVIS figures.

    ``overall`` and each ``per_sequence[name]`` hold the keys ``J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean,
    F-Recall, F-Decay``; ``per_object`` maps ``<sequence>_<object>`` to its :class:`DavisObjectScore`.
    """

    overall: dict[str, float]
    per_sequence: dict[str, dict[str, float]] = field(default_factory=dict)
    per_object: dict[str, DavisObjectScore] = field(default_factory=dict)


def _aggregate(objects: Sequence[DavisObjectScore]) -> dict[str, float]:
    def mean(attribute: str) -> float:
        return float(np.mean([getattr(o, attribute) for o in objects])) if objects else math.nan

    result = {
        "J-Mean": mean("j_mean"),
        "J-Recall": mean("j_recall"),
        "J-Decay": mean("j_decay"),
        "F-Mean": mean("f_mean"),
        "F-Recall": mean("f_recall"),
        "F-Decay": mean("f_decay"),
    }
    return {"J&F-Mean": (result["J-Mean"] + result["F-Mean"]) / 2.0, **result}


def summarize_davis(objects: Iterable[DavisObjectScore] | Mapping[str, DavisObjectScore]) -> DavisSummary:
    """Aggregate object scores: overall = mean over all objects; per sequence = mean over its objects."""
    items = list(objects.values()) if isinstance(objects, Mapping) else list(objects)
    by_sequence: dict[str, list[DavisObjectScore]] = {}
    for item in items:
        by_sequence.setdefault(item.sequence, []).append(item)
    return DavisSummary(
        overall=_aggregate(items),
        per_sequence={name: _aggregate(group) for name, group in by_sequence.items()},
        per_object={item.name: item for item in items},
    )
