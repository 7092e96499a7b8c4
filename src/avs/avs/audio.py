"""VGGish log-mel front end (the published parameters), with torchaudio.

The published VGGish input pipeline (Hershey et al. 2017; the AudioSet
``vggish_input.py`` that AVSBench uses):

* mono, resampled to 16 kHz;
* STFT magnitude with a 25 ms periodic Hann window (400 samples), 10 ms hop
  (160 samples), FFT length 512 (the next power of two), no centring;
* 64 mel bands on the HTK mel scale between 125 and 7500 Hz;
* ``log(mel + 0.01)``;
* examples of 96 frames (0.96 s) with a hop of 96 frames, so one example per
  video second: ``T x 1 x 96 x 64``.

Choices made here (the papers leave them open; each is also said where it is
made):

* Resampling and the STFT are torchaudio's (``torchaudio.functional.resample``
  with its default windowed-sinc kernel; ``torchaudio.transforms.Spectrogram``).
  ``torch.stft`` centres a 400-sample window inside a 512-sample frame, so the
  signal is padded by 56 samples on each side; this makes frame ``k`` cover
  exactly samples ``[160 k, 160 k + 400)`` as in VGGish (the magnitude does not
  depend on where in the FFT buffer the windowed samples sit).
* The mel matrix is built here, not with ``torchaudio.functional.melscale_fbanks``:
  torchaudio places the triangles in Hz, VGGish places them in mel (and zeroes
  the DC bin). We follow VGGish so that pretrained VGGish weights see the input
  they were trained on.
* One 96-frame example needs ``400 + 95 * 160 = 15600`` samples (0.975 s), not
  15360: a "0.96 s window" is 15600 samples here (:data:`WINDOW_SAMPLES`).
* Integer input is scaled to [-1, 1] (int16 / 32768, int32 / 2**31, uint8 as
  offset binary); float input is taken as it is.
* Stereo or multi-channel input is mixed down by averaging the channels.
* Short input is padded with zeros (digital silence) and the padding is
  reported: clips at the end, the per-frame window at the start (the window
  ends at the frame's time stamp, so the newest sample stays last).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torchaudio

from .errors import AudioError

SAMPLE_RATE = 16000
STFT_WINDOW_SAMPLES = 400
STFT_HOP_SAMPLES = 160
FFT_LENGTH = 512
NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
EXAMPLE_HOP_FRAMES = 96
#: samples (at 16 kHz) that one 96 x 64 example needs: 15600 = 0.975 s.
WINDOW_SAMPLES = STFT_WINDOW_SAMPLES + (EXAMPLE_FRAMES - 1) * STFT_HOP_SAMPLES
#: seconds of audio one example needs (0.975); a node should buffer at least this much per frame.
WINDOW_SECONDS = WINDOW_SAMPLES / SAMPLE_RATE
#: samples between the starts of consecutive examples: 15360 = 0.96 s.
EXAMPLE_HOP_SAMPLES = EXAMPLE_HOP_FRAMES * STFT_HOP_SAMPLES
#: lowest sample rate accepted; anything lower is almost surely a unit mistake (kHz for Hz).
MIN_SAMPLE_RATE = 1000
_STFT_PAD = (FFT_LENGTH - STFT_WINDOW_SAMPLES) // 2  # 56


@dataclass
class AudioExamples:
    """Log-mel examples and what was done to the audio to make them.

    Attributes:
        examples: ``T x 1 x 96 x 64`` float32 log-mel examples.
        source_rate: sample rate of the input in Hz (before resampling to 16 kHz).
        source_channels: number of channels of the input (1 for mono).
        padded_samples: zeros added at 16 kHz to reach whole examples (0 if none).
        num_samples: length of the input after resampling to 16 kHz, before padding.
    """

    examples: torch.Tensor
    source_rate: int
    source_channels: int
    padded_samples: int
    num_samples: int

    @property
    def padded_seconds(self) -> float:
        return self.padded_samples / SAMPLE_RATE


def hertz_to_mel(freq: np.ndarray | float) -> np.ndarray | float:
    """HTK mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=4)
