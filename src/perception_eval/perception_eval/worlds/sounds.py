"""Category sounds of the audio-visual world: one synthetic sound per category, each with its own spectral
signature and envelope, re-drawn per clip with small random variations (pitch, rate, timing, level).

=========  ================================================================================
category   sound
=========  ================================================================================
apple      crunch: irregular short bursts of 1.2-3.5 kHz noise made of micro-clicks (~4/s)
banana     chirp: rising sine sweeps 300 -> 900 Hz (+ 2nd harmonic), ~1.7/s
orange     hum: sustained harmonic stack at ~196 Hz with 5 Hz tremolo
knife      slicing strokes: 0.3 s swells of 2.5-5 kHz noise, ~2/s
hammer     knocks: 80 Hz thumps with a falling pitch and a click, regular ~2.2/s
scissors   snips: pairs of high (3-7 kHz) clicks 80 ms apart, ~1.4 pairs/s
cup        clinks: inharmonic bell partials (1250 Hz x 1, 2.76, 5.40) decaying ~0.25 s, ~1.2/s
bottle     blown tone: ~330 Hz sine with vibrato and breath noise, slow swell
ball       bounces: 150 Hz thuds at shrinking intervals, restarting every ~1.6 s
phone      ring: 1000/1300 Hz dual tone trilled at 20 Hz, 0.4 s on / 0.2 s off
book       page flips: low-passed (< 3 kHz) noise swells with 30 Hz flutter, ~1.1/s
key        jingle: dense random 5-7.5 kHz tinkles in 0.6 s shakes, ~1 shake/s
=========  ================================================================================

Every second of a 5 s clip holds the category's signature (the AVSBench models take one audio example
per second / frame). All functions take a ``numpy.random.Generator`` and return float32 mono audio.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SOUND_DESCRIPTIONS", "category_sound", "white_noise"]

SOUND_DESCRIPTIONS = {
    "apple": "crunch: irregular short bursts of 1.2-3.5 kHz noise made of micro-clicks",
    "banana": "chirp: rising sine sweeps 300->900 Hz with a 2nd harmonic",
    "orange": "hum: harmonic stack at ~196 Hz with 5 Hz tremolo",
    "knife": "slicing strokes: 0.3 s swells of 2.5-5 kHz noise",
    "hammer": "knocks: 80 Hz thumps with falling pitch and a click",
    "scissors": "snips: pairs of 3-7 kHz clicks 80 ms apart",
    "cup": "clinks: inharmonic bell partials around 1250 Hz",
    "bottle": "blown tone: ~330 Hz sine with vibrato and breath noise",
    "ball": "bounces: 150 Hz thuds at shrinking intervals",
    "phone": "ring: 1000/1300 Hz dual tone trilled at 20 Hz, 0.4 s on / 0.2 s off",
    "book": "page flips: low-passed noise swells with 30 Hz flutter",
    "key": "jingle: dense random 5-7.5 kHz tinkles in short shakes",
}


def white_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` samples of white noise drawn uniformly in [-1, 1] (float32)."""
    return rng.uniform(-1.0, 1.0, n).astype(np.float32)


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float, rate: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / rate)
    spec[(f < lo) | (f > hi)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() + 1e-9)


def _onsets_regular(rng, duration: float, rate_hz: float, jitter: float = 0.03) -> np.ndarray:
    period = 1.0 / rate_hz
    start = rng.uniform(0, period)
    t = np.arange(start, duration, period)
    return np.clip(t + rng.normal(0, jitter, len(t)), 0, duration)


def _onsets_poisson(rng, duration: float, rate_hz: float, min_gap: float = 0.05) -> np.ndarray:
    out, t = [], rng.exponential(1.0 / rate_hz) * 0.5
    while t < duration:
        out.append(t)
        t += max(min_gap, rng.exponential(1.0 / rate_hz))
    # Make sure every second has at least one event.
    for s in range(int(math.ceil(duration))):
        if not any(s <= x < s + 1 for x in out):
            out.append(s + rng.uniform(0.1, 0.9))
    return np.sort(np.asarray(out))


