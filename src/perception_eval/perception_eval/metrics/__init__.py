"""Benchmark metrics (plain NumPy + OpenCV), each module's docstring states its rules.

- :mod:`.davis` -- DAVIS-2017 J, F, statistics, J&F (TrackGPT: Refer-DAVIS-17, Ref-YouTube-VOS, InsTrack).
- :mod:`.avs` -- AVSBench mIoU and F-score (beta^2 = 0.3).
- :mod:`.robust` -- AVSBench-Robust FPR, G-mIoU, G-F, G-FPR.
"""

from .avs import avs_f_curve, avs_frame_iou, avs_fscore, avs_miou, avs_thresholds, clip_fscore, clip_miou, sigmoid
from .davis import (
    DAVIS_VOID_LABEL,
    TRACKING_RULE,
    DavisObjectScore,
    DavisSummary,
    boundary_measure,
    boundary_tolerance_px,
    davis_statistics,
    disk,
    evaluate_index_sequence,
    evaluate_object,
    region_similarity,
    score_track,
    seg2bmap,
    summarize_davis,
)
from .robust import (
    NEGATIVE_CONDITIONS,
    POSITIVE_CONDITIONS,
    RobustClip,
    RobustReport,
    clip_false_positive_rate,
    evaluate_robust,
    false_positive_rate,
    global_score,
    normalize_condition,
)

__all__ = [
    "DAVIS_VOID_LABEL",
    "NEGATIVE_CONDITIONS",
    "POSITIVE_CONDITIONS",
    "TRACKING_RULE",
    "DavisObjectScore",
    "DavisSummary",
    "RobustClip",
    "RobustReport",
    "avs_f_curve",
    "avs_frame_iou",
    "avs_fscore",
    "avs_miou",
    "avs_thresholds",
    "boundary_measure",
    "boundary_tolerance_px",
    "clip_false_positive_rate",
    "clip_fscore",
    "clip_miou",
    "davis_statistics",
    "disk",
    "evaluate_index_sequence",
    "evaluate_object",
    "evaluate_robust",
    "false_positive_rate",
    "global_score",
    "normalize_condition",
    "region_similarity",
    "score_track",
    "seg2bmap",
    "sigmoid",
    "summarize_davis",
]
