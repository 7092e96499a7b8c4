"""AVSBench-Robust FPR and global metrics (eqs. 1-4), hand-computed."""

import numpy as np
import pytest

from perception_eval.metrics.robust import (
    RobustClip,
    clip_false_positive_rate,
    evaluate_robust,
    false_positive_rate,
    global_score,
    normalize_condition,
)


def test_fpr_is_predicted_foreground_fraction():
    pred = np.zeros((4, 4), np.float32)
    pred[0, :] = 0.9
    pred[1, 0] = 0.5  # exactly 0.5 is not positive
    assert false_positive_rate(pred) == pytest.approx(4 / 16)
    assert false_positive_rate(np.zeros((4, 4))) == 0.0
    assert false_positive_rate(np.ones((4, 4))) == 1.0
    one = np.zeros((4, 4), bool)
    one[3, 3] = True
    assert false_positive_rate(one) == pytest.approx(1 / 16)
    assert false_positive_rate(np.full((2, 2), 0.2), logits=True) == 1.0  # sigmoid(0.2) > 0.5


def test_clip_fpr_is_mean_over_frames():
    clip = np.zeros((2, 4, 4), np.float32)
    clip[0, 0, :] = 1.0  # 0.25
    clip[1, :3, :] = 1.0  # 0.75
    assert clip_false_positive_rate(clip) == pytest.approx(0.5)


def test_global_score_equation():
    assert global_score(0.8, 0.2) == pytest.approx(0.8)  # 2 * .8 * .8 / 1.6
    assert global_score(0.78, 0.0) == pytest.approx(2 * 0.78 / 1.78)
    assert global_score(1.0, 1.0) == 0.0
    assert global_score(0.0, 1.0) == 0.0  # zero denominator


def test_condition_names():
    assert normalize_condition("Off-screen") == "offscreen"
    assert normalize_condition("off_screen") == "offscreen"
    with pytest.raises(ValueError):
        normalize_condition("thunder")


def _clips():
    gt = np.zeros((1, 4, 4), bool)
    gt[0, :2, :2] = True  # the original ground truth of the video (4 of 16 px)
    empty = np.zeros((1, 4, 4), np.float32)
    full = np.ones((1, 4, 4), np.float32)
    gt_prob = gt.astype(np.float32)
    return [
        RobustClip("positive", gt_prob, gt, "v"),  # mIoU 1, F 1
        RobustClip("silence", empty, gt, "v"),  # IoU vs original 0; F 13/43 (threshold 0); FPR 0
        RobustClip("noise", gt_prob, gt, "v"),  # ignores audio: IoU 1, F 1, FPR 1/4
        RobustClip("Off-screen", full, gt, "v"),  # IoU 4/16; F 13/43 at every threshold; FPR 1
        RobustClip("mixed", gt_prob, gt, "v"),
    ]


def test_evaluate_robust_hand_computed():
    report = evaluate_robust(_clips())
    # tolerance 1e-6: the protocol's IoU has union + 1e-7 in its denominator (4 / (4 + 1e-7) = 0.999999975)
    assert report.positive["mIoU"] == pytest.approx(1.0) and report.positive["F"] == pytest.approx(1.0)
    silence, noise, off = (report.per_condition[c] for c in ("silence", "noise", "offscreen"))
    assert silence["mIoU_N"] == 0.0 and silence["F_N"] == pytest.approx(13 / 43)
    assert silence["G-mIoU"] == pytest.approx(1.0)  # 2*1*1/(1+1)
    assert silence["G-F"] == pytest.approx(60 / 73)  # 2*(30/43)/(1+30/43)
    assert silence["G-FPR"] == 0.0
    assert noise["mIoU_N"] == pytest.approx(1.0) and noise["G-mIoU"] == pytest.approx(0.0, abs=1e-6)
    assert noise["G-F"] == pytest.approx(0.0, abs=1e-6) and noise["G-FPR"] == pytest.approx(0.25)
    assert off["mIoU_N"] == pytest.approx(0.25) and off["G-mIoU"] == pytest.approx(6 / 7)  # 2*.75/1.75
    assert off["G-F"] == pytest.approx(60 / 73) and off["FPR"] == pytest.approx(1.0)
    overall = report.overall
    assert overall["count"] == 3
    assert overall["mIoU_N"] == pytest.approx(5 / 12)  # (0 + 1 + .25) / 3
    assert overall["G-mIoU"] == pytest.approx(14 / 19)  # 2*(7/12)/(19/12)
    assert overall["F_N"] == pytest.approx(23 / 43)  # (13/43 + 1 + 13/43) / 3
    assert overall["G-F"] == pytest.approx(40 / 63)  # 2*(20/43)/(63/43)
    assert overall["G-FPR"] == pytest.approx(5 / 12)  # (0 + .25 + 1) / 3
    assert report.mixed == {"mIoU": pytest.approx(1.0), "F": pytest.approx(1.0), "count": 1.0}


def test_evaluate_robust_refuses_missing_positives_and_empty_references():
    clips = _clips()
    with pytest.raises(ValueError, match="positive"):
        evaluate_robust(clips[1:])
    empty_ref = RobustClip("noise", clips[2].pred, np.zeros((1, 4, 4), bool), "w")
    with pytest.raises(ValueError, match="original"):
        evaluate_robust([clips[0], empty_ref])
