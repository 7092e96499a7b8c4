"""Node processes: the one way the workspace's tools start, watch and stop the nodes they run.

``perception-run``, ``replay-eval --graph``, ``perception-bench`` and ``perception-demo`` all start nodes (or a
``perception-run``) through :class:`ManagedProcess` and stop them with :func:`stop_all`. Each child gets its own
session (process group), so a signal reaches it and whatever it starts, and a Ctrl-C in the terminal is not
delivered to it twice; stopping escalates SIGINT (the nodes' clean shutdown) -> SIGTERM -> SIGKILL. On Linux each
child also gets SIGTERM from the kernel when the process that started it dies, however it dies (SIGKILL, a closed
terminal's SIGHUP, a crash): no node outlives its launcher. ROS-free.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
try:  # resolved in the parent: the child, between fork and exec, only calls it
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None


def _child_setup(parent: int) -> None:
    """In the child before exec. SIGINT back to its default: a process started in the background of a
    non-interactive shell has SIGINT ignored, its children inherit that, and Python then installs no
    KeyboardInterrupt, so the polite first stop would not reach them. Then (Linux) ask the kernel for SIGTERM when
    the parent dies (if it already died between the fork and this call, the request comes too late: stop now). The
    kernel ties that signal to the THREAD that started the child: start children from a thread that lives as long
    as they should (the main thread)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if _prctl is None:
        return
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (``VmRSS`` of ``/proc/<pid>/status``), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every process started by ``pid`` and by those, recursively (Linux ``/proc/<pid>/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as handle:
                    kids = [int(k) for k in handle.read().split()]
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def tree_rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` and its descendants together (a node and its brain process), None when
    ``pid`` is gone."""
    own = rss_bytes(pid)
    if own is None:
        return None
    return own + sum(rss_bytes(child) or 0 for child in descendants(pid))


class ManagedProcess:
    """One child process in its own session, its output in a log file or a pipe.

    Args:
        cmd: the command.
        name: how messages name it (a node key such as ``/tracker/tracker_node``).
        log_path: write stdout and stderr there; None: a pipe the caller reads from :attr:`stdout`.
        env: the environment (default: this one, with ``PYTHONUNBUFFERED=1`` so logs are never held back).
    """

    def __init__(
        self, cmd: Sequence[str], *, name: str, log_path: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.cmd = list(cmd)
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = log_path.open("wb")
        self.started = time.monotonic()
        parent = os.getpid()
        try:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=self._log if self._log is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ if env is None else env, PYTHONUNBUFFERED="1"),
                preexec_fn=lambda: _child_setup(parent),
            )
        except BaseException:
            self.close_log()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> IO[bytes] | None:
        """The output pipe (None when the output goes to ``log_path``)."""
        return self.proc.stdout

    def poll(self) -> int | None:
        return self.proc.poll()

    def rss(self) -> int | None:
        """RSS of the process and its descendants (a tracker node's brain process included)."""
        return tree_rss_bytes(self.proc.pid) if self.proc.poll() is None else None

    def log_tail(self, chars: int = 1500) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def failed(self) -> str | None:
        """None while it runs; otherwise how it ended, with the end of its log."""
        code = self.proc.poll()
        if code is None:
            return None
        where = f"; log {self.log_path}:\n{self.log_tail()}" if self.log_path is not None else ""
        return f"{self.name} exited with code {code}{where}"

    def send_signal(self, sig: int) -> None:
        """Signal the child's whole process group (nothing when it is gone)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 10.0) -> int:
        """Stop it (see :func:`stop_all`); returns its exit code."""
        stop_all([self], grace=grace)
        return self.proc.returncode

    def close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()


def stop_all(
    processes: Sequence[ManagedProcess | None],
    *,
    grace: float = 10.0,
    term_grace: float = 5.0,
    on_escalate: Callable[[ManagedProcess, str], None] | None = None,
) -> None:
    """Stop every process: SIGINT to all at once, then SIGTERM to those still running after ``grace`` seconds,
    then SIGKILL after ``term_grace`` more; ``on_escalate(process, signal name)`` is told of each escalation.
    Log files are closed."""
    procs = [p for p in processes if p is not None]
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, term_grace), (signal.SIGKILL, 5.0)):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            break
        for p in alive:
            if sig != signal.SIGINT and on_escalate is not None:
                on_escalate(p, signal.Signals(sig).name)
            p.send_signal(sig)
        deadline = time.monotonic() + wait
        for p in alive:
            try:
                p.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                continue
    for p in procs:
        p.close_log()
