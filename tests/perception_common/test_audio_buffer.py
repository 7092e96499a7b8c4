"""The AVS node's audio ring buffer: windows by capture time, gaps, format changes, bad chunks."""

import numpy as np
import pytest

from perception_common.audio_buffer import NS, AudioChunkError, AudioRingBuffer, NotEnoughAudio


def _push_ramp(buf, start_ns, n_chunks, chunk=160, rate=16000, first=0, seq0=0):
    for k in range(n_chunks):
        vals = (np.arange(chunk) + first + k * chunk).astype(np.float32) / 1e5
        t = start_ns + round(k * chunk * NS / rate)
        buf.push(vals, sample_rate=rate, channels=1, start_ns=t, sequence=seq0 + k)


def test_window_ends_at_the_requested_time():
    buf = AudioRingBuffer(capacity_s=5)
    t0 = 1_000 * NS
    _push_ramp(buf, t0, 200)  # 2 s
    w = buf.window(t0 + NS + NS // 2, 0.96)  # ends at 1.5 s
    assert w.samples.shape == (15360, 1)
    # sample index of the window end is 1.5 s * 16000 = 24000 -> last sample value 23999
    assert w.samples[-1, 0] == pytest.approx(23999 / 1e5)
    assert w.samples[0, 0] == pytest.approx((24000 - 15360) / 1e5)
    assert w.end_ns == t0 + 3 * NS // 2 and w.start_ns == t0 + 3 * NS // 2 - round(0.96 * NS)


def test_not_enough_audio_before_and_after():
    buf = AudioRingBuffer()
    with pytest.raises(NotEnoughAudio, match="no audio"):
        buf.window(0, 0.96)
    _push_ramp(buf, 10 * NS, 50)  # 0.5 s
    with pytest.raises(NotEnoughAudio, match="need 0.960"):
        buf.window(10 * NS + NS // 2, 0.96)
    with pytest.raises(NotEnoughAudio, match="before the frame"):
        buf.window(12 * NS, 0.1)


def test_lost_chunk_is_zero_filled_and_counted():
    buf = AudioRingBuffer()
    _push_ramp(buf, 0, 10)
    # skip chunk 10 (sequence and time): chunk 11 starts 2 chunks later
    vals = np.ones(160, np.float32)
    buf.push(vals, sample_rate=16000, channels=1, start_ns=round(11 * 160 * NS / 16000), sequence=11)
    assert buf.gaps == 1
    w = buf.window(round(12 * 160 * NS / 16000), 2 * 160 / 16000)
    np.testing.assert_array_equal(w.samples[:160, 0], 0.0)
    np.testing.assert_array_equal(w.samples[160:, 0], 1.0)


def test_capacity_and_format_change():
    buf = AudioRingBuffer(capacity_s=1.0)
    _push_ramp(buf, 0, 300)  # 3 s pushed, 1 s kept
    with pytest.raises(NotEnoughAudio):
        buf.window(round(1.5 * NS), 0.96)
    assert buf.window(3 * NS, 0.96).samples.shape[0] == 15360
    # a real format change: held until three chunks in a row agree, then the buffer restarts with all three
    for k in range(3):
        note = buf.push(np.full(882, k, np.float32), sample_rate=44100, channels=2, start_ns=3 * NS + k * NS // 100)
        assert buf.rate == (44100 if k == 2 else 16000)
        assert ("held" if k < 2 else "changed from 16000 Hz x 1 ch to 44100 Hz x 2 ch") in note
    assert buf.channels == 2 and buf.restarts == 1
    w = buf.window(3 * NS + 3 * NS // 100, 0.03)
    np.testing.assert_array_equal(w.samples[::441, 0], [0, 1, 2])


def test_a_stray_chunk_in_another_format_does_not_wipe_the_buffer():
    buf = AudioRingBuffer()
    _push_ramp(buf, 0, 200)  # 2 s of 16 kHz audio
    note = buf.push(np.zeros(100, np.float32), sample_rate=44100, channels=1, start_ns=2 * NS, sequence=200)
    assert "44100 Hz x 1 ch" in note and "16000 Hz x 1 ch" in note
    assert buf.push(np.zeros(160, np.float32), sample_rate=16000, channels=1, start_ns=2 * NS, sequence=201)
    assert buf.rate == 16000 and buf.restarts == 0 and buf.dropped_chunks == 1
    assert buf.window(2 * NS + NS // 100, 2.0).samples.shape == (32000, 1)  # the 2 s before are all still there


def test_a_duplicate_chunk_is_rejected_and_good_data_kept():
    buf = AudioRingBuffer()
    _push_ramp(buf, 0, 100)
    last = round(99 * 160 * NS / 16000)
    with pytest.raises(AudioChunkError, match="duplicate"):
        buf.push(np.zeros(160, np.float32), sample_rate=16000, channels=1, start_ns=last, sequence=99)
    assert buf.restarts == 0 and buf.window(NS, 1.0).samples.shape == (16000, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": [np.nan, 0.0]}, "NaN"),
        ({"sample_rate": 0}, "out of range"),
        ({"channels": 2, "samples": [0.0, 0.1, 0.2]}, "multiple of 2"),
        ({"samples": []}, "empty"),
    ],
)
def test_bad_chunks_are_rejected_and_good_data_kept(kwargs, match):
    buf = AudioRingBuffer()
    _push_ramp(buf, 0, 100)
    before = buf.window(NS, 0.5).samples.copy()
    args = {"samples": [0.0, 0.1], "sample_rate": 16000, "channels": 1, "start_ns": NS, "sequence": 100} | kwargs
    samples = args.pop("samples")
    with pytest.raises(AudioChunkError, match=match):
        buf.push(samples, **args)
    np.testing.assert_array_equal(buf.window(NS, 0.5).samples, before)


def test_one_chunk_stamped_in_the_past_does_not_wipe_a_live_stream():
    buf = AudioRingBuffer()
    _push_ramp(buf, 10 * NS, 200)  # 2 s of live audio
    note = buf.push(np.zeros(160, np.float32), sample_rate=16000, channels=1, start_ns=5 * NS, sequence=200)
    assert "-7.000 s off the buffered audio" in note and "held" in note
    _push_ramp(buf, 12 * NS, 1, first=200 * 160, seq0=201)  # the live stream goes on
    assert buf.restarts == 0 and buf.dropped_chunks == 1
    assert buf.window(12 * NS + NS // 100, 2.0).samples.shape == (32000, 1)  # nothing of the 2 s was lost


def test_a_new_timeline_restarts_the_buffer_once_three_chunks_confirm_it():
    buf = AudioRingBuffer()
    _push_ramp(buf, 10 * NS, 200)
    notes = [buf.push(np.full(160, 0.5, np.float32), sample_rate=16000, channels=1,
                      start_ns=round(k * 160 * NS / 16000), sequence=k) for k in range(3)]  # a looped bag: t = 0
    assert "held" in notes[0] and "held" in notes[1] and "restarted with the new timeline" in notes[2]
    assert buf.restarts == 1
    w = buf.window(round(3 * 160 * NS / 16000), 3 * 160 / 16000)  # all three confirming chunks are kept
    np.testing.assert_array_equal(w.samples[:, 0], 0.5)
    # a real pause longer than max_gap_s is a new timeline too, confirmed the same way
    later = 100 * NS
    for k in range(3):
        buf.push(np.ones(160, np.float32), sample_rate=16000, channels=1, start_ns=later + round(k * 160 * NS / 16000))
    assert buf.restarts == 2 and buf.window(later + round(3 * 160 * NS / 16000), 0.03).samples.shape == (480, 1)


def test_jumps_that_do_not_follow_each_other_are_strays():
    buf = AudioRingBuffer()
    _push_ramp(buf, 10 * NS, 100)
    for start in (3 * NS, 50 * NS, 1 * NS):  # three single chunks, each somewhere else
        assert "held" in buf.push(np.zeros(160, np.float32), sample_rate=16000, channels=1, start_ns=start)
    assert buf.restarts == 0 and buf.dropped_chunks == 2
