"""Every node exits 0, promptly, on SIGINT / SIGTERM however often they come: at start-up, while running and during
its clean-up. Under ``ros2 launch`` a terminal Ctrl-C reaches each node twice (the terminal's process-group
signal, then launch's forwarded one); the second used to land in the clean-up and crash nodes there.

The start-up and clean-up windows are reached deterministically through the runtime's test gates
(``PERCEPTION_TEST_STARTUP_GATE`` / ``PERCEPTION_TEST_CLEANUP_GATE``: the node holds there until a file exists),
not by timing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from perception_nodes.runtime import CLEANUP_GATE_ENV, EXIT_GATE_ENV, STARTUP_GATE_ENV

pytestmark = pytest.mark.ros
EXIT_WITHIN = 2.0  # seconds from the last signal (or the gate opening) to the exit


def _node_args(name: str, tmp_path) -> list[str]:
    if name == "camera_node":
        folder = tmp_path / "frames"
        folder.mkdir(exist_ok=True)
        for i in range(3):
            cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
        return ["camera_node", "--ros-args", "-p", f"source:={folder}", "-p", "loop:=true", "-p", "rate:=20.0"]
    if name == "microphone_node":
        path = tmp_path / "tone.wav"
        sf.write(path, (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
        return ["microphone_node", "--ros-args", "-p", f"source:={path}", "-p", "loop:=true"]
    return [name, "--ros-args", "-p", "model:=config:tiny", "-p", "device:=cpu"]


NODES = ["camera_node", "microphone_node", "tracker_node", "avs_node"]


def _wait_log(processes, proc, text: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in processes.log(proc):
        assert proc.poll() is None, f"exited {proc.returncode} before '{text}':\n{processes.log(proc)[-3000:]}"
        assert time.monotonic() < deadline, f"no '{text}' after {timeout} s:\n{processes.log(proc)[-3000:]}"
        time.sleep(0.02)


def _signal_twice(proc) -> None:
    """What a terminal Ctrl-C under ros2 launch delivers: SIGINT to the process group, then launch's SIGINT."""
    os.killpg(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGINT)


def _assert_clean_exit(processes, proc, since: float) -> None:
    try:
        proc.wait(timeout=EXIT_WITHIN + 10)
    except Exception:
        pytest.fail(f"still running {EXIT_WITHIN + 10} s after the signals:\n{processes.log(proc)[-3000:]}")
    took = time.monotonic() - since
    log = processes.log(proc)
    assert proc.returncode == 0, f"exit code {proc.returncode}:\n{log[-3000:]}"
    assert "Traceback" not in log and "terminate called" not in log, log[-3000:]
    assert took < EXIT_WITHIN + 1.0, f"took {took:.1f} s to exit"  # 1 s of slack for the process itself to end


@pytest.mark.parametrize("name", NODES)
def test_double_sigint_at_start_up(name, processes, tmp_path, ros_available):
    gate = tmp_path / "startup.gate"
    proc = processes.start(_node_args(name, tmp_path), env={STARTUP_GATE_ENV: str(gate)})
    _wait_log(processes, proc, "start-up: holding")
    _signal_twice(proc)
    since = time.monotonic()
    _assert_clean_exit(processes, proc, since)
    assert not gate.exists()  # it left on the signal, not because the gate opened


@pytest.mark.parametrize("name", NODES)
def test_double_sigint_while_running_and_sigterm_alone(name, processes, tmp_path, ros_available):
    proc = processes.start(_node_args(name, tmp_path))
    _wait_log(processes, proc, "Fast DDS profile")  # logged once the node is built and about to spin
    _signal_twice(proc)
    _assert_clean_exit(processes, proc, time.monotonic())
    again = processes.start(_node_args(name, tmp_path))
    _wait_log(processes, again, "Fast DDS profile")
    os.kill(again.pid, signal.SIGTERM)
    _assert_clean_exit(processes, again, time.monotonic())


@pytest.mark.parametrize("name", NODES)
def test_second_signal_during_clean_up_is_absorbed(name, processes, tmp_path, ros_available):
    gate = tmp_path / "cleanup.gate"
    proc = processes.start(_node_args(name, tmp_path), env={CLEANUP_GATE_ENV: str(gate)})
    _wait_log(processes, proc, "Fast DDS profile")
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's
    _wait_log(processes, proc, "clean-up: holding")
    os.kill(proc.pid, signal.SIGINT)  # launch's forwarded one, inside the clean-up
    os.kill(proc.pid, signal.SIGTERM)  # and launch's escalation
    time.sleep(0.2)
    assert proc.poll() is None, "the second signal cut the clean-up short"
    gate.touch()
    _assert_clean_exit(processes, proc, time.monotonic())


def _ignored_signals(pid: int) -> set[int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    mask = next(line for line in status if line.startswith("SigIgn:")).split()[1]
    return {sig for sig in range(1, 65) if int(mask, 16) >> (sig - 1) & 1}


@pytest.mark.parametrize("name", ["camera_node", "tracker_node"])
def test_a_late_signal_after_the_clean_up_is_ignored(name, processes, tmp_path, ros_available):
    """After the clean-up the interpreter finalizes (DDS teardown: tens of ms under load), and Python gives the
    signals it handled back to SIG_DFL: launch's forwarded SIGINT arriving then ended a node that had closed
    cleanly with -2 (a fresh-clone run under load). Once closed, the node ignores SIGINT and SIGTERM."""
    gate = tmp_path / "exit.gate"
    proc = processes.start(_node_args(name, tmp_path), env={EXIT_GATE_ENV: str(gate)})
    _wait_log(processes, proc, "Fast DDS profile")
    os.killpg(proc.pid, signal.SIGINT)
    _wait_log(processes, proc, "exit: holding")
    assert {signal.SIGINT, signal.SIGTERM} <= _ignored_signals(proc.pid)
    os.kill(proc.pid, signal.SIGINT)  # late: ignored, the process ends as it would have
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.2)
    assert proc.poll() is None, f"a late signal ended the closed node: {proc.returncode}"
    gate.touch()
    _assert_clean_exit(processes, proc, time.monotonic())


@pytest.mark.parametrize("name", NODES)
def test_double_sigint_while_the_modules_import(name, processes, tmp_path, ros_available):
    """Before the runtime's handlers exist (torch, rclpy and the model code importing: seconds): exit 0, one line,
    no KeyboardInterrupt traceback. The import window is held open by the console script's test gate."""
    from perception_common.signals import IMPORT_GATE_ENV

    gate = tmp_path / "import.gate"
    proc = processes.start(_node_args(name, tmp_path), env={IMPORT_GATE_ENV: str(gate)})
    _wait_log(processes, proc, "imports: holding")
    _signal_twice(proc)
    _assert_clean_exit(processes, proc, time.monotonic())
    assert "stopped by SIGINT while starting" in processes.log(proc)


def test_sigint_while_the_brain_process_loads_stops_both(processes, tmp_path, ros_available):
    """tracker_node holds at start-up while its brain process loads the model; SIGINT then ends both within 2 s."""
    from perception_nodes.processes import descendants, rss_bytes

    proc = processes.start(_node_args("tracker_node", tmp_path))
    deadline = time.monotonic() + 60
    children: list[int] = []
    while not children:  # the brain process exists: the node is inside its start-up
        assert time.monotonic() < deadline and proc.poll() is None, processes.log(proc)[-3000:]
        children = descendants(proc.pid)
        time.sleep(0.02)
    _signal_twice(proc)
    _assert_clean_exit(processes, proc, time.monotonic())
    time.sleep(0.5)
    assert not [c for c in children if rss_bytes(c)], "the brain process outlived the node"
