"""Robust AVS over a live stream: audio chunks in, frames in, one result per frame out (no ROS).

:class:`AVSStream` is the counterpart of :class:`trackgpt.tracker.OnlineTracker`: the one place for the rules
that pair audio with frames, used by ``avs_node`` and by ``replay-eval``'s library path alike.

Audio (:meth:`AVSStream.push_audio`): chunks stamped with the capture time of their first sample go into an
:class:`~perception_common.audio_buffer.AudioRingBuffer` (its rules: rejected NaN / odd-format / duplicate
chunks, held format changes, zero-filled gaps, a restart on a jump in time once three chunks confirm the new
timeline). A gap in ``sequence`` is counted as lost
chunks, a device overflow and every buffer note come back as lines for the caller's log.

Frames (:meth:`AVSStream.process`): each frame is paired with the ``window_seconds`` of audio ending at its stamp.

* late audio: when the window is not buffered yet (the audio ends before the frame, or none arrived), the frame
  waits up to ``max_audio_wait`` seconds for it (audio comes on another topic, so it may lag the frame); 0 never
  waits (sequential runs, where all earlier audio is already pushed);
* a frame that goes back in time by more than the window (a new or looped bag, a restarted camera clock) while the
  audio buffer did not restart waits up to ``max_audio_wait`` for the audio to restart with it; if it does not (a
  late frame of the same timeline) the buffered audio is used: nothing is dropped;
* no window (not enough audio, or the model refuses the input): the result has no prediction and says why; the
  caller reports it (``avs_node`` publishes score NaN): never silently dropped.

Clips (``clip_frames > 1``, the model's ``config.clip_frames`` by default: 5 for imported AVSBench models, 1 for the
shipped ones): TPAVI attends over the frame and up to ``clip_frames - 1`` kept earlier frames, each with its own
audio, as over AVSBench's clips of five frames one second apart. A frame is kept when it comes at least
``clip_stride_s`` (the model's, 1 s) after the last kept one, so the clip spans the same time at any camera rate;
only the per-frame work (backbone, ASPP, audio embedding) of kept frames is stored, never recomputed. The output for
a frame is then upstream's output for the last frame of the clip that ends with it (tested against AVSBench's own
model). The first frames after a start, a time jump or a change of frame size attend over fewer frames.

Thread-safe in the node's pattern: audio pushed from one thread, frames processed in another.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception_common.audio_buffer import AudioChunkError, AudioRingBuffer, AudioWindow, NotEnoughAudio
from perception_common.stamps import NS

from .errors import AVSError


@dataclass(frozen=True)
class StreamResult:
    """The outcome of one frame.

    Attributes:
        stamp_ns: the frame's stamp (the end of its audio window).
        window: the audio window used (None when there was none).
        prediction: the model's :class:`~avs.model.Prediction` (None without a window, or when the model refused).
        why: why there is no prediction.
        notes: lines for the log (a time jump and what the audio did).
    """

    stamp_ns: int
    window: AudioWindow | None = None
    prediction: Any = None
    why: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def sounding(self) -> bool:
        return self.prediction is not None and bool(self.prediction.sounding)


@dataclass
class StreamCounters:
    """What the stream has seen so far (the node's diagnostics)."""

    lost_chunks: int = 0
    bad_chunks: int = 0
    no_audio_frames: int = 0
    sounding_frames: int = 0
    frames: int = 0


class AVSStream:
    """Pair a stream of audio chunks with a stream of frames and run an AVS model on each frame.

    Args:
        model: an :class:`avs.AVSModel` (anything with its ``predict``).
        threshold: gate threshold in (0, 1); None = the model's own.
        window_seconds: audio window ending at each frame's stamp.
        buffer_seconds: audio kept.
        max_audio_wait: seconds a frame waits for late audio (and for the audio to follow a backward time jump).
        clip_frames: frames TPAVI attends over together (see the module docstring); None = the model's own.
        clip_stride_s: seconds between kept frames; None = the model's own.
        clock, sleep: injectable for tests.
    """

    def __init__(
        self,
        model: Any,
        *,
        threshold: float | None = None,
        window_seconds: float = 1.0,
        buffer_seconds: float = 10.0,
        max_audio_wait: float = 0.0,
        clip_frames: int | None = None,
        clip_stride_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1) or None (the model's), got {threshold}")
        if not window_seconds > 0 or not np.isfinite(window_seconds):
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        if not buffer_seconds >= window_seconds:
            raise ValueError(f"buffer_seconds ({buffer_seconds}) must be at least window_seconds ({window_seconds})")
        if not max_audio_wait >= 0:
            raise ValueError(f"max_audio_wait must be >= 0, got {max_audio_wait}")
        config = model.config
        clip_frames = int(getattr(config, "clip_frames", 1)) if clip_frames is None else clip_frames
        clip_stride_s = float(getattr(config, "clip_stride_s", 1.0)) if clip_stride_s is None else clip_stride_s
        if not isinstance(clip_frames, int) or clip_frames < 1:
            raise ValueError(f"clip_frames must be an int >= 1 or None (the model's), got {clip_frames!r}")
        if not clip_stride_s > 0 or not np.isfinite(clip_stride_s):
            raise ValueError(f"clip_stride_s must be positive or None (the model's), got {clip_stride_s}")
        self.clip_frames, self.clip_stride_s = clip_frames, float(clip_stride_s)
        self._kept: deque = deque(maxlen=max(1, clip_frames - 1))  # (stamp_ns, frame shape, FrameFeatures)
        self.model = model
        self.threshold = float(model.config.threshold) if threshold is None else float(threshold)
        self.window_seconds = float(window_seconds)
        self.max_audio_wait = float(max_audio_wait)
        self.audio = AudioRingBuffer(capacity_s=buffer_seconds)
        self.counters = StreamCounters()
        self._clock, self._sleep = clock, sleep
        self._last_seq: int | None = None
        self._last_frame_ns: int | None = None
        self._restarts_seen = 0

    # ------------------------------------------------------------------ audio
    def push_audio(
        self,
        samples: Any,
        *,
        sample_rate: int,
        channels: int,
        start_ns: int,
        sequence: int | None = None,
        overflow: bool = False,
        samples_per_channel: int | None = None,
    ) -> list[str]:
        """Buffer one chunk; returns the lines worth a warning (lost chunks, overflow, rejection, format notes, a
        ``samples_per_channel`` that disagrees with the samples carried: the samples are used)."""
        lines = []
        if samples_per_channel is not None and channels > 0:
            carried = int(np.size(samples)) // channels
            if int(samples_per_channel) != carried:
                lines.append(
                    f"audio chunk {sequence} says {samples_per_channel} samples per channel but carries {carried}; "
                    "the samples carried are used"
                )
        if sequence is not None and self._last_seq is not None and sequence > self._last_seq + 1:
            lost = sequence - self._last_seq - 1
            self.counters.lost_chunks += lost
            lines.append(f"{lost} audio chunk(s) lost before sequence {sequence}; zero-filled")
        if sequence is not None:
            self._last_seq = sequence
        if overflow:
            lines.append("microphone reported an input overflow (samples dropped at the device)")
        try:
            note = self.audio.push(
                samples, sample_rate=sample_rate, channels=channels, start_ns=start_ns, sequence=sequence
            )
            if note:
                lines.append(note)
        except AudioChunkError as exc:
            self.counters.bad_chunks += 1
            lines.append(f"audio chunk {sequence} rejected: {exc}")
        return lines

    # ------------------------------------------------------------------ frames
    def process(self, frame: np.ndarray, stamp_ns: int, *, stop: threading.Event | None = None) -> StreamResult:
        """Pair ``frame`` (RGB) with the audio window ending at ``stamp_ns`` and run the model.

        ``stop`` (set on shutdown) ends any wait for audio at once. A frame or audio window the model refuses
        (:class:`~avs.errors.AVSError`) gives a result without prediction whose ``why`` says so.
        """
        self.counters.frames += 1
        notes = self._time_jump(stamp_ns, stop)
        window, why = self._window(stamp_ns, stop)
        prediction = None
        if window is not None:
            history = self._history(frame, stamp_ns)
            try:
                prediction = self.model.predict(
                    frame, window.samples, window.sample_rate, threshold=self.threshold, layout="channels_last",
                    **({} if history is None else {"history": history}),
                )
            except AVSError as exc:  # the model refused this input (frame or audio): reported, not raised
                why = str(exc)
            else:
                self._keep(frame, stamp_ns, prediction)
        if prediction is None:
            self.counters.no_audio_frames += 1
        elif prediction.sounding:
            self.counters.sounding_frames += 1
        return StreamResult(stamp_ns, window, prediction, why, tuple(notes))

    def _history(self, frame: np.ndarray, stamp_ns: int) -> list | None:
        """The kept earlier frames' features for this frame's clip (None when frames run alone)."""
        if self.clip_frames == 1:
            return None
        if self._kept and (self._kept[-1][1] != np.shape(frame) or stamp_ns < self._kept[-1][0]):
            self._kept.clear()  # a new frame size, or time went back: start a new clip
        return [features for _, _, features in self._kept]

    def _keep(self, frame: np.ndarray, stamp_ns: int, prediction: Any) -> None:
        features = getattr(prediction, "features", None)
        if self.clip_frames == 1 or features is None:
            return
        # a frame is kept once the stride has passed since the last kept one (20 ms slack for stamp jitter)
        if not self._kept or stamp_ns - self._kept[-1][0] >= self.clip_stride_s * NS - 20_000_000:
            self._kept.append((stamp_ns, np.shape(frame), features))

    def _window(self, end_ns: int, stop: threading.Event | None) -> tuple[AudioWindow | None, str | None]:
        deadline = self._clock() + self.max_audio_wait
        while True:
            try:
                return self.audio.window(end_ns, self.window_seconds), None
            except NotEnoughAudio as exc:
                if not exc.waiting or self._clock() >= deadline or (stop is not None and stop.is_set()):
                    return None, str(exc)
                self._sleep(0.005)

    def _time_jump(self, end_ns: int, stop: threading.Event | None) -> list[str]:
        last, self._last_frame_ns = self._last_frame_ns, end_ns
        seen = self._restarts_seen
        notes = []
        if last is not None and end_ns < last - self.window_seconds * NS and self.audio.restarts == seen:
            deadline = self._clock() + self.max_audio_wait
            while self.audio.restarts == seen and self._clock() < deadline and not (stop is not None and stop.is_set()):
                self._sleep(0.005)
            restarted = self.audio.restarts != seen
            notes.append(
                f"frame time went back {(last - end_ns) / NS:.2f} s: "
                + ("audio restarted with it" if restarted else "no new audio; the buffered audio is used")
            )
        self._restarts_seen = self.audio.restarts
        return notes
