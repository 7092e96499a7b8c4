"""Online instruction tracking with the rethinking mechanism (paper Alg. 1), brain off the frame path.

:class:`OnlineTracker` runs the per-frame perception (encode + decode) in the
caller's thread and the LVLM brain in one worker thread, so :meth:`step`
never waits for the brain:

* after :meth:`OnlineTracker.set_instruction`, the next frame is sent to the
  brain; until its answer arrives every step is ``REASONING`` with no mask;
* once the answer (Q_R, Q_p) is in, every step decodes the frame with Q_R, the
  online query Q_t (Q_0 = Q_R, then propagated frame to frame) and Q_p;
* rethinking: the first S_p after each (re)reasoning is the reference; when a
  later S_p drops *strictly* below ``tau x reference`` (paper Sec. 4.1:
  tau = 0.5 times the initial score), the brain is asked again with the
  current frame. The old target keeps being tracked until the new answer
  arrives; then Q_R, Q_p are replaced, Q_t restarts from the new Q_R and the
  reference is taken again. No second rethink is asked while one is pending.
  Rethinks are counted per instruction;
* a new instruction supersedes everything pending: the brain's running
  generation is asked to stop (``cancel_event``), a request not yet started is
  dropped, and any answer that still arrives for an older instruction is
  discarded by its instruction id.

Timing: by default (``synchronous=False``, live) the brain never holds up a frame, so the frames given while it
reasons get no mask, as on a robot. ``synchronous=True`` waits for it instead: the first reasoning runs on the
first frame before that frame is decoded, and a rethink's answer is in before the next frame (paper Alg. 1 as a
sequential loop; the model figures of ``perception_eval.tracking`` use it). The rules are otherwise the same.

States: ``IDLE`` (no instruction), ``REASONING`` (waiting for the first answer),
``TRACKING`` (a non-empty mask), ``LOST`` (the queries found nothing in this
frame, or the brain failed before giving any answer; ``TrackStep.error`` then
says why).

Threads: with PyTorch's OpenMP backend the intra-op thread count of ATen
kernels is a per-OS-thread setting (see :func:`set_thread_count`).
``brain_threads`` is applied inside the brain worker when it starts;
``frame_threads`` in whichever thread calls :meth:`step`, the first time that
thread calls it. Caveat: MKL's BLAS thread count is process-wide (the last
value set wins), so matrix products follow whichever side set it last; on a
2-core robot ``brain_threads=1, frame_threads=1`` avoids the question and gives
each side a core (the project notes expect the frame path to slow about 1.4x while the brain
thinks). ``None`` leaves the setting alone.
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from perception_common.images import mask_to_box, to_rgb8

from .brain import validate_instruction
from .errors import ReasoningCancelled, TrackerError


def set_thread_count(count: int) -> None:
    """Set torch's intra-op thread count for the calling OS thread.

    PyTorch initialises a thread's OpenMP count lazily from the process-wide value on its first
    parallel call; touching it first (``get_num_threads``) and then setting it makes the value stick to
    this thread even when another thread sets a different one later.
    """
    torch.get_num_threads()
    torch.set_num_threads(count)


class FramePerception(Protocol):
    """What the tracker needs from the perception side (``TrackGPT`` satisfies it)."""

    def encode_frame(self, frame: np.ndarray) -> Any: ...

    def decode(self, features: Any, *, referring_query: Any, online_query: Any, purport_query: Any) -> Any:
        """Return an object with ``mask`` (H x W bool), ``purport_score`` (float) and ``next_query``."""


class Brain(Protocol):
    """What the tracker needs from the brain (``TrackGPT`` satisfies it).

    ``reason`` returns an object with ``answer`` (str), ``referring_query`` and ``purport_query``; it
    should stop early and raise :class:`ReasoningCancelled` when ``cancel_event`` is set. An optional
    ``check_instruction(text) -> str`` validates instructions (e.g. against the context length).
    """

    def reason(self, frame: np.ndarray, instruction: str, *, cancel_event: threading.Event) -> Any: ...


class TrackState(enum.StrEnum):
    """Tracker state of one frame (see the module docstring)."""

    IDLE = "idle"
    REASONING = "reasoning"
    TRACKING = "tracking"
    LOST = "lost"


@dataclass(frozen=True)
class TrackStep:
    """The tracker's result for one frame.

    Attributes:
        frame_index: 0-based count of frames given to :meth:`OnlineTracker.step`.
        state: see :class:`TrackState`.
        mask: ``H x W`` bool, or None while IDLE / REASONING.
        box: ``(x, y, width, height)`` of the mask (zeros when empty), or None without a mask.
        purport_score: S_p of this frame, or None without a mask.
        purport_threshold: ``tau x`` the reference S_p in force (None before the reference is taken).
        rethinking: True on the frame whose S_p asked the brain to rethink.
        reasoning: True while the brain works on (or is about to get) a request of this instruction.
        rethink_count: rethinks asked for the current instruction so far.
        answer: the brain's latest text answer for the current instruction.
        instruction_id: id returned by :meth:`OnlineTracker.set_instruction` (None while IDLE).
        error: the brain's last failure for this instruction, if any.
        mask_logits: ``H x W`` float32 mask logits behind ``mask`` when the tracker keeps them (``keep_logits``).
    """

    frame_index: int
    state: TrackState
    mask: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    purport_score: float | None = None
    purport_threshold: float | None = None
    rethinking: bool = False
    reasoning: bool = False
    rethink_count: int = 0
    answer: str | None = None
    instruction_id: int | None = None
    error: str | None = None
    mask_logits: np.ndarray | None = None


@dataclass
class _Request:
    instruction_id: int
    text: str
    frame: np.ndarray
    kind: str  # "initial" or "rethink"
    frame_index: int = -1
    submitted: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class ReasoningRecord:
    """What one brain call did (see :meth:`OnlineTracker.pop_reasoning_records`).

    Attributes:
        instruction_id, instruction: the instruction the call answered.
        kind: ``"initial"`` or ``"rethink"``.
        frame_index: index (as in :class:`TrackStep`) of the frame the brain looked at.
        answer: the text answer (None when the call failed or was superseded).
        latency: seconds from the request to the end of the call.
        error: None on success; otherwise why (the brain's exception, or ``"superseded ..."``).
        forced: the brain did not generate ``<TK>``/``<PO>`` itself (see :class:`trackgpt.model.Reasoning`).
    """

    instruction_id: int
    instruction: str
    kind: str
    frame_index: int
    answer: str | None
    latency: float
    error: str | None = None
    forced: bool = False


class OnlineTracker:
    """Instruction tracker over a stream of frames.

    Args:
        perception: encodes and decodes frames (see :class:`FramePerception`).
        brain: answers instructions (see :class:`Brain`); by default ``perception`` itself
            (a :class:`trackgpt.model.TrackGPT` is both).
        tau: rethinking threshold as a fraction of the reference S_p (0.5 in the paper).
        brain_threads: torch intra-op threads for the brain worker (None: unchanged).
        frame_threads: torch intra-op threads for the thread that calls :meth:`step` (None: unchanged).
        brain_nice: raise the brain worker's nice value by this much (Linux: per thread), so that when the CPU is
            short the frame path runs first; 0 leaves it. A failure is kept in :attr:`brain_nice_error`.
        synchronous: wait for the brain (see the module docstring, "Timing"); False (live) never waits.
        propagate: propagate the referring query from frame to frame (the paper); False decodes every frame with
            Q_t = Q_R (the paper's ablation without propagation).
        keep_logits: return each decoded frame's mask logits in :attr:`TrackStep.mask_logits` (calibration).
        brain_timeout: synchronous only: seconds :meth:`step` waits for the brain before raising
            :class:`TrackerError` (None: no limit).
        on_record: called whenever a reasoning record is added (from the thread that adds it, with the tracker's
            lock held: it must be quick and must not call the tracker), so a node can publish records when they
            exist instead of polling :meth:`pop_reasoning_records`.
    """

    def __init__(
        self,
        *,
        perception: FramePerception,
        brain: Brain | None = None,
        tau: float = 0.5,
        brain_threads: int | None = None,
        frame_threads: int | None = None,
        brain_nice: int = 0,
        synchronous: bool = False,
        propagate: bool = True,
        keep_logits: bool = False,
        brain_timeout: float | None = None,
        on_record: Callable[[], None] | None = None,
    ) -> None:
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {tau}")
        for name, value in (("brain_threads", brain_threads), ("frame_threads", frame_threads)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.perception = perception
        self.brain = brain if brain is not None else perception
        self.tau = float(tau)
        self.brain_threads = brain_threads
        self.frame_threads = frame_threads
        if not 0 <= brain_nice <= 19:
            raise ValueError(f"brain_nice must be in [0, 19], got {brain_nice}")
        self.brain_nice = int(brain_nice)
        self.synchronous = bool(synchronous)
        self.propagate = bool(propagate)
        self.keep_logits = bool(keep_logits)
        if brain_timeout is not None and not brain_timeout > 0:
            raise ValueError(f"brain_timeout must be positive or None, got {brain_timeout}")
        self.brain_timeout = brain_timeout
        self.brain_nice_error: str | None = None
        self._brain_started = threading.Event()
        self._frame_thread_ids: set[int] = set()

        self._cond = threading.Condition()
        self._pending: _Request | None = None
        self._running: _Request | None = None
        self._results: deque[tuple[_Request, Any, str | None]] = deque()
        self._records: deque[ReasoningRecord] = deque(maxlen=1000)
        self._on_record = on_record
        self._closed = False

        self._instruction_id = 0
        self._instruction: str | None = None
        self._need_initial = False
        self._awaiting = False
        self._q_r = self._q_p = self._q_t = None
        self._reference: float | None = None
        self._answer: str | None = None
        self._error: str | None = None
        self._rethinks = 0
        self._frame_index = 0
        self.discarded_answers = 0

        self._thread = threading.Thread(target=self._worker, name="trackgpt-brain", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    @property
    def instruction(self) -> str | None:
        return self._instruction

    @property
    def rethink_count(self) -> int:
        """Rethinks asked for the current instruction."""
        return self._rethinks

    def set_instruction(self, text: str | bytes) -> int:
        """Start tracking what ``text`` asks for; returns the new instruction id.

        The brain sees the next frame given to :meth:`step`. Pending reasoning for an older
        instruction is cancelled and its answer, if it still arrives, discarded.

        Raises:
            InstructionError: empty, whitespace-only, not UTF-8, or too long for the brain's context.
        """
        self._check_open()
        check = getattr(self.brain, "check_instruction", None)
        text = check(text) if check is not None else validate_instruction(text)
        with self._cond:
            self._unreasoned("superseded by a newer instruction before the brain saw it")
            self._instruction_id += 1
            self._instruction = text
            self._supersede()
            self._need_initial = True
            return self._instruction_id

    def clear_instruction(self) -> None:
        """Stop tracking (state IDLE); pending reasoning is cancelled."""
        with self._cond:
            self._unreasoned("cleared before the brain saw it")
            self._instruction_id += 1
            self._instruction = None
            self._supersede()
            self._need_initial = False

    def step(self, frame: np.ndarray) -> TrackStep:
        """Process one frame (any layout ``to_rgb8`` accepts, RGB order); never waits for the brain.

        Raises:
            ImageError: the frame is empty, has a bad channel count, NaN, ...
        """
        self._check_open()
        self._apply_frame_threads()
        rgb = to_rgb8(frame)
        index = self._frame_index
        self._frame_index += 1
        with self._cond:
            if self.synchronous:  # a rethink asked on the previous frame answers before this one
                self._wait_idle()
            self._collect_results()
            if self._instruction is None:
                return TrackStep(index, TrackState.IDLE)
            iid = self._instruction_id
            if self._need_initial:
                self._submit(rgb, "initial", index)
                self._need_initial = False
                if self.synchronous:  # reason on this frame, then decode it with the answer
                    self._wait_idle()
                    self._collect_results()
            q_r, q_t, q_p = self._q_r, self._q_t, self._q_p
            if q_r is None:
                state = TrackState.LOST if self._error and not self._awaiting else TrackState.REASONING
                return self._result(index, state, instruction_id=iid)

        decoded = self.perception.decode(
            self.perception.encode_frame(rgb), referring_query=q_r, online_query=q_t, purport_query=q_p
        )
        mask = np.asarray(decoded.mask, dtype=bool)
        score = float(decoded.purport_score)
        rethinking = False
        with self._cond:
            if iid == self._instruction_id and self._q_r is q_r:
                self._q_t = decoded.next_query if self.propagate else q_r
                if self._reference is None:
                    self._reference = score
                elif not self._awaiting and score < self.tau * self._reference:
                    self._submit(rgb, "rethink", index)
                    self._rethinks += 1
                    rethinking = True
            state = TrackState.TRACKING if mask.any() else TrackState.LOST
            threshold = None if self._reference is None else self.tau * self._reference
            logits = _logits_of(decoded) if self.keep_logits else None
            return self._result(
                index, state, instruction_id=iid, mask=mask, box=mask_to_box(mask), purport_score=score,
                purport_threshold=threshold, rethinking=rethinking, mask_logits=logits,
            )

    def pop_reasoning_records(self) -> list[ReasoningRecord]:
        """Every brain call finished (or dropped) since the last call, oldest first."""
        with self._cond:
            records = list(self._records)
            self._records.clear()
            return records

    def _record(self, request: _Request, reasoning: Any, error: str | None) -> None:
        """Note one finished or dropped brain call (lock held)."""
        self._records.append(ReasoningRecord(
            instruction_id=request.instruction_id, instruction=request.text, kind=request.kind,
            frame_index=request.frame_index, answer=None if reasoning is None else reasoning.answer,
            latency=time.monotonic() - request.submitted, error=error,
            forced=bool(getattr(reasoning, "forced", False)),
        ))
        self._notify()

    def _notify(self) -> None:
        # a failing notifier (a node's guard condition already destroyed at shutdown) must not kill the brain
        # worker: the records stay for pop_reasoning_records
        if self._on_record is not None:
            with contextlib.suppress(Exception):
                self._on_record()

    def wait_for_brain(self, timeout: float | None = None) -> bool:
        """Block until the brain has nothing pending or running (for offline runs and tests).

        Returns:
            True when idle, False on timeout.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and self._running is None, timeout)

    def wait_started(self, timeout: float | None = None) -> bool:
        """True once the brain worker has applied its threads and nice value (see :attr:`brain_nice_error`)."""
        return self._brain_started.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel pending reasoning and stop the worker thread."""
        with self._cond:
            self._closed = True
            self._supersede()
            self._cond.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> OnlineTracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------- private
    def _check_open(self) -> None:
        if self._closed:
            raise TrackerError("the tracker is closed")

    def _wait_idle(self) -> None:
        """Wait (lock held; released while waiting) until the brain has nothing pending or running.

        Raises:
            TrackerError: the brain did not finish within ``brain_timeout`` seconds.
        """
        idle = self._cond.wait_for(
            lambda: (self._pending is None and self._running is None) or self._closed, self.brain_timeout
        )
        if not idle:
            raise TrackerError(f"the brain did not answer within brain_timeout={self.brain_timeout} s")

    def _apply_frame_threads(self) -> None:
        if self.frame_threads is None:
            return
        ident = threading.get_ident()
        if ident not in self._frame_thread_ids:
            set_thread_count(self.frame_threads)
            self._frame_thread_ids.add(ident)

    def _unreasoned(self, why: str) -> None:
        """Record the current instruction as never reasoned when no frame sent it to the brain (lock held), so
        every instruction has a record even in a flood faster than the frames."""
        if self._need_initial and self._instruction is not None:
            self._records.append(ReasoningRecord(
                instruction_id=self._instruction_id, instruction=self._instruction, kind="initial", frame_index=-1,
                answer=None, latency=0.0, error=why,
            ))
            self._notify()

    def _supersede(self) -> None:
        """Drop pending work and reset per-instruction state (lock held)."""
        if self._pending is not None:
            self._record(self._pending, None, "superseded before it started")
        self._pending = None
        if self._running is not None:
            self._running.cancel.set()
        self._awaiting = False
        self._q_r = self._q_p = self._q_t = None
        self._reference = None
        self._answer = None
        self._error = None
        self._rethinks = 0
        self._cond.notify_all()

    def _submit(self, rgb: np.ndarray, kind: str, frame_index: int) -> None:
        """Queue a brain request (lock held); a newer request replaces one not yet started."""
        if self._pending is not None:
            self._record(self._pending, None, "superseded before it started")
        self._pending = _Request(self._instruction_id, self._instruction, rgb.copy(), kind, frame_index)
        self._awaiting = True
        self._cond.notify_all()

    def _collect_results(self) -> None:
        """Apply finished answers of the current instruction; discard stale ones (lock held)."""
        while self._results:
            request, reasoning, error = self._results.popleft()
            if request.instruction_id != self._instruction_id:
                self.discarded_answers += 1
                continue
            if self._pending is None:  # at most one request per instruction is outstanding
                self._awaiting = False
            if error is not None:
                self._error = error
                continue
            self._q_r = reasoning.referring_query
            self._q_p = reasoning.purport_query
            self._q_t = reasoning.referring_query
            self._reference = None
            self._answer = reasoning.answer
            self._error = None

    def _result(self, index: int, state: TrackState, **kwargs: Any) -> TrackStep:
        return TrackStep(
            index, state, reasoning=self._awaiting, rethink_count=self._rethinks, answer=self._answer,
            error=self._error, **kwargs,
        )

    def _worker(self) -> None:
        if self.brain_threads is not None:
            set_thread_count(self.brain_threads)
        if self.brain_nice:
            try:  # on Linux a thread id names one thread: only the brain worker is lowered
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self.brain_nice)
            except (OSError, AttributeError) as exc:
                self.brain_nice_error = f"{type(exc).__name__}: {exc}"
        self._brain_started.set()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                request, self._pending = self._pending, None
                self._running = request
            reasoning, error = None, None
            try:
                reasoning = self.brain.reason(request.frame, request.text, cancel_event=request.cancel)
            except ReasoningCancelled:
                error = "cancelled"
            except Exception as exc:  # the brain's failure is reported in TrackStep.error, not raised in a thread
                error = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._running = None
                if error == "cancelled" or request.cancel.is_set():
                    self.discarded_answers += 1  # superseded; _supersede already reset the state
                    self._record(request, None, "superseded by a newer instruction")
                else:
                    self._record(request, reasoning, error)
                    self._results.append((request, reasoning, error))
                self._cond.notify_all()


def _logits_of(decoded: Any) -> np.ndarray:
    """The ``H x W`` float32 mask logits of a decoded frame (``decoded.mask_logits``: ``1 x 1 x H x W``)."""
    logits = decoded.mask_logits
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().float().cpu().numpy()
    return np.asarray(logits, dtype=np.float32).reshape(np.shape(decoded.mask))
