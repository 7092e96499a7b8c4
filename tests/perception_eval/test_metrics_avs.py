"""AVSBench mIoU / F-score rules, with hand-computed values (derivations in comments)."""

import numpy as np
import pytest

from perception_eval.metrics.avs import (
    avs_f_curve,
    avs_frame_iou,
    avs_fscore,
    avs_miou,
    avs_thresholds,
    clip_fscore,
    clip_miou,
)

GT_TOP = np.array([[1, 1], [0, 0]], bool)
# probabilities: the curve steps at 0.1, 0.6 and 0.9 (none of which is one of the 255 thresholds i/254)
PRED_A = np.array([[0.9, 0.1], [0.6, 0.1]], np.float32)
# t <= 0.1: all 4 positive, TP 2: P = .5, R = 1  -> F = 1.3*.5/(.15+1)   = 13/23
# 0.1 < t <= 0.6: {0.9, 0.6}: TP 1: P = R = .5   -> F = 1.3*.25/(.15+.5) = 0.5
# 0.6 < t <= 0.9: {0.9}: P = 1, R = .5           -> F = 1.3*.5/(.3+.5)   = 0.8125
# t > 0.9: nothing positive: P = R = 0 -> NaN    -> 0
PRED_B = np.array([[0.3, 0.3], [0.0, 0.0]], np.float32)
# t = 0: all positive -> 13/23; 0 < t <= 0.3: P = R = 1 -> 1; t > 0.3: 0


# ---------------------------------------------------------------- mIoU
def test_iou_empty_ground_truth_is_true_background_fraction():
    empty = np.zeros((4, 4), bool)
    assert avs_frame_iou(empty, empty) == pytest.approx(1.0)
    assert avs_frame_iou(np.ones((4, 4)), empty) == pytest.approx(0.0)
    pred = np.zeros((4, 4), np.float32)
    pred[0, :] = 0.8  # 4 of 16 pixels predicted -> 12 / 16 correctly background
    assert avs_frame_iou(pred, empty) == pytest.approx(0.75)


def test_iou_full_one_pixel_and_border():
    full = np.ones((3, 3), bool)
    assert avs_frame_iou(full, full) == pytest.approx(1.0)
    one = np.zeros((3, 3), bool)
    one[2, 2] = True  # border corner
    assert avs_frame_iou(one, one) == pytest.approx(1.0)
    two = one.copy()
    two[2, 1] = True
    assert avs_frame_iou(two, one) == pytest.approx(0.5)
    assert avs_frame_iou(full, one) == pytest.approx(1 / 9)


def test_iou_threshold_is_strictly_above_half_and_logits():
    gt = np.zeros((2, 2), bool)
    gt[0, 0] = True
    half = np.zeros((2, 2), np.float32)
    half[0, 0] = 0.5
    assert avs_frame_iou(half, gt) == 0.0
    logits = np.full((2, 2), -5.0, np.float32)
    logits[0, 0] = 0.0  # sigmoid(0) = 0.5: not positive
    assert avs_frame_iou(logits, gt, logits=True) == 0.0
    logits[0, 0] = 0.1
    assert avs_frame_iou(logits, gt, logits=True) == pytest.approx(1.0)


