"""CPU lists as the nodes' and the bench's parameters give them, and pinning the calling thread for a while."""

from __future__ import annotations

import contextlib
import os
import threading

import pytest

from perception_common.affinity import keep_others_off, parse_cpus, pinned

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
def test_keep_others_off_moves_every_other_thread_and_spares_the_caller():
    before = os.sched_getaffinity(0)
    tids = {"main": threading.get_native_id()}
    seen: dict[str, object] = {}
    started, leave = threading.Event(), threading.Event()

    def bystander():
        tids["bystander"] = threading.get_native_id()
        started.set()
        leave.wait(10)
        seen["bystander, after"] = os.sched_getaffinity(0)

    def caller():
        tids["caller"] = threading.get_native_id()
        seen["returned"] = keep_others_off({0})
        seen["caller"] = os.sched_getaffinity(0)

    other = threading.Thread(target=bystander)
    other.start()
    assert started.wait(10)
    try:
        t = threading.Thread(target=caller)
        t.start()
        t.join(10)
        seen["main"] = os.sched_getaffinity(0)
        leave.set()
        other.join(10)
        rest = before - {0}
        assert seen == {"returned": rest, "caller": before, "main": rest, "bystander, after": rest}
        assert keep_others_off(None) is None and keep_others_off(set()) is None
        assert keep_others_off(set(before)) is None  # no CPU left for the others: nothing moves
        assert os.sched_getaffinity(0) == rest
    finally:
        leave.set()
        for name in os.listdir("/proc/self/task"):  # give this test process its CPUs back
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(name), before)