def _place(out: np.ndarray, event: np.ndarray, at: float, rate: int) -> None:
    i = int(at * rate)
    if i >= len(out):
        return
    m = min(len(event), len(out) - i)
    out[i : i + m] += event[:m]


def _decay(n: int, tau_s: float, rate: int) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * rate))


def _apple(rng, n, rate, dur, k):
    out = np.zeros(n)
    for at in _onsets_poisson(rng, dur, 4.0 * k):
        m = int(rng.uniform(0.06, 0.12) * rate)
        burst = _band_noise(rng, m, 1200 * k, 3500 * k, rate) * _decay(m, 0.04, rate)
        clicks = np.zeros(m)
        clicks[rng.integers(0, m, 5)] = rng.uniform(0.5, 1.0, 5)
        burst = burst * (0.4 + 0.6 * np.convolve(clicks, np.ones(int(0.006 * rate)), "same"))
        _place(out, burst * rng.uniform(0.6, 1.0), at, rate)
    return out


def _banana(rng, n, rate, dur, k):
    out = np.zeros(n)
    m = int(0.35 * rate)
    tt = np.arange(m) / rate
    f = 300 * k * (3.0 ** (tt / tt[-1]))  # 300 -> 900 Hz, exponential sweep
    phase = 2 * np.pi * np.cumsum(f) / rate
    chirp = (np.sin(phase) + 0.35 * np.sin(2 * phase)) * np.hanning(m)
    for at in _onsets_regular(rng, dur - 0.35, 1.7 * k):
        _place(out, chirp * rng.uniform(0.7, 1.0), at, rate)
    return out


def _orange(rng, n, rate, dur, k):
    t = np.arange(n) / rate
    f0 = 196 * k
    out = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 9))
    trem = 1 - 0.6 * (0.5 + 0.5 * np.sin(2 * np.pi * 5 * k * t + rng.uniform(0, 2 * np.pi)))
    return out * trem


def _knife(rng, n, rate, dur, k):
    out = np.zeros(n)
    m = int(0.3 * rate)
    env = np.linspace(0, 1, m) ** 1.5 * _decay(m, 0.5, rate)
    env[-int(0.02 * rate) :] *= np.linspace(1, 0, int(0.02 * rate))
    for at in _onsets_regular(rng, dur - 0.3, 2.0 * k):
        _place(out, _band_noise(rng, m, 2500 * k, 5000 * k, rate) * env, at, rate)
    return out


def _hammer(rng, n, rate, dur, k):
    out = np.zeros(n)
    m = int(0.25 * rate)
    tt = np.arange(m) / rate
    f = 80 * k * (1 + 0.8 * np.exp(-tt / 0.02))
    thump = np.sin(2 * np.pi * np.cumsum(f) / rate) * _decay(m, 0.06, rate)
    click = np.zeros(m)
    c = int(0.005 * rate)
    click[:c] = rng.uniform(-1, 1, c)
    for at in _onsets_regular(rng, dur, 2.2 * k, 0.01):
        _place(out, thump + 0.5 * click, at, rate)
    return out


def _scissors(rng, n, rate, dur, k):
    out = np.zeros(n)
    m = int(0.008 * rate)
    for at in _onsets_regular(rng, dur - 0.1, 1.4 * k):
        for dt in (0.0, 0.08 * k):
            click = _band_noise(rng, max(m, 16), 3000, 7000, rate) * _decay(max(m, 16), 0.003, rate)
            _place(out, click, at + dt, rate)
    return out


def _cup(rng, n, rate, dur, k):
    out = np.zeros(n)
    m = int(0.8 * rate)
    tt = np.arange(m) / rate
    f0 = 1250 * k
    bell = sum(a * np.sin(2 * np.pi * f0 * r * tt) * _decay(m, tau, rate)
               for r, a, tau in ((1.0, 1.0, 0.25), (2.76, 0.6, 0.15), (5.40, 0.35, 0.08)))
    for at in _onsets_poisson(rng, dur, 1.2 * k, 0.3):
        _place(out, bell * rng.uniform(0.6, 1.0), at, rate)
    return out


