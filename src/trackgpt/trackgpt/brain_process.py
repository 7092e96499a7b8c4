"""The brain in its own process: :class:`ProcessBrain`, a :class:`trackgpt.tracker.Brain` that reasons in a spawned
child, so the brain's Python generation loop never competes with the frame path for the GIL.

The child loads the model through the one loader (:func:`trackgpt.loading.load_model`), keeps the brain and phi and
drops the perception (unless the brain sees the frame through its SAM image encoder, ``brain.vision_source`` ``"sam"``
or ``"objects"``, or names the frame's objects first, ``brain.naming`` ``"scene"``); the parent loads the perception
alone (``load_model(..., with_brain=False)``), so the brain's weights are loaded once. Per request the frame goes
through shared memory (``multiprocessing.shared_memory``), the answer and the two queries (``1 x C`` each) come back
over a pipe.

Semantics are the in-process brain's: :meth:`ProcessBrain.reason` blocks its caller (the tracker's worker thread,
which then waits without holding the GIL) and raises :class:`~trackgpt.errors.ReasoningCancelled` when its
``cancel_event`` is set (the child's generation stops at the next token: a shared counter names the newest
cancelled request), :class:`~trackgpt.errors.BrainError` when the brain failed. ``check_instruction`` is answered by
the child's reader thread at once, also while it reasons.

Faults: a child that dies (a crash, the OOM killer) or does not answer within ``hang_timeout`` seconds is killed,
its request fails with a :class:`BrainError` saying so, and a new child is started (:attr:`restarts` counts them);
requests wait for it. The child ignores SIGINT (a terminal's Ctrl-C reaches the whole process group: the parent
stops it in order) and exits by itself when its parent is gone (it watches its parent's pid), so it is never left
behind; :meth:`close` stops it (stop message, then SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from .errors import BrainError, ReasoningCancelled
from .model import Reasoning


@dataclass
class _Call:
    done: threading.Event = field(default_factory=threading.Event)
    reply: tuple | None = None


class ProcessBrain:
    """Reason in a spawned child process (module docstring).

    Args:
        spec: the model spec the child loads (:func:`trackgpt.loading.load_model`).
        device: where the child runs the brain and where the returned queries go.
        precision: the brain's precision (None: the model's own).
        threads: torch threads of the child (None: torch's default).
        nice: nice increment of the child (Linux; 0 = unchanged).
        cpus: CPU ids the child may run on (Linux ``sched_setaffinity``; None = all).
        start_timeout: seconds to wait for a child to load the model.
        hang_timeout: seconds one request may take before the child is considered hung (None = no limit).
        wait: wait here until the child has loaded the model (else call :meth:`wait_ready`, e.g. after loading the
            perception meanwhile).
        brain_overrides: :class:`~trackgpt.config.BrainConfig` changes for the child's loader.
    """

    def __init__(
        self,
        spec: str,
        *,
        device: str = "cpu",
        precision: str | None = None,
        threads: int | None = None,
        nice: int = 0,
        cpus: tuple[int, ...] | None = None,
        start_timeout: float = 600.0,
        hang_timeout: float | None = 300.0,
        wait: bool = True,
        brain_overrides: dict[str, Any] | None = None,
    ) -> None:
        self._args = dict(spec=spec, device=device, precision=precision, threads=threads, nice=nice,
                          cpus=tuple(cpus) if cpus else None, overrides=dict(brain_overrides or {}))
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self.start_timeout = float(start_timeout)
        self.hang_timeout = hang_timeout
        self.check_timeout = 2.0
        # "cancelled up to request N", shared with the child (request ids only grow, so no request is cancelled late)
        self._cancel_shm = shared_memory.SharedMemory(create=True, size=8)
        self._cancel_upto = np.ndarray((1,), np.int64, buffer=self._cancel_shm.buf)
        self._cancel_upto[0] = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._ready = threading.Event()
        self._closed = False
        self.restarts = 0
        self.last_failure: str | None = None
        self._load_failure: str | None = None
        self._kill_reason: str | None = None
        self.info: dict[str, Any] = {}
        self._proc = None
        self._conn = None
        self._start()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until the child has loaded the model.

        Raises:
            BrainError: it could not (the loader's error, one line) or not within ``start_timeout``; the child is
                stopped.
        """
        if not self._ready.wait(self.start_timeout):
            self.close()
            raise BrainError(f"the brain process did not load the model within {self.start_timeout:.0f} s")
        if self._load_failure:
            failure = self._load_failure
            self.close()
            raise BrainError(failure)

    # ---------------------------------------------------------------- process
    def _start(self) -> None:
        # A new session: a terminal's Ctrl-C (sent to the node's process group) never reaches the child, also while
        # it imports; the parent stops it in order. The connection is a socket pair passed as a file descriptor.
        parent_sock, child_sock = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "trackgpt.brain_process", str(child_sock.fileno())],
                pass_fds=[child_sock.fileno()], start_new_session=True,
            )
        finally:
            child_sock.close()
        conn = Connection(parent_sock.detach())
        conn.send(("start", self._args, self._cancel_shm.name, os.getpid()))
        self._proc, self._conn = proc, conn
        self._ready.clear()
        threading.Thread(target=self._read, args=(proc, conn), name="brain-reader", daemon=True).start()

    def _proc_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _read(self, proc, conn) -> None:
        """Route the child's replies to the waiting calls; on the child's end, fail them and start a new one."""
        while True:
            try:
                reply = conn.recv()
            except (EOFError, OSError):
                break
            kind = reply[0]
            if kind == "ready":
                self.info = dict(reply[1])
                self.last_failure = None
                self._ready.set()
            elif kind == "failed":  # the model did not load: nothing to restart into
                self.last_failure = self._load_failure = reply[1]
                self._ready.set()
                return
            else:
                with self._lock:
                    call = self._calls.pop(reply[1], None)
                if call is not None:
                    call.reply = reply
                    call.done.set()
        code = _wait(proc, 1.0)
        with self._lock:
            calls, self._calls = list(self._calls.values()), {}
        why = self._kill_reason or f"the brain process exited (code {code})"
        self._kill_reason = None
        for call in calls:
            call.reply = ("error", 0, why if "restarted" in why else why + "; it is being restarted")
            call.done.set()
        if self._closed or proc is not self._proc:
            return
        self.last_failure = why
        self.restarts += 1
        self._start()

    def _kill(self, why: str) -> None:
        """Kill a hung child; :meth:`_read` then fails its calls and starts a new one."""
        self._kill_reason = why
        self._ready.clear()  # calls wait for the new child
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    # ------------------------------------------------------------------ calls
    def _call(self, message: tuple, rid: int, *, timeout: float | None, cancel_event=None,
              kill_on_timeout: bool = True) -> tuple | None:
        """Send ``message`` and wait for its reply; on ``timeout`` kill the child (a hang) or, without
        ``kill_on_timeout``, give up and return None."""
        if not self._ready.wait(self.start_timeout):
            raise BrainError("the brain process is not ready (restarting)")
        if self._load_failure:
            raise BrainError(self._load_failure)
        call = _Call()
        with self._lock:
            self._calls[rid] = call
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, ValueError) as exc:
            with self._lock:
                self._calls.pop(rid, None)
            raise BrainError(f"the brain process cannot be reached: {exc}") from None
        start = time.monotonic()
        cancelled = False
        # a tenth of a second between looks at the cancel flag and the clock: each look takes the GIL from the
        # frame path of the process that waits here (50 looks a second did so all through every brain call)
        while not call.done.wait(0.1):
            if cancel_event is not None and not cancelled and cancel_event.is_set():
                self._cancel_upto[0] = max(int(self._cancel_upto[0]), rid)
                cancelled = True
            if timeout is not None and time.monotonic() - start > timeout:
                if not kill_on_timeout:
                    with self._lock:
                        self._calls.pop(rid, None)
                    return None
                self._kill(f"the brain process did not answer within {timeout:g} s (killed; it is being restarted)")
                call.done.wait(5.0)
                break
        reply = call.reply or ("error", rid, self.last_failure or "the brain process did not answer")
        if reply[0] == "cancelled" or (cancelled and reply[0] != "ok"):
            raise ReasoningCancelled("reasoning superseded by a newer instruction")
        if reply[0] == "error":
            raise BrainError(reply[2])
        return reply

    def reason(self, frame: np.ndarray, instruction: str, *, cancel_event=None, target: str | None = None):
        """Ask the child (see :meth:`trackgpt.model.TrackGPT.reason`)."""
        frame = np.ascontiguousarray(frame)
        rid = next(self._ids)
        shm = shared_memory.SharedMemory(create=True, size=max(1, frame.nbytes))
        try:
            np.ndarray(frame.shape, frame.dtype, buffer=shm.buf)[...] = frame
            message = ("reason", rid, shm.name, frame.shape, frame.dtype.str, instruction, target)
            reply = self._call(message, rid, timeout=self.hang_timeout, cancel_event=cancel_event)
        finally:
            shm.close()
            shm.unlink()
        _, _, answer, q_r, q_p, forced = reply
        to = dict(device=self.device)
        return Reasoning(answer, torch.from_numpy(q_r).to(**to), torch.from_numpy(q_p).to(**to), forced)

    def check_instruction(self, instruction: str | bytes) -> str:
        """Validate ``instruction`` (text and context length) in the child, which answers at once even while it
        reasons; while it is restarting or does not answer within ``check_timeout`` seconds, only the text rules
        are checked here (the context length is then checked when it reasons, and reported as that call's
        error): an instruction is never refused because the brain process is down."""
        from .brain import validate_instruction
        from .errors import InstructionError

        text = validate_instruction(instruction)
        if not self._ready.is_set() or self._load_failure:
            return text
        rid = next(self._ids)
        try:
            reply = self._call(("check", rid, instruction), rid, timeout=self.check_timeout, kill_on_timeout=False)
        except BrainError:
            return text
        if reply is None:
            return text
        if reply[2] is not None:
            raise InstructionError(reply[2])
        return reply[3]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self, timeout: float = 1.0) -> None:
        """Stop the child: a stop message (it ends between requests, or drops the one it works on), then SIGTERM,
        then SIGKILL; a child still loading the model is terminated at once. A node stops within 2 s."""
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        if self._ready.is_set():
            try:
                with self._send_lock:
                    self._conn.send(("stop",))
            except (OSError, ValueError):
                pass
            _wait(proc, timeout)
        if proc.poll() is None:
            proc.terminate()
            _wait(proc, 1.0)
        if proc.poll() is None:
            proc.kill()
            _wait(proc, 1.0)
        self._conn.close()
        self._cancel_shm.close()
        with contextlib.suppress(FileNotFoundError):
            self._cancel_shm.unlink()

    def __enter__(self) -> ProcessBrain:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -------------------------------------------------------------------- child
