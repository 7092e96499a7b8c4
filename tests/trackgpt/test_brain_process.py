"""ProcessBrain: the brain in a spawned process gives the in-process brain's answers, survives a crash or a hang
of its child (restarted, the call fails with why), honours supersede/cancel across the boundary, never orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

from trackgpt.brain_process import ProcessBrain
from trackgpt.errors import BrainError, InstructionError, ReasoningCancelled
from trackgpt.loading import load_model
from trackgpt.tracker import OnlineTracker, TrackState

SPEC = "config:tiny"
FRAME = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def brain():
    with ProcessBrain(SPEC, threads=1) as b:
        yield b


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purpose
        return f.read().split()[2] != "Z"


def test_answers_and_queries_equal_the_in_process_brain(brain):
    here = load_model(SPEC)
    a, b = here.reason(FRAME, "track the red ball"), brain.reason(FRAME, "track the red ball")
    assert b.answer == a.answer
    assert torch.allclose(b.referring_query, a.referring_query, atol=1e-5)
    assert torch.allclose(b.purport_query, a.purport_query, atol=1e-5)
    assert brain.check_instruction("  track it ") == "track it"
    with pytest.raises(InstructionError, match="empty"):
        brain.check_instruction("   ")
    assert brain.info["pid"] == brain.pid and brain.pid != os.getpid()


def test_a_perception_only_model_decodes_as_the_whole_one():
    whole, alone = load_model(SPEC), load_model(SPEC, with_brain=False)
    assert alone.brain is None and alone.projection is None
    q = whole.reason(FRAME, "track the red ball")
    kw = dict(referring_query=q.referring_query, online_query=q.referring_query, purport_query=q.purport_query)
    assert np.array_equal(whole.decode(whole.encode_frame(FRAME), **kw).mask,
                          alone.decode(alone.encode_frame(FRAME), **kw).mask)


def test_a_killed_child_fails_its_call_and_is_restarted():
    with ProcessBrain(SPEC, threads=1) as b:
        first = b.pid
        b.reason(FRAME, "track the red ball")
        os.kill(first, signal.SIGSTOP)  # hold it mid-request, then kill it
        errors = []
        t = threading.Thread(target=lambda: errors.append(_raises(lambda: b.reason(FRAME, "track it"))))
        t.start()
        time.sleep(0.3)
        os.kill(first, signal.SIGKILL)
        t.join(60)
        assert errors and isinstance(errors[0], BrainError) and "exited" in str(errors[0]), errors
        deadline = time.monotonic() + 120
        while b.restarts < 1 or b.pid == first:
            assert time.monotonic() < deadline, "no new brain process"
            time.sleep(0.1)
        assert b.reason(FRAME, "track the red ball").answer  # the new child answers
        assert b.restarts == 1 and not _alive(first)


def test_a_hung_child_is_killed_after_hang_timeout_and_restarted():
    with ProcessBrain(SPEC, threads=1, hang_timeout=1.0) as b:
        first = b.pid
        os.kill(first, signal.SIGSTOP)
        with pytest.raises(BrainError, match="did not answer within 1 s"):
            b.reason(FRAME, "track the red ball")
        b.wait_ready()
        assert b.pid != first and b.restarts == 1
        assert b.reason(FRAME, "track the red ball").answer


def test_cancel_reaches_the_child(brain):
    os.kill(brain.pid, signal.SIGSTOP)  # the request waits in the stopped child; cancel arrives first
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    threading.Timer(0.6, lambda: os.kill(brain.pid, signal.SIGCONT)).start()
    with pytest.raises(ReasoningCancelled):
        brain.reason(FRAME, "track the red ball", cancel_event=cancel)
    assert brain.reason(FRAME, "track the red ball").answer  # the next request is not cancelled


def test_the_tracker_supersedes_across_the_process_boundary(brain):
    perception = load_model(SPEC, with_brain=False)
    with OnlineTracker(perception=perception, brain=brain) as tracker:
        tracker.set_instruction("track the red ball")
        os.kill(brain.pid, signal.SIGSTOP)
        tracker.step(FRAME)  # sent to the (stopped) brain: the call is running
        time.sleep(0.2)
        os.kill(brain.pid, signal.SIGCONT)
        tracker.set_instruction("track the blue cube")  # checked by the child at once; supersedes the running call
        tracker.step(FRAME)
        assert tracker.wait_for_brain(60)
        step = tracker.step(FRAME)
        records = tracker.pop_reasoning_records()
    assert step.state in (TrackState.TRACKING, TrackState.LOST) and step.instruction_id == 2
    first = [r for r in records if r.instruction == "track the red ball"]
    assert first and first[0].answer is None and "superseded" in first[0].error
    assert any(r.instruction == "track the blue cube" and r.error is None for r in records)


def test_a_model_that_does_not_load_is_one_error(tmp_path):
    with pytest.raises(BrainError, match="could not load"):
        ProcessBrain(str(tmp_path / "missing"))


def test_the_child_dies_with_its_parent(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from trackgpt.brain_process import ProcessBrain
        if __name__ == "__main__":
            b = ProcessBrain({SPEC!r})
            print(b.pid, flush=True)
            time.sleep(600)
    """)
    path = tmp_path / "parent.py"
    path.write_text(script)
    parent = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()  # SIGKILL: no clean-up in the parent
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the brain process outlived its parent"
            time.sleep(0.1)
    finally:
        parent.kill()


def _raises(fn):
    try:
        fn()
    except Exception as exc:  # the test inspects it
        return exc
    return None
