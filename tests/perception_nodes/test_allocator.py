"""Nodes take frames without page faults: glibc's thresholds set by perception_nodes.allocator (run() does it)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

# A frame's life in a node, 60 times: a fresh 0.9 MB buffer written (the take), copied (the conversion), freed.
CHURN = """
import os, sys
{setup}
def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
frame = bytes(640 * 480 * 3)
for _ in range(5):
    bytes(bytearray(frame))
before = faults()
for _ in range(60):
    taken = bytearray(frame)
    converted = bytes(taken)
    del taken, converted
print(faults() - before)
"""


def _faults(setup: str, env: dict[str, str] | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | (env or {})
    out = subprocess.run([sys.executable, "-c", CHURN.format(setup=setup)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@glibc_only
def test_keep_large_buffers_takes_frames_without_page_faults():
    tuned = "from perception_nodes.allocator import keep_large_buffers\nassert keep_large_buffers() == 'set'"
    untouched, kept = _faults("pass"), _faults(tuned)
    # untouched: glibc maps each buffer afresh (225 pages per 0.9 MB buffer, two buffers a frame); kept: reused
    assert untouched > 60 * 200 and kept < 60 * 5, (untouched, kept)


@glibc_only
def test_the_tools_recorder_node_takes_frames_without_page_faults(ros_available):
    """replay-eval, perception-bench and the demo take camera-sized messages through RecorderNode."""
    recorder = (
        "from perception_nodes.recorder import RecorderNode\n"
        "rec = RecorderNode('allocator_check')\n"
        "assert rec.allocator == 'set', rec.allocator\n"
        "rec.close()"
    )
    assert _faults(recorder) < 60 * 5


@glibc_only
def test_the_users_own_malloc_variables_are_left_in_force(monkeypatch):
    from perception_nodes.allocator import keep_large_buffers

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert "left to MALLOC_MMAP_THRESHOLD_" in keep_large_buffers()
