"""avs.stream.AVSStream: the audio-to-frame pairing rules that avs_node and replay-eval's library path share."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
import pytest

from avs.errors import AudioError
from avs.stream import AVSStream

NS = 1_000_000_000
RATE = 16_000
CHUNK = 1600  # 0.1 s


@dataclass
class Config:
    threshold: float = 0.5


@dataclass
class Pred:
    mask: np.ndarray
    score: float
    sounding: bool


class LoudnessModel:
    """Sounding when the window's RMS is above 0.1; records each window it was given."""

    config = Config()

    def __init__(self, refuse: bool = False):
        self.refuse = refuse
        self.windows: list[tuple[np.ndarray, int, str]] = []

    def predict(self, frame, waveform, sample_rate, *, threshold=None, layout="auto"):
        if self.refuse:
            raise AudioError("audio window is silent beyond repair")
        self.windows.append((np.asarray(waveform), sample_rate, layout))
        rms = float(np.sqrt(np.mean(np.square(waveform))))
        score = min(1.0, rms * 5)
        sounding = score > threshold
        return Pred(np.ones(frame.shape[:2], bool) if sounding else np.zeros(frame.shape[:2], bool), score, sounding)


def chunk(level: float, n: int = CHUNK) -> np.ndarray:
    return np.full(n, level, np.float32)


def feed(stream: AVSStream, start_s: float, seconds: float, level: float, first_seq: int = 0) -> int:
    """Push ``seconds`` of constant audio starting at ``start_s``; returns the next sequence number."""
    seq = first_seq
    for k in range(round(seconds * RATE / CHUNK)):
        lines = stream.push_audio(chunk(level), sample_rate=RATE, channels=1,
                                  start_ns=round((start_s + k * CHUNK / RATE) * NS), sequence=seq)
        assert not any("rejected" in line or "lost" in line for line in lines), lines
        seq += 1
    return seq


FRAME = np.zeros((8, 10, 3), np.uint8)


def test_each_frame_gets_the_window_ending_at_its_stamp():
    model = LoudnessModel()
    stream = AVSStream(model, window_seconds=1.0)
    feed(stream, 0.0, 2.0, 0.5)
    result = stream.process(FRAME, int(1.5 * NS))
    assert result.window.end_ns == int(1.5 * NS) and result.window.start_ns == int(0.5 * NS)
    assert result.sounding and result.prediction.mask.all()
    samples, rate, layout = model.windows[0]
    assert samples.shape == (RATE, 1) and rate == RATE and layout == "channels_last"
    assert stream.threshold == 0.5 and stream.counters.sounding_frames == 1


def test_a_frame_without_audio_is_reported_not_dropped():
    stream = AVSStream(LoudnessModel())
    result = stream.process(FRAME, NS)
    assert result.prediction is None and "no audio" in result.why
    feed(stream, 0.0, 0.5, 0.5)
    early = stream.process(FRAME, int(0.4 * NS))  # only 0.4 s before the frame, 1 s needed
    assert early.prediction is None and "need 1.000 s" in early.why
    assert stream.counters.no_audio_frames == 2


def test_the_model_refusing_the_window_gives_a_reason():
    stream = AVSStream(LoudnessModel(refuse=True))
    feed(stream, 0.0, 1.5, 0.5)
    result = stream.process(FRAME, NS)
    assert result.prediction is None and "beyond repair" in result.why


def test_late_audio_is_waited_for_up_to_max_audio_wait():
    stream = AVSStream(LoudnessModel(), max_audio_wait=2.0)
    feed(stream, 0.0, 0.9, 0.5, first_seq=0)
    late = threading.Timer(0.2, lambda: feed(stream, 0.9, 0.3, 0.5, first_seq=9))
    late.start()
    result = stream.process(FRAME, NS)  # the last 0.1 s arrives 0.2 s after the frame
    late.join()
    assert result.prediction is not None and result.window.end_ns == NS


def test_a_stop_event_ends_the_wait_at_once():
    clock = iter(range(1000))
    stream = AVSStream(LoudnessModel(), max_audio_wait=60.0, clock=lambda: next(clock), sleep=lambda s: None)
    stop = threading.Event()
    stop.set()
    result = stream.process(FRAME, NS, stop=stop)
    assert result.prediction is None and next(clock) < 5


