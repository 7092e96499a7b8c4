"""DAVIS-2017 J / F / statistics, checked against values worked out by hand (derivations in comments)."""

import math

import numpy as np
import pytest

from perception_eval.metrics.davis import (
    boundary_measure,
    boundary_tolerance_px,
    davis_statistics,
    disk,
    evaluate_index_sequence,
    evaluate_object,
    region_similarity,
    seg2bmap,
    summarize_davis,
)


def box(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return mask


def coords(mask):
    return sorted(zip(*map(list, np.nonzero(mask))))


# ---------------------------------------------------------------- J
def test_j_empty_empty_is_one_and_empty_vs_pixel_is_zero():
    empty = np.zeros((4, 4), bool)
    one = empty.copy()
    one[2, 3] = True
    assert region_similarity(empty, empty) == 1.0
    assert region_similarity(empty, one) == 0.0
    assert region_similarity(one, empty) == 0.0


def test_j_full_and_one_pixel_masks():
    full = np.ones((3, 5), bool)
    assert region_similarity(full, full) == 1.0
    one = np.zeros((3, 5), bool)
    one[0, 0] = True  # touches the border
    assert region_similarity(one, one) == 1.0
    assert region_similarity(full, one) == pytest.approx(1 / 15)


def test_j_partial_overlap():
    # left half (8 px) vs top half (8 px) of 4x4: intersection 2x2 = 4, union 12
    assert region_similarity(box((4, 4), (0, 3), (0, 1)), box((4, 4), (0, 1), (0, 3))) == pytest.approx(1 / 3)


def test_j_ignores_void_pixels():
    gt = np.zeros((3, 3), bool)
    gt[0, 0] = True
    pred = gt.copy()
    pred[0, 1] = True
    void = np.zeros((3, 3), bool)
    void[0, 1] = True
    assert region_similarity(gt, pred) == pytest.approx(0.5)  # 1 / 2 without void
    assert region_similarity(gt, pred, void) == 1.0  # the extra pixel is void
    assert region_similarity(gt, ~gt, np.ones((3, 3), bool)) == 1.0  # all void -> empty union -> 1


def test_j_accepts_id_masks_and_checks_shapes():
    assert region_similarity(np.array([[0, 7]]), np.array([[0, 1]])) == 1.0
    with pytest.raises(ValueError):
        region_similarity(np.zeros((2, 2)), np.zeros((2, 3)))


# ---------------------------------------------------------------- seg2bmap
def test_seg2bmap_one_pixel_inside_gives_2x2_block_towards_origin():
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = True
    assert coords(seg2bmap(mask)) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_seg2bmap_corner_pixels():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    assert coords(seg2bmap(mask)) == [(0, 0)]
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    # last row: only east compared; last column: only south; bottom-right never a boundary
    assert coords(seg2bmap(mask)) == [(2, 2), (2, 3), (3, 2)]


def test_seg2bmap_full_mask_and_border_have_no_boundary():
    assert not seg2bmap(np.ones((4, 4), bool)).any()
    # left half: only column 1 (the inner edge); the bottom image border is not a boundary
    assert coords(seg2bmap(box((4, 4), (0, 3), (0, 1)))) == [(0, 1), (1, 1), (2, 1), (3, 1)]


# ---------------------------------------------------------------- F
def test_tolerance_and_disk():
    assert boundary_tolerance_px((480, 854)) == 8  # 0.008 * 979.6 = 7.84 -> 8
    assert boundary_tolerance_px((10, 10)) == 1  # 0.008 * 14.1 = 0.11 -> 1
    assert boundary_tolerance_px((10, 10), bound_th=3) == 3
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert int(disk(2).sum()) == 13  # 5 + 3 + 3 + 1 + 1


def test_f_empty_and_full_special_cases():
    empty = np.zeros((6, 6), bool)
    full = np.ones((6, 6), bool)
    square = box((6, 6), (1, 3), (1, 3))
    assert boundary_measure(empty, empty) == 1.0
    assert boundary_measure(empty, square) == 0.0  # P = 0, R = 1
    assert boundary_measure(square, empty) == 0.0  # P = 1, R = 0
    assert boundary_measure(full, full) == 1.0  # no boundary in either: P = R = 1
    # a full prediction has no boundary at all, so it scores 0 against any mask with a boundary
    assert boundary_measure(square, full) == 0.0


def test_f_identical_one_pixel_and_border_masks():
    one = np.zeros((5, 5), bool)
    one[0, 4] = True
    assert boundary_measure(one, one) == 1.0
    left = box((10, 10), (0, 9), (0, 4))
    assert boundary_measure(left, left) == 1.0


def test_f_tolerance_of_one_pixel_on_10x10():
    gt = box((10, 10), (0, 9), (0, 4))  # boundary: column 4
    assert boundary_measure(gt, box((10, 10), (0, 9), (0, 5))) == 1.0  # column 5: within 1 px
    assert boundary_measure(gt, box((10, 10), (0, 9), (0, 6))) == 0.0  # column 6: 2 px away


def test_f_partial_match_hand_computed():
    # gt boundary: column 4, rows 0..9 (10 px). pred = rows 0..4 x cols 0..4: boundary = column 4 rows 0..4
    # plus row 4 cols 0..4 (9 px). Tolerance 1 px (plus-shaped disk).
    # precision: column 4 (5 px) + (4, 3) are within 1 px of column 4 -> 6 / 9
    # recall: gt rows 0..5 of column 4 are within 1 px of the pred boundary -> 6 / 10
    # F = 2 * (2/3) * 0.6 / (2/3 + 0.6) = 12 / 19
    gt = box((10, 10), (0, 9), (0, 4))
    pred = box((10, 10), (0, 4), (0, 4))
    assert boundary_measure(gt, pred) == pytest.approx(12 / 19)


def test_f_void_pixels_become_background():
    gt = box((10, 10), (0, 9), (0, 4))
    pred = box((10, 10), (0, 9), (0, 6))
    void = box((10, 10), (0, 9), (5, 9))
    assert boundary_measure(gt, pred) == 0.0
    assert boundary_measure(gt, pred, void) == 1.0


# ---------------------------------------------------------------- statistics
def test_statistics_mean_recall_decay_small():
    # n = 4: ids = round(linspace(1,4,5)+1e-10)-1 = [0,1,2,2,3]; bins v[0:2], v[2:4]
    mean, recall, decay = davis_statistics([1.0, 1.0, 0.0, 0.0])
    assert (mean, recall, decay) == (0.5, 0.5, 1.0)


def test_statistics_recall_is_strictly_above_half():
    assert davis_statistics([0.5, 0.6])[1] == 0.5


def test_statistics_decay_bins_n8_and_half_rounding_n3():
    # n = 8: ids = [0,2,4,5,7]: first bin v[0:3] -> 0.9, last bin v[5:8] -> 0.4
    values = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    assert davis_statistics(values)[2] == pytest.approx(0.5)
    # n = 3: linspace = [1,1.5,2,2.5,3]; +1e-10 makes 1.5 -> 2 and 2.5 -> 3: ids = [0,1,1,2,2]
    # first bin v[0:2] -> 0.75, last bin v[2:3] -> 0 (banker's rounding would give v[1:3] -> 0.25)
    assert davis_statistics([1.0, 0.5, 0.0])[2] == pytest.approx(0.75)


def test_statistics_long_sequence_no_uint8_wraparound():
    # n = 300: ids = [0, 75, 150, 224, 299]; a uint8 cast would make 299 -> 43 and the last bin empty (NaN)
    values = np.r_[np.ones(150), np.zeros(150)]
    mean, recall, decay = davis_statistics(values)
    assert mean == 0.5 and recall == 0.5
    assert decay == 1.0


def test_statistics_empty_is_nan():
    assert all(math.isnan(v) for v in davis_statistics([]))


# ---------------------------------------------------------------- sequences
def test_evaluate_object_leaves_out_first_and_last_by_default():
    gt = [box((6, 6), (1, 3), (1, 3))] * 4
    empty = np.zeros((6, 6), bool)
    pred = [empty, gt[1], gt[2], empty]
    score = evaluate_object(gt, pred)
    assert score.frame_indices.tolist() == [1, 2]
    assert score.j.tolist() == [1.0, 1.0] and score.j_mean == 1.0 and score.f_mean == 1.0
    every = evaluate_object(gt, pred, exclude_first_last=False)
    assert every.j.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert (every.j_mean, every.j_recall, every.j_decay) == (0.5, 0.5, 0.0)
    assert every.jf_mean == 0.5


def test_evaluate_object_length_mismatch():
    with pytest.raises(ValueError):
        evaluate_object(np.zeros((3, 4, 4)), np.zeros((2, 4, 4)))


def _two_object_frame():
    gt = np.zeros((6, 6), np.uint8)
    gt[0:2, 0:2] = 1
    gt[3:5, 3:5] = 2
    gt[2, 2] = 255  # void
    pred = np.zeros((6, 6), np.uint8)
    pred[0:2, 0:3] = 1  # J1 = 4 / 6
    pred[3:5, 3:5] = 2
    pred[2, 2] = 2  # on the void pixel: J2 = 4/4 when ignored, 4/5 when counted
    return gt, pred


def test_index_sequence_objects_void_and_summary():
    gt, pred = _two_object_frame()
    scores = evaluate_index_sequence([gt] * 3, [pred] * 3, sequence="a", exclude_first_last=False)
    assert [s.object_id for s in scores] == ["1", "2"]
    assert scores[0].j_mean == pytest.approx(2 / 3)
    assert scores[1].j_mean == 1.0
    # F: both objects' boundaries match within the 1 px tolerance of a 6x6 image (worked out by hand:
    # gt boundary {(0,1),(1,0),(1,1)}, pred boundary {(0,2),(1,0),(1,1),(1,2)}) -> 1
    assert scores[0].f_mean == 1.0 and scores[1].f_mean == 1.0
    released = evaluate_index_sequence([gt] * 3, [pred] * 3, exclude_first_last=False, ignore_void=False)
    assert released[1].j_mean == pytest.approx(0.8)

    empty_pred = np.zeros((6, 6), np.uint8)
    other = evaluate_index_sequence([gt] * 3, [empty_pred] * 3, sequence="b", object_ids=[1],
                                    exclude_first_last=False)
    summary = summarize_davis(scores + other)
    assert summary.overall["J-Mean"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert summary.overall["F-Mean"] == pytest.approx((1 + 1 + 0) / 3)
    assert summary.overall["J&F-Mean"] == pytest.approx(((5 / 9) + (2 / 3)) / 2)
    assert summary.per_sequence["a"]["J-Mean"] == pytest.approx(5 / 6)
    assert summary.per_sequence["a"]["J&F-Mean"] == pytest.approx(11 / 12)
    assert summary.per_sequence["b"]["J-Mean"] == 0.0
    assert set(summary.per_object) == {"a_1", "a_2", "b_1"}


def test_index_sequence_objects_come_from_first_frame_ignoring_void():
    first = np.full((4, 4), 255, np.uint8)
    first[0, 0] = 2
    scores = evaluate_index_sequence([first, first, first], [first, first, first])
    assert [s.object_id for s in scores] == ["1", "2"]
    assert scores[0].j_mean == 1.0  # object 1 absent everywhere: empty vs empty