def _bottle(rng, n, rate, dur, k):
    t = np.arange(n) / rate
    f = 330 * k * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    tone = np.sin(2 * np.pi * np.cumsum(f) / rate)
    breath = _band_noise(rng, n, 300, 1200, rate)
    swell = 0.65 + 0.35 * np.sin(2 * np.pi * 0.5 * k * t + rng.uniform(0, 2 * np.pi))
    return (tone + 0.25 * breath) * swell


def _ball(rng, n, rate, dur, k):
    out = np.zeros(n)
    m = int(0.12 * rate)
    tt = np.arange(m) / rate
    thud = np.sin(2 * np.pi * 150 * k * tt) * _decay(m, 0.04, rate)
    thud += 0.3 * _band_noise(rng, m, 50, 800, rate) * _decay(m, 0.015, rate)
    start = rng.uniform(0, 0.3)
    while start < dur:
        gap, amp, t = 0.5 * k, 1.0, start
        while gap > 0.06 and t < dur:
            _place(out, thud * amp, t, rate)
            t += gap
            gap *= 0.7
            amp *= 0.8
        start = t + 0.25
    return out


def _phone(rng, n, rate, dur, k):
    t = np.arange(n) / rate
    trill = (np.sin(2 * np.pi * 20 * t) > 0).astype(np.float64)
    tone = trill * np.sin(2 * np.pi * 1000 * k * t) + (1 - trill) * np.sin(2 * np.pi * 1300 * k * t)
    phase = (t + rng.uniform(0, 0.6)) % 0.6
    gate = (phase < 0.4).astype(np.float64)
    gate = np.convolve(gate, np.ones(int(0.005 * rate)) / int(0.005 * rate), "same")
    return tone * gate


def _book(rng, n, rate, dur, k):
    out = np.zeros(n)
    m = int(0.4 * rate)
    tt = np.arange(m) / rate
    env = np.minimum(tt / 0.15, 1) * np.clip((0.4 - tt) / 0.25, 0, 1)
    for at in _onsets_regular(rng, dur - 0.4, 1.1 * k, 0.08):
        flutter = 0.6 + 0.4 * np.sin(2 * np.pi * 30 * k * tt + rng.uniform(0, 2 * np.pi))
        _place(out, _band_noise(rng, m, 100, 3000, rate) * env * flutter, at, rate)
    return out


def _key(rng, n, rate, dur, k):
    out = np.zeros(n)
    m = int(0.06 * rate)
    tt = np.arange(m) / rate
    top = min(7500.0, 0.47 * rate)
    for shake in _onsets_regular(rng, dur - 0.6, 1.0 * k, 0.05):
        for at in shake + np.sort(rng.uniform(0, 0.6, int(rng.integers(10, 18)))):
            f = rng.uniform(5000, top)
            _place(out, np.sin(2 * np.pi * f * tt) * _decay(m, 0.015, rate) * rng.uniform(0.4, 1.0), at, rate)
    return out


_RECIPES = {
    "apple": _apple,
    "banana": _banana,
    "orange": _orange,
    "knife": _knife,
    "hammer": _hammer,
    "scissors": _scissors,
    "cup": _cup,
    "bottle": _bottle,
    "ball": _ball,
    "phone": _phone,
    "book": _book,
    "key": _key,
}


def category_sound(
    name: str, rng: np.random.Generator, *, duration: float = 5.0, rate: int = 16000, peak: float | None = None
) -> np.ndarray:
    """A new instance of category ``name``'s sound: float32 mono, ``duration`` s at ``rate`` Hz.

    Pitch and rate vary by +-7% between instances; the peak level is ``peak`` (default: random in
    [0.35, 0.8]).
    """
    n = int(round(duration * rate))
    k = float(rng.uniform(0.93, 1.07))
    out = np.asarray(_RECIPES[name](rng, n, rate, duration, k), dtype=np.float64)
    level = float(rng.uniform(0.35, 0.8)) if peak is None else float(peak)
    out *= level / (np.abs(out).max() + 1e-9)
    return out.astype(np.float32)