def test_lost_chunks_overflow_and_bad_chunks_are_counted_and_reported():
    stream = AVSStream(LoudnessModel())
    stream.push_audio(chunk(0.1), sample_rate=RATE, channels=1, start_ns=0, sequence=0)
    lines = stream.push_audio(chunk(0.1), sample_rate=RATE, channels=1, start_ns=3 * CHUNK * NS // RATE,
                              sequence=3, overflow=True)
    assert any("2 audio chunk(s) lost before sequence 3" in ln for ln in lines)
    assert any("overflow" in ln for ln in lines)
    bad = stream.push_audio(np.array([np.nan] * 10, np.float32), sample_rate=RATE, channels=1,
                            start_ns=4 * CHUNK * NS // RATE, sequence=4)
    assert bad and "rejected" in bad[0]
    assert stream.counters.lost_chunks == 2 and stream.counters.bad_chunks == 1


def test_a_backward_time_jump_waits_for_the_audio_to_follow_and_says_what_happened():
    stream = AVSStream(LoudnessModel(), max_audio_wait=2.0)
    feed(stream, 100.0, 2.0, 0.5)
    assert stream.process(FRAME, int(101.5 * NS)).sounding
    # a looped bag: frames start again at t = 1.5 s; their audio (silence) arrives 0.1 s later
    threading.Timer(0.1, lambda: feed(stream, 0.0, 2.0, 0.0, first_seq=0)).start()
    result = stream.process(FRAME, int(1.5 * NS))
    assert "audio restarted with it" in result.notes[0]
    assert result.prediction is not None and not result.sounding  # the new timeline's silence, not the old sound
    # a late frame of the same timeline (no new audio): the buffer is used as it is
    stream2 = AVSStream(LoudnessModel(), max_audio_wait=0.05)
    feed(stream2, 0.0, 4.0, 0.5)
    stream2.process(FRAME, int(3.5 * NS))
    late = stream2.process(FRAME, int(1.5 * NS))
    assert "no new audio" in late.notes[0] and late.sounding


@pytest.mark.parametrize(
    "kwargs, message",
    [({"threshold": 1.0}, "threshold"), ({"window_seconds": 0.0}, "window_seconds"),
     ({"window_seconds": 2.0, "buffer_seconds": 1.0}, "buffer_seconds"), ({"max_audio_wait": -1.0}, "max_audio_wait")],
)
def test_settings_that_cannot_work_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AVSStream(LoudnessModel(), **kwargs)


def test_a_chunk_whose_count_disagrees_with_its_samples_is_warned_about_and_used():
    stream = AVSStream(LoudnessModel())
    lines = stream.push_audio(chunk(0.5), sample_rate=RATE, channels=1, start_ns=0, sequence=0,
                              samples_per_channel=CHUNK + 7)
    assert lines == [f"audio chunk 0 says {CHUNK + 7} samples per channel but carries {CHUNK}; the samples carried "
                     "are used"]
    assert stream.audio.end_ns == CHUNK * NS // RATE  # buffered as carried
    assert stream.push_audio(chunk(0.5), sample_rate=RATE, channels=1, start_ns=CHUNK * NS // RATE, sequence=1,
                             samples_per_channel=CHUNK) == []


def test_a_window_that_can_never_fill_is_not_waited_for():
    """Too little audio BEFORE the frame (the stream's first second) cannot be completed by later audio: no wait."""
    ticks = []
    clock = iter(float(i) for i in range(1000))
    stream = AVSStream(LoudnessModel(), max_audio_wait=30.0, clock=lambda: next(clock), sleep=ticks.append)
    feed(stream, 0.0, 0.5, 0.5)
    result = stream.process(FRAME, int(0.4 * NS))
    assert result.prediction is None and "need 1.000 s" in result.why and ticks == []
    waiting = stream.process(FRAME, 2 * NS)  # audio ends before this frame: that one is waited for
    assert waiting.prediction is None and "before the frame" in waiting.why and ticks


class ClipSpy:
    """A real tiny AVS model with ``clip_frames`` 3; records how many earlier frames each call attended over."""

    def __init__(self, clip_frames: int = 3):
        from avs.model import build_model

        self.model = build_model("tiny", clip_frames=clip_frames, gate="off").eval()
        self.config = self.model.config
        self.history_lengths: list[int | None] = []

    def predict(self, *args, history=None, **kwargs):
        self.history_lengths.append(None if history is None else len(history))
        return self.model.predict(*args, history=history, **kwargs)


def test_clips_keep_frames_one_stride_apart_and_restart_on_a_time_jump_or_a_new_size():
    spy = ClipSpy(clip_frames=3)
    stream = AVSStream(spy)
    assert stream.clip_frames == 3 and stream.clip_stride_s == 1.0
    feed(stream, 0.0, 6.0, 0.2)
    frame = np.zeros((48, 64, 3), np.uint8)
    for k in range(25):  # 5 frames per second from 1.0 s to 5.8 s
        result = stream.process(frame, round((1.0 + 0.2 * k) * NS))
        assert result.prediction is not None and result.prediction.features is not None
    # kept: 1.0, 2.0, then 3.0 replaces nothing beyond maxlen 2 -> every frame after 2.0 s attends over 2
    assert spy.history_lengths[:6] == [0, 1, 1, 1, 1, 1]
    assert spy.history_lengths[6:] == [2] * 19
    kept = [stamp / NS for stamp, _, _ in stream._kept]
    assert kept == pytest.approx([4.0, 5.0])
    stream.process(np.zeros((32, 40, 3), np.uint8), round(5.9 * NS))  # another frame size: a new clip
    assert spy.history_lengths[-1] == 0
    stream.process(frame, round(2.5 * NS))  # time went back: a new clip
    assert spy.history_lengths[-1] == 0


def test_a_model_with_one_frame_clips_is_called_without_history():
    spy = ClipSpy(clip_frames=1)
    stream = AVSStream(spy)
    feed(stream, 0.0, 2.0, 0.2)
    stream.process(np.zeros((48, 64, 3), np.uint8), round(1.5 * NS))
    assert spy.history_lengths == [None]
    assert stream._kept == deque(maxlen=1)


def test_clip_settings_are_checked():
    with pytest.raises(ValueError, match="clip_frames"):
        AVSStream(ClipSpy(), clip_frames=0)
    with pytest.raises(ValueError, match="clip_stride_s"):
        AVSStream(ClipSpy(), clip_stride_s=-1.0)