def mel_matrix(
    *,
    num_mel_bands: int = NUM_MEL_BANDS,
    num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
    sample_rate: int = SAMPLE_RATE,
    lower_hz: float = MEL_MIN_HZ,
    upper_hz: float = MEL_MAX_HZ,
) -> torch.Tensor:
    """VGGish mel weight matrix, ``num_spectrogram_bins x num_mel_bands`` (float32).

    Triangles are spaced evenly and are linear on the mel scale; the DC bin gets
    no weight. The matrix is cached; do not modify it in place.
    """
    if not 0.0 <= lower_hz < upper_hz <= sample_rate / 2:
        raise AudioError(f"mel range must satisfy 0 <= lower ({lower_hz}) < upper ({upper_hz}) <= Nyquist")
    bins_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins))
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_mel_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower[None, :]) / (center - lower)[None, :]
    falling = (upper[None, :] - bins_mel[:, None]) / (upper - center)[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    out = torch.from_numpy(weights.astype(np.float32))
    out.requires_grad_(False)
    return out


def mel_band_centers_hz() -> np.ndarray:
    """Centre frequency of each of the 64 bands in Hz (for plots and tests)."""
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), NUM_MEL_BANDS + 2)
    return 700.0 * np.expm1(edges[1:-1] / 1127.0)


@functools.lru_cache(maxsize=1)
def _spectrogram() -> torchaudio.transforms.Spectrogram:
    return torchaudio.transforms.Spectrogram(
        n_fft=FFT_LENGTH,
        win_length=STFT_WINDOW_SAMPLES,
        hop_length=STFT_HOP_SAMPLES,
        window_fn=torch.hann_window,  # periodic, as VGGish's periodic_hann
        center=False,
        power=1.0,  # magnitude, not power
    )


#: Largest reduced denominator of the 16 kHz / source-rate ratio that is resampled exactly. Every common rate
#: (8, 11.025, 22.05, 32, 44.1, 48, 96, 192 kHz ...) reduces far below it; an odd rate such as 16001 Hz would give
#: torchaudio a filter bank of ~rate x 16000 taps (8.6 GB and 12 s at 16001 Hz), so its ratio is approximated
#: instead (16001 -> 16000 Hz: a 0.006 % pitch change, nothing a log-mel spectrogram shows).
MAX_RATIO_DENOMINATOR = 1000


def resample_ratio(source_rate: int) -> tuple[int, int]:
    """``(orig_freq, new_freq)``: the 16 kHz / ``source_rate`` ratio reduced, its denominator at most
    :data:`MAX_RATIO_DENOMINATOR` (exact for every common rate)."""
    ratio = Fraction(SAMPLE_RATE, int(source_rate)).limit_denominator(MAX_RATIO_DENOMINATOR)
    return ratio.denominator, ratio.numerator


@functools.lru_cache(maxsize=8)
def _resampler(source_rate: int) -> torchaudio.transforms.Resample:
    orig, new = resample_ratio(source_rate)
    return torchaudio.transforms.Resample(orig_freq=orig, new_freq=new)


