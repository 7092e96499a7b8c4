"""Stopping a node cleanly before its runtime handles signals (:func:`quiet_until_running`).

A node's console script imports its modules first (torch, rclpy, the model code: seconds on a robot CPU) and only
then does :func:`perception_nodes.runtime.run` install the handlers that shut the node down in order. A SIGINT in
that window (a terminal's Ctrl-C right after ``ros2 launch``, launch's forwarded one, a supervisor stopping a node
it just started) used to end it with a ``KeyboardInterrupt`` traceback and status -2. The console scripts call
:func:`quiet_until_running` before importing anything heavy: until the runtime replaces the handlers, SIGINT and
SIGTERM end the process at once with status 0 and one line (nothing has been opened that would need closing).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

# Test hook: when set to a file path, the console script holds right after installing the handlers, before its
# imports, until the file exists (at most 30 s), so a test can deliver signals in that window deterministically.
IMPORT_GATE_ENV = "PERCEPTION_TEST_IMPORT_GATE"


def hold_at_test_gate(variable: str, what: str) -> None:
    """Test hook: when the environment variable ``variable`` names a file, hold here until it exists (at most 30 s),
    saying so on stderr, so a test can deliver signals inside this window deterministically. Unset in normal use."""
    gate = os.environ.get(variable)
    if not gate:
        return
    print(f"[{Path(sys.argv[0]).name}] {what}: holding until {gate} exists", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 30.0
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def quiet_until_running(name: str) -> None:
    """Make SIGINT/SIGTERM exit 0 with one line until the node runtime installs its own handlers."""

    def _stop(signum, frame):
        sys.stderr.write(f"[{name}] stopped by {signal.Signals(signum).name} while starting\n")
        sys.stderr.flush()
        os._exit(0)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    hold_at_test_gate(IMPORT_GATE_ENV, "imports")
