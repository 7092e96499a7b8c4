"""VGGish front end (avs.audio) against an independent NumPy implementation of the published algorithm.

Tolerance: the torch pipeline runs in float32, the reference in float64; log-mel
values agree to 2e-3 absolute (log units, i.e. about 0.2 % in mel energy).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avs import audio
from avs.errors import AudioError

LOGMEL_ATOL = 2e-3


def reference_log_mel(x: np.ndarray) -> np.ndarray:
    """Published VGGish log-mel (16 kHz input), written from the description, in float64 loops."""
    win, hop, nfft, sr = 400, 160, 512, 16000
    n_frames = 1 + (len(x) - win) // hop
    n = np.arange(win)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win)  # periodic Hann
    frames = np.empty((n_frames, win))
    for i in range(n_frames):
        frames[i] = x[i * hop : i * hop + win] * hann
    mag = np.abs(np.fft.rfft(frames, n=nfft, axis=1))  # n_frames x 257

    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    n_bins = nfft // 2 + 1
    bin_mel = [mel(k * (sr / 2) / (n_bins - 1)) for k in range(n_bins)]
    lo, hi = mel(125.0), mel(7500.0)
    edges = [lo + (hi - lo) * j / 65 for j in range(66)]
    weights = np.zeros((n_bins, 64))
    for b in range(64):
        left, centre, right = edges[b], edges[b + 1], edges[b + 2]
        for k in range(1, n_bins):  # DC bin gets no weight
            m = bin_mel[k]
            if left < m <= centre:
                weights[k, b] = (m - left) / (centre - left)
            elif centre < m < right:
                weights[k, b] = (right - m) / (right - centre)
    return np.log(mag @ weights + 0.01)


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amp * np.sin(2.0 * np.pi * freq * t)


def expected_band(freq: float) -> int:
    """Band whose centre is nearest ``freq`` on the mel scale (from the band definition only)."""
    mel = lambda f: 1127.0 * np.log1p(f / 700.0)  # noqa: E731
    centres = np.linspace(mel(125.0), mel(7500.0), 66)[1:-1]
    return int(np.argmin(np.abs(centres - mel(freq))))


def test_log_mel_matches_numpy_reference_on_sine():
    x = sine(1000.0, 16000, 2.0)
    ours = audio.log_mel_spectrogram(torch.from_numpy(x.astype(np.float32))).numpy()
    ref = reference_log_mel(x)
    assert ours.shape == ref.shape == (1 + (32000 - 400) // 160, 64)
    np.testing.assert_allclose(ours, ref, atol=LOGMEL_ATOL, rtol=0)


def test_log_mel_matches_reference_on_noise():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 16000 + 123)
    ours = audio.log_mel_spectrogram(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(ours, reference_log_mel(x), atol=LOGMEL_ATOL, rtol=0)


def test_1khz_sine_peaks_in_its_mel_band():
    res = audio.waveform_to_examples(sine(1000.0, 16000, 2.0), 16000)
    assert tuple(res.examples.shape) == (2, 1, 96, 64)
    band = int(res.examples.mean(dim=(0, 1, 2)).argmax())
    assert band == expected_band(1000.0)
    # and a 3 kHz sine lands elsewhere, in its own band
    res3 = audio.waveform_to_examples(sine(3000.0, 16000, 2.0), 16000)
    assert int(res3.examples.mean(dim=(0, 1, 2)).argmax()) == expected_band(3000.0) != band


def test_band_centres_are_the_mel_definition():
    centres = audio.mel_band_centers_hz()
    assert centres.shape == (64,)
    assert 125.0 < centres[0] < centres[-1] < 7500.0
    assert int(np.argmin(np.abs(centres - 1000.0))) in (expected_band(1000.0), expected_band(1000.0) + 1)


def test_resampled_stereo_int16_44k_matches_16k_mono():
    x44 = sine(1000.0, 44100, 2.0)
    stereo = np.stack([x44, x44], axis=1)  # N x 2, soundfile layout
    pcm = np.round(stereo * 32767).astype(np.int16)
    res = audio.waveform_to_examples(pcm, 44100)
    assert res.source_rate == 44100 and res.source_channels == 2
    assert res.padded_samples == 0 and res.num_samples == 32000
    ref = audio.waveform_to_examples(sine(1000.0, 16000, 2.0), 16000)
    assert int(res.examples.mean(dim=(0, 1, 2)).argmax()) == expected_band(1000.0)
    # inside the clip (away from the resampler's edges), in the bands around the tone
    band = expected_band(1000.0)
    a = res.examples[0, 0, 10:90, band - 2 : band + 3]
    b = ref.examples[0, 0, 10:90, band - 2 : band + 3]
    assert float((a - b).abs().max()) < 0.05


def test_an_odd_sample_rate_resamples_with_a_small_filter():
    # common rates are exact; an odd one (whose exact ratio would need a ~rate x 16000-tap filter bank) is
    # approximated within 1/1000 of the ratio
    assert audio.resample_ratio(44100) == (441, 160) and audio.resample_ratio(48000) == (3, 1)
    assert audio.resample_ratio(8000) == (1, 2) and audio.resample_ratio(16001) == (1, 1)
    orig, new = audio.resample_ratio(44101)
    assert orig <= audio.MAX_RATIO_DENOMINATOR and abs(new / orig - 16000 / 44101) < 1e-5
    assert audio._resampler(44101).kernel.numel() < 10**6
    t = np.arange(44101) / 44101
    out = audio.resample_to_16k(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 44101).numpy()
    assert abs(len(out) - 16000) <= 2
    assert np.argmax(np.abs(np.fft.rfft(out))) == pytest.approx(1000 * len(out) / 16000, abs=1)


def test_channels_first_and_int_scalings_agree():
    x = sine(440.0, 16000, 1.0)
    ref = audio.waveform_to_examples(x.astype(np.float32), 16000).examples
    two = np.stack([x, x]).astype(np.float32)  # C x N, torchaudio layout
    np.testing.assert_allclose(audio.waveform_to_examples(two, 16000).examples, ref, atol=1e-5)
    i32 = np.round(x * 2**31 * 0.999).astype(np.int32)
    np.testing.assert_allclose(audio.waveform_to_examples(i32, 16000).examples, ref, atol=5e-3)
    t = torch.from_numpy(two)
    np.testing.assert_allclose(audio.waveform_to_examples(t, 16000, layout="channels_first").examples, ref, atol=1e-5)


def test_short_clip_is_padded_and_reported():
    res = audio.waveform_to_examples(sine(1000.0, 16000, 0.5), 16000)
    assert tuple(res.examples.shape) == (1, 1, 96, 64)
    assert res.padded_samples == audio.WINDOW_SAMPLES - 8000
    res5 = audio.waveform_to_examples(sine(1000.0, 16000, 3.0), 16000, num_examples=5)
    assert tuple(res5.examples.shape) == (5, 1, 96, 64)
    assert res5.padded_samples == audio.samples_for_examples(5) - 48000
    # padding is digital silence: the last example is log(0.01) everywhere
    assert torch.allclose(res5.examples[4], torch.full((1, 96, 64), float(np.log(0.01))))
    # a 5 s AVSBench clip gives exactly 5 examples and needs no padding
    full = audio.waveform_to_examples(sine(1000.0, 16000, 5.0), 16000, num_examples=5)
    assert full.padded_samples == 0 and full.examples.shape[0] == 5


def test_window_to_example_uses_the_newest_audio():
    rng = np.random.default_rng(1)
    tone = sine(1000.0, 16000, 0.975)  # exactly WINDOW_SAMPLES
    window = np.concatenate([rng.uniform(-1, 1, 4000), tone])
    res = audio.window_to_example(window, 16000)
    assert tuple(res.examples.shape) == (1, 1, 96, 64) and res.padded_samples == 0
    direct = audio.waveform_to_examples(tone, 16000).examples
    torch.testing.assert_close(res.examples, direct)
    short = audio.window_to_example(tone[:8000], 16000)
    assert short.padded_samples == audio.WINDOW_SAMPLES - 8000
    # padded at the start: the first frames are silence, the last ones hold the tone
    assert torch.allclose(short.examples[0, 0, 0], torch.full((64,), float(np.log(0.01))))
    assert int(short.examples[0, 0, -1].argmax()) == expected_band(1000.0)


@pytest.mark.parametrize(
    "waveform, rate, match",
    [
        (np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, "NaN or Inf"),
        (np.array([0.0, np.inf] * 100, dtype=np.float64), 16000, "NaN or Inf"),
        (np.zeros(0, dtype=np.float32), 16000, "empty"),
        (np.zeros((2, 3, 4), dtype=np.float32), 16000, "shape"),
        (np.zeros(100, dtype=np.complex64), 16000, "dtype"),
        (np.zeros((40, 40), dtype=np.float32), 16000, "cannot tell channels"),
        (np.zeros(1000, dtype=np.float32), 0, "positive"),
        (np.zeros(1000, dtype=np.float32), float("nan"), "positive"),
        (np.zeros(1000, dtype=np.float32), 16.0, "kHz"),
        (np.zeros(1000, dtype=np.float32), 22050.5, "whole number"),
        (np.zeros(1000, dtype=np.float32), "fast", "number"),
    ],
)
def test_bad_audio_gives_clear_error(waveform, rate, match):
    with pytest.raises(AudioError, match=match):
        audio.waveform_to_examples(waveform, rate)
    with pytest.raises(AudioError, match=match):
        audio.window_to_example(waveform, rate)


def test_load_audio_file(tmp_path):
    import soundfile

    x = sine(1000.0, 22050, 1.2)
    path = tmp_path / "clip.wav"
    soundfile.write(str(path), np.stack([x, x], axis=1), 22050, subtype="PCM_16")
    data, rate = audio.load_audio_file(path)
    assert rate == 22050 and data.shape == (len(x), 2)
    res = audio.waveform_to_examples(data, rate)
    assert res.source_rate == 22050 and int(res.examples.mean(dim=(0, 1, 2)).argmax()) == expected_band(1000.0)
    with pytest.raises(AudioError, match="does not exist"):
        audio.load_audio_file(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not a wave file")
    with pytest.raises(AudioError, match="cannot read"):
        audio.load_audio_file(bad)
