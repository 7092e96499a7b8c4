"""Online tracker: brain off the frame path, rethinking, superseding instructions, thread hints.

Most tests drive the tracker with a controlled perception (scripted S_p and masks) and
a fake brain whose speed the test controls; one runs the real tiny TrackGPT.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from trackgpt import TrackGPT
from trackgpt.errors import ImageError, InstructionError, ReasoningCancelled, TrackerError
from trackgpt.tracker import OnlineTracker, TrackState

H, W = 24, 32


@dataclass
class FakeReasoning:
    answer: str
    referring_query: torch.Tensor
    purport_query: torch.Tensor


@dataclass
class FakeDecoded:
    mask: np.ndarray
    purport_score: float
    next_query: torch.Tensor


class ControlledPerception:
    """Decoder whose S_p follows a script; records the queries it was given. Q_{t+1} = Q_t + 1."""

    def __init__(self, scores, empty_at=()):
        self.scores = list(scores)
        self.empty_at = set(empty_at)
        self.calls = []  # (frame marker, Q_R, Q_t, Q_p)
        self.decode_threads = []

    def encode_frame(self, frame):
        return int(frame[0, 0, 0])

    def decode(self, features, *, referring_query, online_query, purport_query):
        i = len(self.calls)
        self.calls.append((features, referring_query.clone(), online_query.clone(), purport_query.clone()))
        self.decode_threads.append(torch.get_num_threads())
        mask = np.zeros((H, W), bool)
        if i not in self.empty_at:
            mask[2:10, 3:9] = True
        score = self.scores[i] if i < len(self.scores) else self.scores[-1]
        return FakeDecoded(mask, score, online_query + 1)


class FakeBrain:
    """Answers with Q_R = [n] for its n-th call; blocks on ``gate`` when one is given (a deliberately slow brain)."""

    def __init__(self, gate: threading.Event | None = None, ignore_cancel=False, fail=False):
        self.gate = gate
        self.ignore_cancel = ignore_cancel
        self.fail = fail
        self.calls = []  # (frame marker, instruction)
        self.started = threading.Event()
        self.threads = []

    def reason(self, frame, instruction, *, cancel_event):
        self.calls.append((int(frame[0, 0, 0]), instruction))
        self.threads.append(torch.get_num_threads())
        self.started.set()
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if cancel_event.is_set() and not self.ignore_cancel:
                    raise ReasoningCancelled("superseded")
        if self.fail:
            raise RuntimeError("brain exploded")
        n = float(len(self.calls))
        return FakeReasoning(f"answer {len(self.calls)} to {instruction}", torch.full((1, 4), n),
                             torch.full((1, 4), -n))


def frame(marker: int) -> np.ndarray:
    f = np.zeros((H, W, 3), np.uint8)
    f[0, 0, 0] = marker
    return f


def run(tracker, markers, wait=True):
    steps = []
    for m in markers:
        steps.append(tracker.step(frame(m)))
        if wait:
            assert tracker.wait_for_brain(5.0)
    return steps


def test_idle_then_reasoning_then_tracking():
    perception, brain = ControlledPerception([0.9]), FakeBrain()
    with OnlineTracker(perception=perception, brain=brain) as tracker:
        idle = tracker.step(frame(1))
        assert idle.state is TrackState.IDLE and idle.mask is None and idle.instruction_id is None
        iid = tracker.set_instruction("  who will win the race?  ")
        first = tracker.step(frame(2))
        assert first.state is TrackState.REASONING and first.mask is None and first.reasoning
        assert tracker.wait_for_brain(5.0)
        second = tracker.step(frame(3))
    assert brain.calls == [(2, "who will win the race?")]  # the brain saw the first frame after the instruction
    assert second.state is TrackState.TRACKING and second.instruction_id == iid
    assert second.mask.shape == (H, W) and second.mask.dtype == np.bool_
    assert second.box == (3, 2, 6, 8) and second.purport_score == pytest.approx(0.9)
    assert second.answer == "answer 1 to who will win the race?" and not second.reasoning


def test_step_returns_while_a_slow_brain_is_reasoning():
    gate = threading.Event()
    perception, brain = ControlledPerception([0.9]), FakeBrain(gate=gate)
    with OnlineTracker(perception=perception, brain=brain) as tracker:
        tracker.set_instruction("the red car")
        durations = []
        for m in range(1, 6):
            t0 = time.monotonic()
            s = tracker.step(frame(m))
            durations.append(time.monotonic() - t0)
            assert s.state is TrackState.REASONING and s.mask is None and s.reasoning
        assert brain.started.wait(5.0), "the brain was never asked"
        assert not gate.is_set() and max(durations) < 1.0  # the brain is still blocked: steps did not wait
        gate.set()
        assert tracker.wait_for_brain(5.0)
        s = tracker.step(frame(6))
    assert s.state is TrackState.TRACKING and s.mask.any()
    assert len(brain.calls) == 1


@pytest.mark.parametrize("tau", [0.5, 0.8])
def test_rethinking_fires_exactly_below_tau_times_initial(tau):
    ref = 0.8
    t = tau * ref
    # frame 0 is reasoning (no decode); decodes start at frame 1
    scores = [ref, t + 0.01, t, t + 0.2, t - 0.01, 0.6, 0.6 * tau, 0.6 * tau - 0.001, 0.9]
    perception, brain = ControlledPerception(scores), FakeBrain()
    with OnlineTracker(perception=perception, brain=brain, tau=tau) as tracker:
        tracker.set_instruction("the dog")
        steps = run(tracker, range(10, 10 + len(scores) + 1))
    decoded = steps[1:]
    flags = [s.rethinking for s in decoded]
    # S_p == tau * ref does not fire (strictly below); after the rethink answer the reference is
    # the first new score (0.6), so 0.6 * tau does not fire and just below it does.
    assert flags == [False, False, False, False, True, False, False, True, False]
    assert [s.rethink_count for s in decoded] == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    # the brain was asked again with the frames that fired
    assert [c[0] for c in brain.calls] == [10, 15, 18]
    assert all(s.state is TrackState.TRACKING for s in decoded)


def test_no_rethinking_when_scores_stay_above_threshold():
    scores = [0.5, 0.26, 0.25, 0.9, 0.3, 0.251]
    perception, brain = ControlledPerception(scores), FakeBrain()
    with OnlineTracker(perception=perception, brain=brain, tau=0.5) as tracker:
        tracker.set_instruction("the dog")
        steps = run(tracker, range(1, len(scores) + 2))
    assert not any(s.rethinking for s in steps) and steps[-1].rethink_count == 0
    assert len(brain.calls) == 1


def test_old_target_tracked_while_rethinking_and_queries_replaced_after():
    gate = threading.Event()
    gate.set()
    perception, brain = ControlledPerception([0.9, 0.1, 0.05, 0.01, 0.7]), FakeBrain(gate=gate)
    with OnlineTracker(perception=perception, brain=brain) as tracker:
        tracker.set_instruction("the cat")
        run(tracker, [1, 2])  # reasoning, then first decode (reference 0.9)
        gate.clear()  # the rethink will be slow
        trigger = tracker.step(frame(3))
        assert trigger.rethinking and trigger.reasoning
        assert brain.started.wait(5.0)
        slow = [tracker.step(frame(m)) for m in (4, 5)]
        # old target still tracked, low scores do not ask again while the rethink is pending
        assert all(s.state is TrackState.TRACKING and s.mask.any() and not s.rethinking for s in slow)
        assert all(s.reasoning and s.rethink_count == 1 for s in slow)
        gate.set()
        assert tracker.wait_for_brain(5.0)
        after = tracker.step(frame(6))
    q_r = [call[1][0, 0].item() for call in perception.calls]
    assert q_r == [1.0, 1.0, 1.0, 1.0, 2.0]  # the new Q_R only after the answer
    online = [c[2][0, 0].item() for c in perception.calls]
    assert online == [1.0, 2.0, 3.0, 4.0, 2.0]  # Q_t propagated frame to frame, restarted at the new Q_R
    assert after.answer == "answer 2 to the cat" and not after.reasoning and not after.rethinking


def test_new_instruction_supersedes_pending_reasoning():
    gate = threading.Event()
    perception, brain = ControlledPerception([0.9]), FakeBrain(gate=gate, ignore_cancel=True)
    with OnlineTracker(perception=perception, brain=brain) as tracker:
        first = tracker.set_instruction("the first thing")
        tracker.step(frame(1))
        assert brain.started.wait(5.0)
        second = tracker.set_instruction("the second thing")
        assert second > first
        s = tracker.step(frame(2))  # queued for the second instruction while the first still runs
        assert s.state is TrackState.REASONING and s.instruction_id == second
        gate.set()  # the first answer arrives anyway (this brain ignores cancellation) and is discarded
        assert tracker.wait_for_brain(5.0)
        s = tracker.step(frame(3))
        assert tracker.discarded_answers == 1
    assert [c[1] for c in brain.calls] == ["the first thing", "the second thing"]
    assert s.state is TrackState.TRACKING and s.instruction_id == second
    assert s.answer == "answer 2 to the second thing"


def test_new_instruction_cancels_a_running_generation():
    gate = threading.Event()
    brain = FakeBrain(gate=gate)  # honours cancel_event
    with OnlineTracker(perception=ControlledPerception([0.9]), brain=brain) as tracker:
        tracker.set_instruction("the first thing")
        tracker.step(frame(1))
        assert brain.started.wait(5.0)
        tracker.set_instruction("the second thing")
        assert tracker.wait_for_brain(5.0)  # returns without opening the gate: the first was cancelled
        assert tracker.discarded_answers == 1
        gate.set()
        tracker.step(frame(2))
        assert tracker.wait_for_brain(5.0)
        s = tracker.step(frame(3))
    assert s.answer == "answer 2 to the second thing"


def test_lost_when_mask_empty_and_brain_failure_reported():
    with OnlineTracker(perception=ControlledPerception([0.9], empty_at={1}), brain=FakeBrain()) as tracker:
        tracker.set_instruction("the ball")
        steps = run(tracker, [1, 2, 3, 4])
    assert [s.state for s in steps] == [TrackState.REASONING, TrackState.TRACKING, TrackState.LOST,
                                        TrackState.TRACKING]
    assert steps[2].box == (0, 0, 0, 0)

    with OnlineTracker(perception=ControlledPerception([0.9]), brain=FakeBrain(fail=True)) as tracker:
        tracker.set_instruction("the ball")
        steps = run(tracker, [1, 2])
    assert steps[1].state is TrackState.LOST and "brain exploded" in steps[1].error and steps[1].mask is None


def test_clear_instruction_and_closed_tracker():
    tracker = OnlineTracker(perception=ControlledPerception([0.9]), brain=FakeBrain())
    tracker.set_instruction("the ball")
    run(tracker, [1, 2])
    tracker.clear_instruction()
    assert tracker.step(frame(3)).state is TrackState.IDLE
    tracker.close()
    with pytest.raises(TrackerError, match="closed"):
        tracker.step(frame(4))


def test_thread_hints_apply_to_each_side():
    before = torch.get_num_threads()
    perception, brain = ControlledPerception([0.9]), FakeBrain()
    try:
        with OnlineTracker(perception=perception, brain=brain, brain_threads=1, frame_threads=2) as tracker:
            tracker.set_instruction("the ball")
            run(tracker, [1, 2, 3])
        assert brain.threads == [1]
        assert perception.decode_threads == [2, 2]
    finally:
        torch.set_num_threads(before)


def test_bad_instructions_and_frames_give_clear_errors():
    with OnlineTracker(perception=ControlledPerception([0.9]), brain=FakeBrain()) as tracker:
        for bad, message in [("", "empty"), (" \t\n ", "whitespace"), (b"\xff\xfe car", "UTF-8"),
                             ("the \udcff car", "UTF-8"), ("the <TK> car", "reserved"), (42, "str"),
                             ("\u200b\u200b\u200b", "no visible character"), ("\u200b \ufeff\u2060", "visible"),
                             ("track the\x00 car", "U\\+0000"), ("the \x1b[31mred\x1b[0m car", "U\\+001B")]:
            with pytest.raises(InstructionError, match=message):
                tracker.set_instruction(bad)
        assert tracker.step(frame(1)).state is TrackState.IDLE  # failed instructions change nothing
        assert tracker.set_instruction("  le café à gauche\t(тот) 🚗 ") > 0  # any visible script, emoji, tab: fine
        for bad, message in [(np.zeros((0, 5, 3), np.uint8), "empty"), (np.zeros((4, 4, 2), np.uint8), "channels"),
                             (np.full((4, 4, 3), np.nan, np.float32), "NaN")]:
            with pytest.raises(ImageError, match=message):
                tracker.step(bad)


# ---------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def tiny():
    return TrackGPT.from_config("tiny")


def test_tracker_with_the_tiny_model(tiny):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(4)]
    with OnlineTracker(perception=tiny, tau=0.5) as tracker:
        tracker.set_instruction("the red car")
        steps = []
        for f in frames:
            steps.append(tracker.step(f))
            assert tracker.wait_for_brain(30.0)
    assert steps[0].state is TrackState.REASONING
    for s in steps[1:]:
        assert s.state in (TrackState.TRACKING, TrackState.LOST)
        assert s.mask.shape == (37, 53) and 0.0 <= s.purport_score <= 1.0
    assert isinstance(steps[-1].answer, str)


@pytest.mark.parametrize(
    "frame_in",
    [
        np.full((37, 53), 128, np.uint8),  # grayscale
        np.full((37, 53, 4), 128, np.uint8),  # RGBA
        np.full((37, 53, 3), 40000, np.uint16),  # 16-bit
        np.full((37, 53, 1), 0.5, np.float32),  # float gray
    ],
    ids=["gray", "rgba", "uint16", "float"],
)
def test_documented_frame_conversions_reach_the_model(tiny, frame_in):
    with OnlineTracker(perception=tiny) as tracker:
        tracker.set_instruction("the red car")
        tracker.step(frame_in)
        assert tracker.wait_for_brain(30.0)
        s = tracker.step(frame_in)
    assert s.mask.shape == (37, 53) and s.purport_score is not None


def test_instruction_longer_than_the_context_is_rejected(tiny):
    with OnlineTracker(perception=tiny) as tracker:
        with pytest.raises(InstructionError, match="too long.*context is 256 tokens"):
            tracker.set_instruction("follow the one that is " * 200)
        assert tracker.instruction is None


def test_reasoning_records_name_every_brain_call():
    ref, tau = 0.8, 0.5
    scores = [ref, 0.39, 0.7]  # the second decode fires a rethink
    gate = threading.Event()
    perception, brain = ControlledPerception(scores), FakeBrain()
    with OnlineTracker(perception=perception, brain=brain, tau=tau) as tracker:
        iid = tracker.set_instruction("the dog")
        steps = run(tracker, [20, 21, 22, 23])
        records = tracker.pop_reasoning_records()
        assert tracker.pop_reasoning_records() == []  # popped once
        # a superseded call is recorded too
        tracker.brain = FakeBrain(gate=gate)
        tracker.set_instruction("the cat")
        tracker.step(frame(30))
        assert tracker.brain.started.wait(5.0)
        tracker.set_instruction("the bird")
        assert tracker.wait_for_brain(5.0)
        gate.set()
        dropped = tracker.pop_reasoning_records()
    assert [(r.kind, r.frame_index, r.instruction_id, r.error) for r in records] == [
        ("initial", steps[0].frame_index, iid, None),
        ("rethink", steps[2].frame_index, iid, None),
    ]
    assert records[0].answer == "answer 1 to the dog" and records[1].answer == "answer 2 to the dog"
    assert all(r.latency >= 0 for r in records)
    assert steps[1].purport_threshold == pytest.approx(tau * ref)
    assert steps[2].rethinking and steps[2].purport_score < steps[2].purport_threshold
    assert [(r.instruction, r.answer) for r in dropped] == [("the cat", None)]
    assert dropped[0].error.startswith("superseded")


def test_on_record_is_called_for_every_record_and_a_failing_notifier_is_harmless():
    seen: list[int] = []

    def notify():
        seen.append(len(tracker._records))  # the record is there when the notifier runs
        raise RuntimeError("guard condition already destroyed")

    gate = threading.Event()
    with OnlineTracker(perception=ControlledPerception([0.8, 0.7]), brain=FakeBrain(), on_record=notify) as tracker:
        tracker.set_instruction("the dog")
        run(tracker, [1, 2])
        assert tracker.wait_for_brain(5.0)
        tracker.brain = FakeBrain(gate=gate)
        tracker.set_instruction("the cat")  # answered by the brain it supersedes below
        tracker.step(frame(3))
        assert tracker.brain.started.wait(5.0)
        tracker.set_instruction("the bird")
        gate.set()
        assert tracker.wait_for_brain(5.0)
        records = tracker.pop_reasoning_records()
    assert len(records) >= 2 and len(seen) >= len(records) and all(n >= 1 for n in seen)
    assert records[0].answer == "answer 1 to the dog"  # the brain worker survived the failing notifier


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no per-thread nice values on this OS")
def test_brain_nice_lowers_only_the_brain_worker():
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with OnlineTracker(perception=ControlledPerception([0.9]), brain=FakeBrain(), brain_nice=5) as tracker:
        assert tracker.wait_started(5.0) and tracker.brain_nice_error is None
        assert os.getpriority(os.PRIO_PROCESS, tracker._thread.native_id) == min(base + 5, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the frame side keeps its own
        tracker.set_instruction("the ball")
        assert run(tracker, [1, 2])[1].state is TrackState.TRACKING
    with pytest.raises(ValueError, match="brain_nice"):
        OnlineTracker(perception=ControlledPerception([0.9]), brain=FakeBrain(), brain_nice=25)


# ------------------------------------------------------------------ synchronous timing, propagation, logits
def test_synchronous_tracker_reasons_on_the_first_frame_before_decoding_it():
    """Model-figure timing: frame 0 gets a mask decoded with the answer the brain gave on frame 0 itself; a
    rethink asked on frame i is answered before frame i+1, which decodes with the new Q_R and Q_t = Q_R."""
    scores = [0.8, 0.7, 0.3, 0.9, 0.9]
    gate = threading.Event()
    perception, brain = ControlledPerception(scores), FakeBrain(gate=gate)
    threading.Timer(0.2, gate.set).start()  # a slow brain: step() must wait for it, not return REASONING
    with OnlineTracker(perception=perception, brain=brain, tau=0.5, synchronous=True) as tracker:
        tracker.set_instruction("the dog")
        steps = [tracker.step(frame(m)) for m in range(20, 25)]
    assert [s.state for s in steps] == [TrackState.TRACKING] * 5
    assert [c[0] for c in brain.calls] == [20, 22]  # frame 0, then the frame whose S_p fell below 0.5 x 0.8
    assert [s.rethinking for s in steps] == [False, False, True, False, False]
    q_r = [float(c[1][0, 0]) for c in perception.calls]
    q_t = [float(c[2][0, 0]) for c in perception.calls]
    assert q_r == [1, 1, 1, 2, 2]  # the second answer (Q_R = [2]) decodes frame 3 on
    assert q_t == [1, 2, 3, 2, 3]  # Q_t restarts from the new Q_R, then propagates
    assert steps[3].purport_threshold == pytest.approx(0.5 * 0.9)  # frame 3's S_p is the new reference


def test_live_tracker_gives_no_mask_while_the_first_reasoning_runs():
    gate = threading.Event()
    perception, brain = ControlledPerception([0.9]), FakeBrain(gate=gate)
    with OnlineTracker(perception=perception, brain=brain) as tracker:
        tracker.set_instruction("the dog")
        first = tracker.step(frame(1))
        gate.set()
        assert tracker.wait_for_brain(5.0)
        second = tracker.step(frame(2))
    assert first.state is TrackState.REASONING and first.mask is None
    assert second.state is TrackState.TRACKING and len(perception.calls) == 1


@pytest.mark.parametrize("propagate", [True, False])
def test_propagation_off_decodes_every_frame_with_the_referring_query(propagate):
    perception, brain = ControlledPerception([0.9]), FakeBrain()
    with OnlineTracker(perception=perception, brain=brain, synchronous=True, propagate=propagate) as tracker:
        tracker.set_instruction("the dog")
        for m in range(4):
            tracker.step(frame(m))
    q_t = [float(c[2][0, 0]) for c in perception.calls]
    assert q_t == ([1, 2, 3, 4] if propagate else [1, 1, 1, 1])


def test_keep_logits_returns_the_logits_behind_each_mask(tiny):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    with OnlineTracker(perception=tiny, synchronous=True, keep_logits=True) as tracker:
        tracker.set_instruction("the red ball")
        steps = [tracker.step(f) for f in frames]
    for s in steps:
        assert s.mask_logits.shape == s.mask.shape == (40, 56) and s.mask_logits.dtype == np.float32
        assert np.array_equal(s.mask, s.mask_logits > tiny.perception.mask_threshold)
    with OnlineTracker(perception=tiny, synchronous=True) as tracker:
        tracker.set_instruction("the red ball")
        assert tracker.step(frames[0]).mask_logits is None


def test_a_flood_of_instructions_reports_each_superseded_one():
    with OnlineTracker(perception=ControlledPerception([0.9]), brain=FakeBrain()) as tracker:
        ids = [tracker.set_instruction(f"the dog number {k}") for k in range(5)]
        tracker.clear_instruction()
        tracker.set_instruction("the cat")
        tracker.step(frame(1))
        assert tracker.wait_for_brain(5.0)
        records = tracker.pop_reasoning_records()
    unreasoned = [r for r in records if r.error is not None]
    assert [r.instruction_id for r in unreasoned] == ids  # the fifth was cleared, the others superseded
    assert all("superseded" in r.error for r in unreasoned[:4]) and "cleared" in unreasoned[4].error
    assert [r.instruction for r in records if r.error is None] == ["the cat"]


def test_a_hung_brain_stops_a_synchronous_run_instead_of_hanging_it():
    gate = threading.Event()  # never set: the brain never answers
    with OnlineTracker(perception=ControlledPerception([0.9]), brain=FakeBrain(gate=gate), synchronous=True,
                       brain_timeout=0.3) as tracker:
        tracker.set_instruction("the dog")
        t0 = time.monotonic()
        with pytest.raises(TrackerError, match="brain_timeout=0.3"):
            tracker.step(frame(1))
        assert time.monotonic() - t0 < 5.0
    with pytest.raises(ValueError, match="brain_timeout"):
        OnlineTracker(perception=ControlledPerception([0.9]), brain=FakeBrain(), brain_timeout=0.0)
