"""A time-indexed ring buffer of audio, fed by stamped chunks, read as windows ending at a given time.

The AVS node keeps one: each ``AudioChunk`` is pushed with the capture time
of its first sample; for each video frame the window of ``duration`` seconds
ending at the frame's stamp is read back. ROS-free, so it is tested directly.

Rules (each problem raises :class:`AudioChunkError` naming it, and the buffer
keeps its good data):

* NaN/Inf samples, a non-positive or absurd sample rate, a sample count that
  is not a multiple of the channel count: the chunk is rejected;
* a sample-rate or channel-count change: the chunks in the new format are held until ``format_confirm`` (3) in
  a row agree, then the buffer restarts at the new format with them (a real change loses nothing); a chunk back
  in the buffered format before that drops the held ones as strays (one mislabelled chunk no longer wipes the
  good audio). :meth:`AudioRingBuffer.push` returns a line saying what happened, for the node's log;
* the same chunk twice (same ``sequence`` and start time as the last one): rejected as a duplicate;
* a gap in ``sequence`` or in time (lost chunks): the missing span is filled
  with zeros (reported through :attr:`AudioRingBuffer.gaps`), so sample times
  stay right;
* a chunk that jumps in time (it overlaps what is buffered: the clock went back, a bag looped or a new one
  started; or it starts more than ``max_gap_s`` after the buffered audio) is held until ``jump_confirm`` (3)
  contiguous chunks in a row confirm the new timeline, then the buffer restarts with them; a chunk that continues
  the buffered timeline before that drops the held ones as strays, so one chunk stamped in the past no longer
  wipes a live stream.

Thread-safe: the node pushes from its executor thread and reads windows from its frame worker.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .stamps import NS

MAX_RATE = 384_000


class AudioChunkError(ValueError):
    """A chunk cannot be buffered; the message names why."""


class NotEnoughAudio(LookupError):
    """The requested window is not (fully) buffered yet, or already gone.

    ``waiting`` is True when more audio may still complete it (none yet, or the audio ends before the frame);
    False when it never will (the window starts before the buffered audio).
    """

    def __init__(self, message: str, *, waiting: bool = False):
        super().__init__(message)
        self.waiting = waiting


@dataclass
class AudioWindow:
    samples: np.ndarray  # [n, channels] float32
    sample_rate: int
    start_ns: int  # capture time of the first sample
    end_ns: int  # capture time just after the last sample


class AudioRingBuffer:
    """Keep the last ``capacity_s`` seconds of audio with its capture times.

    Args:
        capacity_s: seconds kept; older samples are discarded.
        max_gap_s: gaps longer than this restart the buffer instead of being zero-filled.
        format_confirm: chunks in a row of a new sample rate / channel count before the buffer switches to it.
        jump_confirm: contiguous chunks in a row of a new timeline (a jump in time) before the buffer restarts on it.
    """

    def __init__(
        self, *, capacity_s: float = 10.0, max_gap_s: float = 2.0, format_confirm: int = 3, jump_confirm: int = 3
    ):
        self.capacity_s = float(capacity_s)
        self.max_gap_s = float(max_gap_s)
        self.format_confirm = max(1, int(format_confirm))
        self.jump_confirm = max(1, int(jump_confirm))
        self._jumped: list[tuple[np.ndarray, int, int, int, int | None]] = []  # chunks of a new timeline, unconfirmed
        self._jump_s = 0.0
        self._held: list[tuple[np.ndarray, int, int, int, int | None]] = []  # chunks of a new format, unconfirmed
        self.dropped_chunks = 0  # held chunks dropped as strays
        self._last: tuple[int | None, int] | None = None  # (sequence, start_ns) of the last chunk buffered
        self.rate: int | None = None
        self.channels: int | None = None
        self._data = np.zeros((0, 1), np.float32)
        self._start_ns = 0  # capture time of self._data[0]
        self._next_seq: int | None = None
        self.gaps = 0  # count of zero-filled gaps (lost chunks)
        self.restarts = 0
        self._lock = threading.Lock()

    @property
    def end_ns(self) -> int:
        """Capture time just after the newest buffered sample (0 when empty)."""
        with self._lock:
            return self._end_ns()

    def _end_ns(self) -> int:
        if self.rate is None or len(self._data) == 0:
            return 0
        return self._start_ns + round(len(self._data) * NS / self.rate)

    def _restart(self, rate: int, channels: int, start_ns: int) -> None:
        if self.rate is not None:
            self.restarts += 1
        self.rate, self.channels = rate, channels
        self._data = np.zeros((0, channels), np.float32)
        self._start_ns = start_ns

    def push(
        self, samples, *, sample_rate: int, channels: int, start_ns: int, sequence: int | None = None
    ) -> str | None:
        """Add one chunk of interleaved ``samples`` whose first sample was captured at ``start_ns``.

        Returns:
            ``None`` normally; a line for the log when the chunk's format differs from the buffer's (held, or the
            buffer switched to it) or held chunks were dropped as strays.
        """
        if not 0 < int(sample_rate) <= MAX_RATE:
            raise AudioChunkError(f"sample rate {sample_rate} Hz is out of range (1..{MAX_RATE})")
        if channels <= 0:
            raise AudioChunkError(f"channel count {channels} must be positive")
        flat = np.asarray(samples, dtype=np.float32).reshape(-1)
        if flat.size == 0:
            raise AudioChunkError("empty audio chunk")
        if flat.size % channels:
            raise AudioChunkError(f"{flat.size} samples is not a multiple of {channels} channels")
        if not np.isfinite(flat).all():
            raise AudioChunkError(f"audio chunk {sequence} contains NaN or Inf samples")
        block = flat.reshape(-1, channels)
        rate, channels = int(sample_rate), int(channels)
        with self._lock:
            if sequence is not None and self._last == (sequence, start_ns):
                raise AudioChunkError(f"audio chunk {sequence} is a duplicate of the last one; dropped")
            if self.rate is not None and (rate, channels) != (self.rate, self.channels):
                return self._hold(block, rate, channels, start_ns, sequence)
            note = None
            if self._held:
                note = (
                    f"{len(self._held)} chunk(s) at {self._held[0][1]} Hz x {self._held[0][2]} ch dropped: the "
                    f"audio is back at {self.rate} Hz x {self.channels} ch"
                )
                self.dropped_chunks += len(self._held)
                self._held = []
            if self._is_jump(start_ns):
                return self._hold_jump(block, rate, channels, start_ns, sequence)
            if self._jumped:
                note = (
                    f"{len(self._jumped)} chunk(s) stamped {(self._jumped[0][3] - self._end_ns()) / NS:+.3f} s off the "
                    "buffered audio dropped as strays: the audio goes on where it was"
                )
                self.dropped_chunks += len(self._jumped)
                self._jumped = []
            self._append(block, rate, channels, start_ns, sequence)
            return note

    def _is_jump(self, start_ns: int) -> bool:
        """Whether a chunk starting at ``start_ns`` leaves the buffered timeline (lock held)."""
        if self.rate is None or not len(self._data):
            return False
        gap_ns = start_ns - self._end_ns()
        tolerance = max(NS // self.rate, NS // 1000)  # one sample or 1 ms of clock jitter
        return gap_ns < -tolerance or gap_ns > self.max_gap_s * NS

    def _hold_jump(self, block: np.ndarray, rate: int, channels: int, start_ns: int, sequence: int | None) -> str:
        jump = (start_ns - self._end_ns()) / NS
        if self._jumped:
            prev_block, prev_rate, _, prev_start, _ = self._jumped[-1]
            expected = prev_start + round(len(prev_block) * NS / prev_rate)
            tolerance = max(NS // rate, NS // 1000)
            if abs(start_ns - expected) > tolerance:  # not the same new timeline: start over with this chunk
                self.dropped_chunks += len(self._jumped)
                self._jumped = []
        if not self._jumped:
            self._jump_s = jump
        self._jumped.append((block, rate, channels, start_ns, sequence))
        if len(self._jumped) < self.jump_confirm:
            return (
                f"audio chunk {sequence} is stamped {jump:+.3f} s off the buffered audio; held until "
                f"{self.jump_confirm} chunks in a row confirm the new timeline"
            )
        held, self._jumped = self._jumped, []
        self._restart(held[0][1], held[0][2], held[0][3])
        for chunk in held:
            self._append(*chunk)
        return f"audio time jumped {self._jump_s:+.3f} s; the buffer restarted with the new timeline"

    def _hold(self, block: np.ndarray, rate: int, channels: int, start_ns: int, sequence: int | None) -> str:
        if self._held and (self._held[0][1], self._held[0][2]) != (rate, channels):
            self.dropped_chunks += len(self._held)
            self._held = []
        self._held.append((block, rate, channels, start_ns, sequence))
        if len(self._held) < self.format_confirm:
            return (
                f"audio chunk {sequence} is {rate} Hz x {channels} ch but the buffer holds {self.rate} Hz x "
                f"{self.channels} ch; held until {self.format_confirm} chunks in a row agree"
            )
        old = f"{self.rate} Hz x {self.channels} ch"
        held, self._held = self._held, []
        self.rate = None  # the first held chunk restarts the buffer at the new format
        for chunk in held:
            self._append(*chunk)
        self.restarts += 1
        return f"audio format changed from {old} to {rate} Hz x {channels} ch; the buffer restarted"

    def _append(self, block: np.ndarray, sample_rate: int, channels: int, start_ns: int, sequence: int | None) -> None:
        if self.rate != sample_rate or self.channels != channels:
            self._restart(sample_rate, channels, start_ns)
        elif len(self._data):
            gap_ns = start_ns - self._end_ns()
            tolerance = max(NS // self.rate, NS // 1000)  # one sample or 1 ms of clock jitter
            lost = sequence is not None and self._next_seq is not None and sequence > self._next_seq
            if gap_ns < -tolerance or gap_ns > self.max_gap_s * NS:
                self._restart(self.rate, channels, start_ns)
            elif gap_ns > tolerance or lost:
                n = max(0, round(gap_ns * self.rate / NS))
                self._data = np.concatenate([self._data, np.zeros((n, channels), np.float32)])
                self.gaps += 1
        else:
            self._start_ns = start_ns
        self._data = np.concatenate([self._data, block])
        self._next_seq = None if sequence is None else sequence + 1
        self._last = (sequence, start_ns)
        keep = int(self.capacity_s * self.rate)
        if len(self._data) > keep:
            cut = len(self._data) - keep
            self._data = self._data[cut:]
            self._start_ns += round(cut * NS / self.rate)

    def window(self, end_ns: int, duration_s: float) -> AudioWindow:
        """The ``duration_s`` seconds of audio ending at capture time ``end_ns``.

        Raises:
            NotEnoughAudio: the buffer does not reach ``end_ns`` yet, or its start is already discarded.
        """
        with self._lock:
            return self._window(end_ns, duration_s)

    def _window(self, end_ns: int, duration_s: float) -> AudioWindow:
        if self.rate is None or len(self._data) == 0:
            raise NotEnoughAudio("no audio received yet", waiting=True)
        n = round(duration_s * self.rate)
        stop = round((end_ns - self._start_ns) * self.rate / NS)
        start = stop - n
        if stop > len(self._data):
            behind = (stop - len(self._data)) / self.rate
            raise NotEnoughAudio(f"audio ends {behind:.3f} s before the frame", waiting=True)
        if start < 0:
            raise NotEnoughAudio(f"only {stop / self.rate:.3f} s of audio before the frame, need {duration_s:.3f} s")
        return AudioWindow(
            samples=self._data[start:stop].copy(),
            sample_rate=self.rate,
            start_ns=self._start_ns + round(start * NS / self.rate),
            end_ns=self._start_ns + round(stop * NS / self.rate),
        )
