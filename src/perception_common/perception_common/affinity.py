"""CPU affinity on Linux: CPU lists as parameters give them (``'1'``, ``'2,3'``, ``'0-3'``), running the calling
thread alone on some CPUs for a while, and keeping a process's other threads off some CPUs for a while."""

from __future__ import annotations

import contextlib
import os
import threading


def parse_cpus(text: str, name: str) -> set[int] | None:
    """``'1'`` / ``'2,3'`` / ``'0-3'`` -> CPU ids (None for ''); ValueError naming the parameter otherwise."""
    text = text.strip()
    if not text:
        return None
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"parameter '{name}' must be CPU ids like '1', '2,3' or '0-3', got {text!r}") from None
    if not cpus or not cpus <= set(range(os.cpu_count() or 1)):
        raise ValueError(f"parameter '{name}' names CPUs {sorted(cpus)}, this machine has {os.cpu_count()}")
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError(f"parameter '{name}': CPU affinity is not supported on this platform")
    return cpus


@contextlib.contextmanager
def pinned(cpus: set[int] | None):
    """Run the calling thread alone on ``cpus`` (Linux sets affinity per thread; None or empty: left as it is),
    its earlier affinity restored afterwards."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def others_kept_off(cpus: set[int] | None):
    """Move every thread of this process but the calling one off ``cpus`` for a while, onto the other CPUs the
    process's main thread may use, and give each its earlier CPUs back afterwards. Yields those other CPUs, or None
    where nothing was moved (``cpus`` None or empty, no other CPU left, or not Linux). Threads started meanwhile
    inherit their starter's CPUs; a thread that ends meanwhile is passed over.

    With the calling thread :func:`pinned` to the other CPUs as well, ``cpus`` are free of this whole process: the
    benchmark's closed loop leaves the node's frame thread its core, as its bare loop had it."""
    if not cpus or not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        yield None
        return
    rest = os.sched_getaffinity(os.getpid()) - set(cpus)
    if not rest:
        yield None
        return
    me = threading.get_native_id()
    before: dict[int, set[int]] = {}
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        if tid != me:
            with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
                previous = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, rest)
                before[tid] = previous
    try:
        yield rest
    finally:
        for tid, previous in before.items():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, previous)
