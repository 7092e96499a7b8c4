"""perception_nodes.processes: the one way tools start and stop node processes (SIGINT -> SIGTERM -> SIGKILL)."""

from __future__ import annotations

import os
import signal
import sys
import time

from perception_nodes.processes import ManagedProcess, rss_bytes, stop_all

IGNORE = "import signal, sys, time\n{ignores}print('ready', flush=True)\ntime.sleep(60)\n"


def _child(tmp_path, name: str, ignores: tuple[str, ...] = ()) -> ManagedProcess:
    code = IGNORE.format(ignores="".join(f"signal.signal(signal.{s}, signal.SIG_IGN)\n" for s in ignores))
    proc = ManagedProcess([sys.executable, "-c", code], name=name, log_path=tmp_path / f"{name}.log")
    deadline = time.monotonic() + 20
    while "ready" not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "ready" in proc.log_tail(), proc.failed()
    return proc


def test_stop_escalates_only_as_far_as_needed(tmp_path):
    polite = _child(tmp_path, "polite")
    stubborn = _child(tmp_path, "stubborn", ("SIGINT",))
    deaf = _child(tmp_path, "deaf", ("SIGINT", "SIGTERM"))
    seen: list[tuple[str, str]] = []
    stop_all([polite, stubborn, deaf, None], grace=0.5, term_grace=0.5,
             on_escalate=lambda p, s: seen.append((p.name, s)))
    assert polite.poll() == -signal.SIGINT or polite.poll() == 1  # Python's KeyboardInterrupt exit
    assert stubborn.poll() == -signal.SIGTERM
    assert deaf.poll() == -signal.SIGKILL
    assert seen == [("stubborn", "SIGTERM"), ("deaf", "SIGTERM"), ("deaf", "SIGKILL")]


def test_sigint_stops_a_child_even_when_the_launcher_ignores_it(tmp_path):
    """A launcher started in the background of a non-interactive shell has SIGINT ignored; its children must
    still take the polite first stop (SIGINT) instead of waiting for SIGTERM."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = _child(tmp_path, "background")
    finally:
        signal.signal(signal.SIGINT, previous)
    seen: list[tuple[str, str]] = []
    stop_all([child], grace=5.0, term_grace=0.5, on_escalate=lambda p, s: seen.append((p.name, s)))
    assert child.poll() == -signal.SIGINT or child.poll() == 1  # Python's KeyboardInterrupt exit
    assert seen == []


def test_the_signal_reaches_the_whole_process_group(tmp_path):
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('grandchild', child.pid, flush=True)\ntime.sleep(60)\n"
    )
    proc = ManagedProcess([sys.executable, "-c", code], name="parent", log_path=tmp_path / "parent.log")
    deadline = time.monotonic() + 20
    while "grandchild" not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(proc.log_tail().split()[-1])
    assert rss_bytes(grandchild) is not None
    proc.stop(grace=5.0)
    deadline = time.monotonic() + 5
    while rss_bytes(grandchild) is not None and time.monotonic() < deadline:  # reaped by init once it died
        time.sleep(0.02)
    assert rss_bytes(grandchild) is None or _is_zombie(grandchild)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return any(line.startswith("State:") and "Z" in line for line in handle)
    except FileNotFoundError:
        return True


def test_failed_names_the_process_and_its_log(tmp_path):
    proc = ManagedProcess([sys.executable, "-c", "print('bad parameter x'); raise SystemExit(2)"], name="/ns/node",
                          log_path=tmp_path / "node.log")
    proc.proc.wait(timeout=20)
    message = proc.failed()
    assert message.startswith("/ns/node exited with code 2") and "bad parameter x" in message
    assert proc.stop() == 2  # stopping a finished process is a no-op that reports its code


def test_pipe_output_and_environment(tmp_path):
    proc = ManagedProcess([sys.executable, "-c", "import os; print(os.environ['PYTHONUNBUFFERED'], os.getpgid(0))"],
                          name="piped")
    out = proc.stdout.read().decode().split()
    proc.proc.wait(timeout=20)
    assert out[0] == "1" and int(out[1]) == proc.pid != os.getpgid(0)  # its own process group