def test_miou_is_mean_over_clips_of_clip_means():
    gt = np.zeros((2, 3, 3), bool)
    gt[:, 1, 1] = True
    pred_a = gt.copy()
    pred_a[1] = False  # frame IoUs 1 and 0 -> clip 0.5
    assert clip_miou(pred_a, gt) == pytest.approx(0.5)
    # second clip: one frame, IoU 1 -> mean of clips 0.75 (the frame mean would be 2/3)
    assert avs_miou([pred_a, gt[0]], [gt, gt[0]]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        avs_miou([pred_a], [gt, gt])


# ---------------------------------------------------------------- F-score
def test_thresholds_are_the_protocols():
    t = avs_thresholds()
    assert t.shape == (255,) and t.dtype == np.float32
    assert t[0] == 0.0 and t[-1] == np.float32(1.0)  # 1 - 1e-10 rounds to 1 in float32
    assert t[127] == pytest.approx(0.5)


def test_f_curve_steps_hand_computed():
    curve = avs_f_curve(PRED_A, GT_TOP)
    assert curve.shape == (255,)
    # index i is threshold i/254: 25/254 = .098 <= .1 < 26/254; 152/254 = .598 <= .6 < 153/254; 228/254 = .898
    assert curve[0] == pytest.approx(13 / 23) and curve[25] == pytest.approx(13 / 23)
    assert curve[26] == pytest.approx(0.5) and curve[152] == pytest.approx(0.5)
    assert curve[153] == pytest.approx(0.8125) and curve[228] == pytest.approx(0.8125)
    assert curve[229] == 0.0 and curve[254] == 0.0


def test_clip_fscore_is_max_of_mean_curve_not_mean_of_maxima():
    clip_pred = np.stack([PRED_A, PRED_B])
    clip_gt = np.stack([GT_TOP, GT_TOP])
    # mean curve: index 1..25 -> (13/23 + 1) / 2 = 18/23 is the maximum (means of maxima would be 0.90625)
    assert clip_fscore(clip_pred, clip_gt) == pytest.approx(18 / 23)
    assert clip_fscore(PRED_A, GT_TOP) == pytest.approx(0.8125)


def test_empty_ground_truth_frames_are_skipped_and_empty_clip_scores_zero():
    empty_gt = np.zeros((2, 2), bool)
    anything = np.full((2, 2), 0.7, np.float32)
    clip_pred = np.stack([PRED_A, anything])
    clip_gt = np.stack([GT_TOP, empty_gt])
    assert clip_fscore(clip_pred, clip_gt) == pytest.approx(0.8125)  # the empty-GT frame is left out
    assert clip_fscore(anything, empty_gt) == 0.0


def test_batch_dependence_of_the_protocol_and_the_pooled_variant():
    frames_pred = [PRED_A, PRED_B, np.zeros((2, 2), np.float32)]
    frames_gt = [GT_TOP, GT_TOP, np.zeros((2, 2), bool)]
    one_clip = avs_fscore([np.stack(frames_pred)], [np.stack(frames_gt)])
    two_clips = avs_fscore([np.stack(frames_pred[:2]), frames_pred[2]], [np.stack(frames_gt[:2]), frames_gt[2]])
    assert one_clip == pytest.approx(18 / 23)
    assert two_clips == pytest.approx(9 / 23)  # the all-empty clip counts as 0
    for grouping in ([np.stack(frames_pred)], [np.stack(frames_pred[:2]), frames_pred[2]]):
        gts = [np.stack(frames_gt)] if len(grouping) == 1 else [np.stack(frames_gt[:2]), frames_gt[2]]
        assert avs_fscore(grouping, gts, mode="pooled") == pytest.approx(18 / 23)
    with pytest.raises(ValueError):
        avs_fscore(grouping, gts, mode="nope")


def test_f_full_masks_and_boolean_one_pixel_prediction():
    full = np.ones((3, 3), bool)
    assert clip_fscore(full, full) == pytest.approx(1.0)
    one = np.zeros((4, 4), bool)
    one[0, 3] = True
    curve = avs_f_curve(one, one)
    # threshold 0 marks all 16 pixels: P = 1/16, R = 1 -> F = 1.3/16.3; above 0 only the pixel: F = 1
    assert curve[0] == pytest.approx(1.3 / 16.3)
    assert curve[1:].min() == pytest.approx(1.0)
    assert clip_fscore(one, one) == pytest.approx(1.0)


def test_f_of_empty_prediction_is_not_zero_because_of_threshold_zero():
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True
    # threshold 0 marks every pixel: P = 4/16, R = 1 -> F = 1.3*.25/(.075+1) = 13/43; higher thresholds: 0
    assert clip_fscore(np.zeros((4, 4), np.float32), gt) == pytest.approx(13 / 43)
