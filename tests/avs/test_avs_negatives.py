"""Negative-audio generator: proportions honoured, noise as the paper says, off-screen never the visible category."""

from __future__ import annotations

import numpy as np
import pytest

from avs.errors import NegativeAudioError
from avs.negatives import S4_MAJOR_CATEGORIES, AudioSample, NegativeAudioGenerator


def pool():
    rng = np.random.default_rng(0)
    labels = ["dog_barking", "cat_meowing", "playing_piano", "male_speech", "helicopter", "playing_violin"]
    return [
        AudioSample(f"vid{i}", rng.uniform(-0.5, 0.5, 1600).astype(np.float32), 16000, {labels[i % len(labels)]})
        for i in range(30)
    ]


@pytest.mark.parametrize("proportion", [0.1, 0.25, 0.5])
def test_silence_rate_is_honoured(proportion):
    gen = NegativeAudioGenerator(pool=pool(), proportion=proportion, kind_weights={"silence": 1.0}, seed=1)
    plan = gen.plan(1000)
    assert len(plan) == 1000
    assert plan.count("silence") == round(proportion * 1000)
    assert plan.count(None) == 1000 - round(proportion * 1000)


def test_default_proportion_is_ten_percent_split_over_kinds():
    gen = NegativeAudioGenerator(pool=pool(), seed=2)
    assert gen.proportion == 0.1
    plan = gen.plan(300)
    counts = {k: plan.count(k) for k in ("silence", "noise", "offscreen")}
    assert sum(counts.values()) == 30 and set(counts.values()) == {10}
    # seeded: same seed same plan, other seed other positions
    assert NegativeAudioGenerator(pool=pool(), seed=2).plan(300) == plan
    assert NegativeAudioGenerator(pool=pool(), seed=3).plan(300) != plan


def test_uneven_weights_use_largest_remainder():
    gen = NegativeAudioGenerator(pool=pool(), proportion=0.2, kind_weights={"silence": 2, "noise": 1}, seed=0)
    plan = gen.plan(50)  # 10 negatives: 6.67 silence, 3.33 noise -> 7 + 3
    assert plan.count("silence") == 7 and plan.count("noise") == 3 and plan.count("offscreen") == 0


def test_silence_is_zeros_with_the_sample_length():
    gen = NegativeAudioGenerator(pool=pool(), seed=0)
    neg = gen.make("silence", pool()[0])
    assert neg.kind == "silence" and neg.sample_rate == 16000
    assert neg.waveform.shape == (1600,) and neg.waveform.dtype == np.float32 and not neg.waveform.any()


def test_white_noise_is_float_uniform_in_range_44k_5s():
    gen = NegativeAudioGenerator(pool=pool(), seed=0)
    neg = gen.make("noise", pool()[0])
    assert neg.kind == "noise" and neg.sample_rate == 44100
    assert neg.waveform.dtype == np.float32 and neg.waveform.shape == (44100 * 5,)
    assert neg.waveform.min() >= -1.0 and neg.waveform.max() <= 1.0
    # uniform on [-1, 1]: mean 0, variance 1/3, and it uses the whole range
    assert abs(float(neg.waveform.mean())) < 0.01
    assert abs(float(neg.waveform.var()) - 1.0 / 3.0) < 0.01
    assert neg.waveform.min() < -0.99 and neg.waveform.max() > 0.99
    hist, _ = np.histogram(neg.waveform, bins=10, range=(-1, 1))
    assert hist.min() > 0.9 * hist.mean()
    assert not np.array_equal(gen.white_noise().waveform, neg.waveform)  # fresh draws


def test_offscreen_never_uses_the_visible_category():
    samples = pool()
    gen = NegativeAudioGenerator(pool=samples, seed=0)
    by_id = {s.sample_id: s for s in samples}
    for visible in samples:
        for _ in range(20):
            neg = gen.offscreen(visible)
            source = by_id[neg.source_id]
            assert neg.source_id != visible.sample_id
            assert not (source.categories & visible.categories)
            np.testing.assert_array_equal(neg.waveform, source.waveform)


def test_offscreen_respects_major_categories():
    samples = pool()
    gen = NegativeAudioGenerator(pool=samples, category_groups=S4_MAJOR_CATEGORIES, seed=0)
    by_id = {s.sample_id: s for s in samples}
    dog = next(s for s in samples if "dog_barking" in s.categories)
    seen = set()
    for _ in range(50):
        source = by_id[gen.offscreen(dog).source_id]
        seen |= source.categories
    assert "cat_meowing" not in seen  # same major category (animal)
    assert seen and all(S4_MAJOR_CATEGORIES[c] != "animal" for c in seen)


def test_offscreen_without_candidates_is_an_error():
    same = [AudioSample(f"d{i}", np.zeros(10, np.float32), 16000, {"dog_barking"}) for i in range(3)]
    gen = NegativeAudioGenerator(pool=same, seed=0)
    with pytest.raises(NegativeAudioError, match="shares a category"):
        gen.offscreen(same[0])


def test_mixed_adds_noise_at_the_requested_snr():
    gen = NegativeAudioGenerator(pool=pool(), seed=0)
    t = np.arange(16000) / 16000
    clean = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sample = AudioSample("v", clean, 16000, {"playing_piano"})
    for snr in (0.0, 10.0):
        mixed = gen.mixed(sample, snr_db=snr)
        noise = mixed.waveform.astype(np.float64) - clean
        measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2))
        assert mixed.kind == "mixed" and mixed.sample_rate == 16000
        assert abs(measured - snr) < 0.01
        assert np.abs(noise).max() > 0
    with pytest.raises(NegativeAudioError, match="silent"):
        gen.mixed(AudioSample("s", np.zeros(100, np.float32), 16000, {"x"}))


def test_bad_parameters():
    with pytest.raises(NegativeAudioError, match="proportion"):
        NegativeAudioGenerator(pool=pool(), proportion=1.5)
    with pytest.raises(NegativeAudioError, match="unknown negative kinds"):
        NegativeAudioGenerator(pool=pool(), kind_weights={"thunder": 1})
    with pytest.raises(NegativeAudioError, match="pool"):
        NegativeAudioGenerator(pool=[], kind_weights={"offscreen": 1})
    with pytest.raises(NegativeAudioError, match="unknown negative kind"):
        NegativeAudioGenerator(pool=pool()).make("mixed", pool()[0])