def check_sample_rate(sample_rate) -> int:
    """Return ``sample_rate`` as an int, or raise :class:`AudioError` naming the problem."""
    try:
        rate = float(sample_rate)
    except (TypeError, ValueError):
        raise AudioError(f"sample_rate must be a number in Hz, got {sample_rate!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise AudioError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    if abs(rate - round(rate)) > 1e-6:
        raise AudioError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    if rate < MIN_SAMPLE_RATE:
        raise AudioError(f"sample_rate {sample_rate!r} Hz is below {MIN_SAMPLE_RATE} Hz; was it given in kHz?")
    return round(rate)


def to_mono_float(waveform, *, layout: str = "auto") -> tuple[np.ndarray, int]:
    """Validate a waveform, scale it to float32 and mix it down to mono.

    Args:
        waveform: ``N`` (mono), ``N x C`` (soundfile's layout) or ``C x N``
            (torchaudio's layout) array or tensor of int16, int32, int8, uint8
            (offset binary) or float samples.
        layout: ``"auto"`` (channels are the short axis, at most 32),
            ``"channels_last"`` (``N x C``) or ``"channels_first"`` (``C x N``).

    Returns:
        ``(mono, channels)``: float32 array of shape ``N`` and the input's channel count.
    """
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    if not isinstance(waveform, np.ndarray):
        try:
            waveform = np.asarray(waveform)
        except Exception:
            raise AudioError(f"waveform must be an array of samples, got {type(waveform).__name__}") from None
    if waveform.ndim == 0 or waveform.ndim > 2:
        raise AudioError(f"waveform must be N (mono), N x C or C x N, got shape {waveform.shape}")
    if waveform.size == 0:
        raise AudioError(f"waveform is empty (shape {waveform.shape})")
    dtype = waveform.dtype
    if dtype == np.int16:
        data = waveform.astype(np.float32) / 32768.0
    elif dtype == np.int32:
        data = (waveform.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif dtype == np.int8:
        data = waveform.astype(np.float32) / 128.0
    elif dtype == np.uint8:
        data = (waveform.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(dtype, np.floating):
        data = waveform.astype(np.float32)
        if not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            raise AudioError(f"waveform contains {bad} NaN or Inf samples")
    else:
        raise AudioError(f"unsupported waveform dtype {dtype}; expected int16, int32, int8, uint8 or float")
    if data.ndim == 1:
        return np.ascontiguousarray(data), 1
    rows, cols = data.shape
    if layout == "auto":
        if rows <= 32 and rows < cols:
            layout = "channels_first"
        elif cols <= 32 and cols < rows:
            layout = "channels_last"
        else:
            raise AudioError(
                f"cannot tell channels from samples in a waveform of shape {data.shape}; "
                "pass layout='channels_first' (C x N) or layout='channels_last' (N x C)"
            )
    if layout == "channels_first":
        return np.ascontiguousarray(data.mean(axis=0, dtype=np.float32)), rows
    if layout == "channels_last":
        return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)), cols
    raise AudioError(f"layout must be 'auto', 'channels_first' or 'channels_last', got {layout!r}")


def resample_to_16k(mono: np.ndarray | torch.Tensor, sample_rate) -> torch.Tensor:
    """Resample a mono float waveform to 16 kHz with torchaudio (a no-op at 16 kHz). Returns a ``N'`` tensor."""
    rate = check_sample_rate(sample_rate)
    wave = torch.as_tensor(mono, dtype=torch.float32)
    if resample_ratio(rate) == (1, 1):
        return wave
    with torch.no_grad():
        return _resampler(rate)(wave)


def log_mel_spectrogram(wave16k: torch.Tensor) -> torch.Tensor:
    """``log(mel + 0.01)`` of a 16 kHz mono waveform: ``F x 64`` with ``F = 1 + (N - 400) // 160``.

    Args:
        wave16k: ``N`` float tensor at 16 kHz, ``N >= 400``.
    """
    if wave16k.ndim != 1:
        raise AudioError(f"log_mel_spectrogram takes a 1-D 16 kHz waveform, got shape {tuple(wave16k.shape)}")
    if wave16k.shape[0] < STFT_WINDOW_SAMPLES:
        raise AudioError(f"need at least {STFT_WINDOW_SAMPLES} samples for one STFT frame, got {wave16k.shape[0]}")
    padded = torch.nn.functional.pad(wave16k.float(), (_STFT_PAD, _STFT_PAD))
    with torch.no_grad():
        magnitude = _spectrogram()(padded)  # 257 x F
        mel = magnitude.transpose(0, 1) @ mel_matrix()  # F x 64
        return torch.log(mel + LOG_OFFSET)


def frame_examples(log_mel: torch.Tensor) -> torch.Tensor:
    """Cut an ``F x 64`` log-mel into non-overlapping 96-frame examples: ``T x 1 x 96 x 64`` (remainder dropped)."""
    if log_mel.ndim != 2 or log_mel.shape[1] != NUM_MEL_BANDS:
        raise AudioError(f"log-mel must be F x {NUM_MEL_BANDS}, got shape {tuple(log_mel.shape)}")
    count = 1 + (log_mel.shape[0] - EXAMPLE_FRAMES) // EXAMPLE_HOP_FRAMES
    if count < 1:
        raise AudioError(f"need at least {EXAMPLE_FRAMES} log-mel frames for one example, got {log_mel.shape[0]}")
    return log_mel.unfold(0, EXAMPLE_FRAMES, EXAMPLE_HOP_FRAMES)[:count].transpose(1, 2).unsqueeze(1).contiguous()


def samples_for_examples(num_examples: int) -> int:
    """Samples at 16 kHz that ``num_examples`` whole examples need: ``15360 * T + 240``."""
    return STFT_WINDOW_SAMPLES + (num_examples * EXAMPLE_FRAMES - 1) * STFT_HOP_SAMPLES


def waveform_to_examples(
    waveform, sample_rate, *, num_examples: int | None = None, layout: str = "auto"
) -> AudioExamples:
    """Turn a clip into VGGish examples ``T x 1 x 96 x 64``, one per 0.96 s.

    Args:
        waveform: clip samples, see :func:`to_mono_float` for dtypes and layouts.
        sample_rate: its sample rate in Hz (any; resampled to 16 kHz and recorded).
        num_examples: ``T`` wanted (e.g. 5 for a 5-frame AVSBench clip). The clip
            is zero-padded at the end when too short (padding reported) and the
            examples beyond ``T`` are dropped. ``None``: as many as fit, at least
            one (a clip shorter than 0.975 s is padded to one example).
        layout: channel layout of a 2-D waveform.
    """
    if num_examples is not None and (not isinstance(num_examples, int) or num_examples < 1):
        raise AudioError(f"num_examples must be a positive int or None, got {num_examples!r}")
    mono, channels = to_mono_float(waveform, layout=layout)
    rate = check_sample_rate(sample_rate)
    wave = resample_to_16k(mono, rate)
    n = int(wave.shape[0])
    needed = samples_for_examples(num_examples if num_examples is not None else 1)
    pad = max(0, needed - n)
    if pad:
        wave = torch.nn.functional.pad(wave, (0, pad))
    examples = frame_examples(log_mel_spectrogram(wave))
    if num_examples is not None:
        examples = examples[:num_examples]
    return AudioExamples(examples, rate, channels, pad, n)


def window_to_example(waveform, sample_rate, *, layout: str = "auto") -> AudioExamples:
    """One example ``1 x 1 x 96 x 64`` from the audio window that ends at a video frame (for the node).

    The last :data:`WINDOW_SAMPLES` (0.975 s at 16 kHz) of the resampled window
    are used; a shorter window is zero-padded at the START (the newest sample
    stays aligned with the frame's stamp) and the padding is reported. Pass a
    little more than 0.975 s so the resampling filter has context at the start.

    Args:
        waveform: samples of the window, see :func:`to_mono_float`.
        sample_rate: its sample rate in Hz.
        layout: channel layout of a 2-D waveform.
    """
    mono, channels = to_mono_float(waveform, layout=layout)
    rate = check_sample_rate(sample_rate)
    wave = resample_to_16k(mono, rate)
    n = int(wave.shape[0])
    pad = max(0, WINDOW_SAMPLES - n)
    if pad:
        wave = torch.nn.functional.pad(wave, (pad, 0))
    wave = wave[-WINDOW_SAMPLES:]
    return AudioExamples(frame_examples(log_mel_spectrogram(wave)), rate, channels, pad, n)


def load_audio_file(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file with soundfile (WAV, FLAC, OGG, ...): ``(N x C float32 samples, sample_rate)``."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError) as exc:
        raise AudioError(f"cannot read audio file {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    return data, int(rate)
