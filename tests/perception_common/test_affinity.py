"""CPU lists as the nodes' and the bench's parameters give them, and pinning the calling thread for a while."""

from __future__ import annotations

import os
import threading

import pytest

from perception_common.affinity import others_kept_off, parse_cpus, pinned

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")


@linux_only
def test_cpu_lists_parse_and_bad_ones_name_the_parameter():
    last = (os.cpu_count() or 1) - 1
    assert parse_cpus("", "frame_cpus") is None and parse_cpus("  ", "frame_cpus") is None
    assert parse_cpus("0", "frame_cpus") == {0}
    assert parse_cpus(f"0-{last}", "brain_cpus") == set(range(last + 1))
    assert parse_cpus(f"0,{last}", "brain_cpus") == {0, last}
    with pytest.raises(ValueError, match="'frame_cpus' must be CPU ids"):
        parse_cpus("one", "frame_cpus")
    with pytest.raises(ValueError, match=f"'brain_cpus' names CPUs \\[{last + 1}\\]"):
        parse_cpus(str(last + 1), "brain_cpus")


@linux_only
def test_pinned_moves_the_calling_thread_alone_and_restores_it():
    before = os.sched_getaffinity(0)
    seen: dict[str, set[int]] = {}
    inside, leave = threading.Event(), threading.Event()

    def worker():
        with pinned({0}):
            seen["inside"] = os.sched_getaffinity(0)
            inside.set()
            leave.wait(10)
        seen["after"] = os.sched_getaffinity(0)

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(10)
    seen["other thread meanwhile"] = os.sched_getaffinity(0)
    leave.set()
    t.join(10)
    assert seen == {"inside": {0}, "other thread meanwhile": before, "after": before}
    with pinned(None):
        assert os.sched_getaffinity(0) == before


@linux_only
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs")
def test_others_kept_off_moves_every_other_thread_for_a_while():
    before = os.sched_getaffinity(0)
    rest = before - {0}
    seen: dict[str, object] = {}
    started, moved, leave = threading.Event(), threading.Event(), threading.Event()

    def bystander():
        started.set()
        moved.wait(10)
        seen["bystander, inside"] = os.sched_getaffinity(0)
        leave.wait(10)
        seen["bystander, after"] = os.sched_getaffinity(0)

    def caller():
        with others_kept_off({0}) as yielded:
            seen["yielded"] = yielded
            seen["caller, inside"] = os.sched_getaffinity(0)
            moved.set()
            while "bystander, inside" not in seen and not leave.is_set():
                leave.wait(0.01)
        seen["after"] = True

    other = threading.Thread(target=bystander)
    other.start()
    assert started.wait(10)
    t = threading.Thread(target=caller)
    t.start()
    assert moved.wait(10)
    seen["main, inside"] = os.sched_getaffinity(0)
    t.join(10)
    seen["main, after"] = os.sched_getaffinity(0)
    leave.set()
    other.join(10)
    assert seen == {"yielded": rest, "caller, inside": before, "main, inside": rest, "bystander, inside": rest,
                    "after": True, "main, after": before, "bystander, after": before}
    for cpus in (None, set(), set(before)):  # nothing to move, or no CPU left for the others
        with others_kept_off(cpus) as yielded:
            assert yielded is None and os.sched_getaffinity(0) == before
