"""glibc's allocator for processes that take and publish camera frames: large buffers reused, not mapped afresh.

glibc serves an allocation above its mmap threshold (128 KiB at start) with a fresh mapping and unmaps it when
freed, so each 640x480 frame a node takes (0.9 MB, copied two or three times between DDS, rclpy and NumPy) touches
new pages, and each first touch is a page fault. On this project's KVM machine that cost the executor thread about
1.6 ms per frame, with the GIL held, while the frame thread waited for the GIL (a subscriber taking 640x480 frames
at 40 Hz spent 2.8-2.9 ms of its main thread's CPU per frame, 1.3 ms with the thresholds below). Raising the mmap
threshold puts such buffers on the heap, and a trim threshold above a few frames keeps the freed memory there for
the next frame.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit): a 4K rgb8 frame (25 MB) fits
TRIM_THRESHOLD = 64 * 2**20  # freed memory kept at the top of the heap, for the next frames
ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_large_buffers() -> str:
    """Set glibc's mmap and trim thresholds for this process (once, before frames flow). Returns what was done, for
    a debug line: ``'set'``, or why not (another C library, or the user's own ``MALLOC_*_THRESHOLD_`` variables,
    which are left in force)."""
    if platform.libc_ver()[0] != "glibc":
        return "not glibc: left as it is"
    if any(name in os.environ for name in ENV):
        return "left to MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ from the environment"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "mallopt not found: left as it is"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "mallopt refused the thresholds: left as it is"
    return "set"
