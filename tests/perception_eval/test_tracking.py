"""perception_eval.tracking: a dataset video tracked by the library's OnlineTracker and scored by the one J&F rule."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from perception_eval.metrics import TRACKING_RULE, evaluate_object, score_track
from perception_eval.tracking import FALLBACK_INSTRUCTION, evaluate_video
from trackgpt.errors import InstructionError
from trackgpt.tracker import TrackState

H, W, T = 20, 24, 6


@dataclass
class Expression:
    text: str
    obj_id: int = 1
    expression_id: str = "0"


class Video:
    """A dataset video: frame i carries its index in pixel (0, 0); the object is a square moving right."""

    name = "v"

    def __len__(self):
        return T

    def load_frame(self, i):
        f = np.zeros((H, W, 3), np.uint8)
        f[0, 0, 0] = i
        return f

    def load_mask(self, i):
        m = np.zeros((H, W), np.uint8)
        m[5:12, 2 + 2 * i : 9 + 2 * i] = 1
        return m


@dataclass
class Reasoning:
    answer: str
    referring_query: torch.Tensor
    purport_query: torch.Tensor


@dataclass
class Decoded:
    mask: np.ndarray
    purport_score: float
    next_query: torch.Tensor
    mask_logits: torch.Tensor


class GroundTruthModel:
    """Decodes the true mask of each frame, except the frames in ``miss`` (empty); records its reasoning calls."""

    def __init__(self, miss=(), gate: threading.Event | None = None, refuse=False, drop_at=None):
        self.miss = set(miss)
        self.drop_at = drop_at  # the frame whose purport score falls (a rethink), or None
        self.gate = gate
        self.refuse = refuse
        self.reasoned: list[tuple[int, str, str | None]] = []

    def check_instruction(self, text):
        if self.refuse and len(text) > 8:
            raise InstructionError("too long for the context")
        return text

    def reason(self, frame, instruction, *, cancel_event=None, target=None):
        if self.gate is not None:
            self.gate.wait(5.0)
        self.reasoned.append((int(frame[0, 0, 0]), instruction, target))
        return Reasoning(f"Sure, I track the {target or 'thing'}.", torch.zeros(1, 2), torch.zeros(1, 2))

    def encode_frame(self, frame):
        return int(frame[0, 0, 0])

    def decode(self, index, *, referring_query, online_query, purport_query):
        mask = Video().load_mask(index).astype(bool) & (index not in self.miss)
        logits = torch.where(torch.from_numpy(mask), 5.0, -5.0)[None, None]
        score = 0.1 if index == self.drop_at else 0.9
        return Decoded(mask, score, online_query + 1, logits)


def test_every_frame_is_scored_the_first_and_last_included():
    score, run = evaluate_video(GroundTruthModel(), Video(), Expression("the square"))
    assert list(score.frame_indices) == list(range(T))
    assert score.jf_mean == pytest.approx(1.0)
    assert run.timing == "sync" and run.states == [TrackState.TRACKING] * T
    assert run.answers == ["Sure, I track the thing."] and run.rethinks == 0


@pytest.mark.parametrize("missed", [0, T - 1])
def test_a_missed_first_or_last_frame_counts(missed):
    score, run = evaluate_video(GroundTruthModel(miss={missed}), Video(), Expression("the square"))
    assert score.j[missed] == 0.0 and score.j_mean == pytest.approx((T - 1) / T)
    gts = np.stack([Video().load_mask(i) == 1 for i in range(T)])
    # the DAVIS semi-supervised protocol would hide the miss; the one rule does not
    assert evaluate_object(gts, np.stack(run.masks)).j_mean == pytest.approx(1.0)
    assert score_track(gts, np.stack(run.masks)).jf_mean == pytest.approx(score.jf_mean)
    assert "every frame" in TRACKING_RULE


def test_synchronous_timing_reasons_on_frame_zero_and_live_timing_scores_it_empty():
    model = GroundTruthModel()
    evaluate_video(model, Video(), Expression("the square"))
    assert model.reasoned[0][0] == 0
    gate = threading.Event()
    slow = GroundTruthModel(gate=gate)
    threading.Timer(0.3, gate.set).start()
    score, run = evaluate_video(slow, Video(), Expression("the square"), timing="live", fps=20.0)
    assert run.states[0] is TrackState.REASONING and not run.masks[0].any() and score.j[0] == 0.0
    assert run.timing == "live"


def test_oracle_target_reaches_every_reasoning_and_logits_come_back():
    model = GroundTruthModel()
    _, run = evaluate_video(model, Video(), Expression("the square"), oracle_target="red square", keep_logits=True)
    assert [r[2] for r in model.reasoned] == ["red square"]
    assert run.answers == ["Sure, I track the red square."]
    assert all(np.array_equal(lg > 0, m) for lg, m in zip(run.logits, run.masks))


def test_an_expression_the_brain_refuses_is_tracked_as_the_fallback_instruction():
    model = GroundTruthModel(refuse=True)
    score, _ = evaluate_video(model, Video(), Expression("x" * 10))
    assert model.reasoned[0][1] == FALLBACK_INSTRUCTION and score.jf_mean == pytest.approx(1.0)


def test_max_frames_and_bad_timing():
    score, run = evaluate_video(GroundTruthModel(), Video(), Expression("the square"), max_frames=3)
    assert len(run.masks) == 3 and list(score.frame_indices) == [0, 1, 2]
    with pytest.raises(ValueError, match="timing"):
        evaluate_video(GroundTruthModel(), Video(), Expression("the square"), timing="later")


@pytest.mark.parametrize("rethink", [True, False])
def test_rethinking_in_synchronous_timing(rethink):
    """S_p falls on frame 2: the brain is asked again on frame 2 and its answer applies from frame 3 on."""
    model = GroundTruthModel(drop_at=2)
    score, run = evaluate_video(model, Video(), Expression("the square"), rethink=rethink)
    assert [r[0] for r in model.reasoned] == ([0, 2] if rethink else [0])
    assert run.rethinks == (1 if rethink else 0) and len(run.answers) == len(model.reasoned)
    assert score.jf_mean == pytest.approx(1.0)  # the masks do not depend on the queries here