def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _attach(name: str) -> shared_memory.SharedMemory:
    """Attach to the parent's shared memory without handing it to this process's resource tracker (Python 3.11
    registers attached blocks too, and would unlink the parent's block when this process ends)."""
    from multiprocessing import resource_tracker

    shm = shared_memory.SharedMemory(name=name)
    with contextlib.suppress(Exception):
        resource_tracker.unregister(shm._name, "shared_memory")
    return shm


class _CancelFlag:
    """``is_set()`` once the parent cancelled request ``rid`` (or a later one)."""

    def __init__(self, upto: np.ndarray, rid: int) -> None:
        self.upto, self.rid = upto, rid

    def is_set(self) -> bool:
        return int(self.upto[0]) >= self.rid


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _child_main(conn, args: dict[str, Any], cancel_upto, parent: int) -> None:
    """The brain process: load, then answer requests in order (checks at once) until told to stop."""
    import queue

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the child in order (its own session anyway)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    t0 = time.monotonic()
    try:
        if args["nice"]:
            os.nice(int(args["nice"]))
        if args["cpus"] and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(args["cpus"]))
        if args["threads"]:
            torch.set_num_threads(int(args["threads"]))
        from .loading import load_model

        model = load_model(args["spec"], device=args["device"], precision=args["precision"], **args["overrides"])
        # else the brain sees through its SAM encoder, or names the objects proposed on its embedding
        if model.config.brain.vision_source not in ("sam", "objects") and model.config.brain.naming != "scene":
            model.perception = None  # the parent decodes the frames; the child only reasons
    except Exception as exc:  # reported to the parent as one line
        send(("failed", f"the brain process could not load {args['spec']!r}: {type(exc).__name__}: {exc}"))
        return
    send(("ready", {"pid": os.getpid(), "load_s": time.monotonic() - t0}))
    work: queue.Queue = queue.Queue()

    def worker() -> None:
        while True:
            item = work.get()
            if item is None:
                return
            _, rid, name, shape, dtype, text, target = item
            try:
                shm = _attach(name)
                try:
                    frame = np.ndarray(shape, np.dtype(dtype), buffer=shm.buf).copy()
                finally:
                    shm.close()
                flag = _CancelFlag(cancel_upto, rid)
                if flag.is_set():
                    raise ReasoningCancelled("cancelled before it started")
                out = model.reason(frame, text, cancel_event=flag, target=target)
                send(("ok", rid, out.answer, out.referring_query.detach().float().cpu().numpy(),
                      out.purport_query.detach().float().cpu().numpy(), bool(out.forced)))
            except ReasoningCancelled:
                send(("cancelled", rid))
            except Exception as exc:  # the brain's failure goes back as the request's error
                send(("error", rid, f"{type(exc).__name__}: {exc}"))

    thread = threading.Thread(target=worker, name="brain-worker", daemon=True)
    thread.start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "stop":
            break
        if message[0] == "check":
            _, rid, text = message
            try:
                send(("checked", rid, None, model.check_instruction(text)))
            except Exception as exc:  # InstructionError and kin: the reason goes back
                send(("checked", rid, str(exc), None))
        elif message[0] == "reason":
            work.put(message)
    work.put(None)
    thread.join(0.5)  # a running generation is abandoned: the process ends


def _child_entry(fd: int) -> None:
    """``python -m trackgpt.brain_process FD``: the parent's first message says what to load."""
    conn = Connection(fd)
    _, args, cancel_name, parent = conn.recv()
    shm = _attach(cancel_name)
    try:
        _child_main(conn, args, np.ndarray((1,), np.int64, buffer=shm.buf), parent)
    finally:
        conn.close()


if __name__ == "__main__":
    _child_entry(int(sys.argv[1]))
