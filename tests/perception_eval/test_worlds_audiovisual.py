"""The generated audio-visual world: AVSBench S4 layout, AVSBench-Robust conditions, determinism, sounds."""

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from perception_eval.worlds.audiovisual import AudioVisualWorldConfig, generate_audiovisual_world, write_float_wav
from perception_eval.worlds.categories import CATEGORY_NAMES, category
from perception_eval.worlds.sounds import category_sound

SIZES = {"train": 12, "val": 2, "test": 6}


def _generate(root, seed=3, workers=1, sizes=SIZES, config=None):
    return generate_audiovisual_world(root, seed=seed, clips=sizes, config=config, workers=workers, progress=False)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("av")
    info = _generate(root)
    robust = {s: _rows(root / f"robust_{s}.csv") for s in SIZES}
    return root, info, robust


def _tree_hash(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path, world):
    root, _, _ = world
    _generate(tmp_path / "again", workers=2)
    first, second = _tree_hash(root), _tree_hash(tmp_path / "again")
    assert len(first) > 100
    assert first == second


def test_different_seed_differs(tmp_path, world):
    root, _, _ = world
    _generate(tmp_path / "other", seed=4, sizes={"train": 3})
    other, first = _tree_hash(tmp_path / "other"), _tree_hash(root)
    wavs = [k for k in other if k.startswith("audio_wav")]
    frames = [k for k in first if k.startswith("visual_frames/train")]
    assert wavs and not set(other[k] for k in wavs) & set(first.values())
    assert not set(other.values()) & {first[k] for k in frames}


def test_s4_layout(world):
    root, info, _ = world
    meta = _rows(root / "s4_meta_data.csv")
    assert list(meta[0]) == ["name", "category", "split"]
    assert [sum(r["split"] == s for r in meta) for s in SIZES] == list(SIZES.values())
    assert len({r["name"] for r in meta}) == len(meta)
    for r in meta:
        name, cat, split = r["name"], r["category"], r["split"]
        assert cat in CATEGORY_NAMES
        wav, rate = sf.read(root / "audio_wav" / split / cat / f"{name}.wav", dtype="float32")
        assert rate == 16000 and wav.shape == (80000,) and np.abs(wav).max() > 0.1
        assert sf.info(str(root / "audio_wav" / split / cat / f"{name}.wav")).subtype == "FLOAT"
        for i in range(1, 6):
            img = cv2.imread(str(root / "visual_frames" / split / cat / name / f"{name}_{i}.png"))
            mask = cv2.imread(str(root / "gt_masks" / split / cat / name / f"{name}_{i}.png"), cv2.IMREAD_UNCHANGED)
            assert img.shape == (224, 224, 3) and mask.shape == (224, 224) and mask.dtype == np.uint8
            assert set(np.unique(mask).tolist()) == {0, 255}
            assert (mask == 255).sum() >= 200  # the sounding object is visible in every frame
        assert not (root / "visual_frames" / split / cat / name / f"{name}_6.png").exists()
    counts = json.loads((root / "world.json").read_text())["counts"]
    assert counts["train"]["clips"] == SIZES["train"]
    # Sounding categories are balanced: 12 train clips = each category once.
    assert sorted(r["category"] for r in meta if r["split"] == "train") == sorted(CATEGORY_NAMES)
    assert info["version"] and info["seed"] == 3


def test_mask_is_the_sounding_objects_look(world):
    # The masked pixels hold the sounding object: its colour differs from the frame around it.
    root, _, _ = world
    for r in _rows(root / "s4_meta_data.csv")[:8]:
        d = root / "visual_frames" / r["split"] / r["category"] / r["name"]
        img = cv2.imread(str(d / f"{r['name']}_1.png")).astype(np.float32)
        mask = cv2.imread(str(root / "gt_masks" / r["split"] / r["category"] / r["name"] / f"{r['name']}_1.png"), 0)
        inside = mask > 0
        ring = (cv2.dilate(mask, np.ones((9, 9), np.uint8)) > 0) & ~inside
        assert np.abs(img[inside].mean(0) - img[ring].mean(0)).max() > 8


def test_robust_conditions(world):
    root, _, robust = world
    for split, rows in robust.items():
        assert list(rows[0])[:4] == ["name", "category", "condition", "audio_path"]
        names = sorted({r["name"] for r in rows})
        assert len(names) == SIZES[split]
        for name in names:
            conds = [r["condition"] for r in rows if r["name"] == name]
            assert conds[0] == "positive" and len(set(conds)) == len(conds)
            if split != "train":  # evaluation splits: every clip under every condition
                assert conds == ["positive", "silence", "noise", "offscreen", "mixed"]
        for r in rows:
            path = root / r["audio_path"]
            assert path.is_file()
            if r["condition"] == "positive":
                assert r["audio_path"] == f"audio_wav/{split}/{r['category']}/{r['name']}.wav"
            else:
                assert r["audio_path"] == f"robust_audio/{split}/{r['condition']}/{r['name']}.wav"
    train_conds = [r["condition"] for r in robust["train"]]
    assert 0 < train_conds.count("silence") < SIZES["train"]  # train: a fraction of the clips (0.25 default)


def test_silence_noise_offscreen_mixed_audio(world):
    root, _, robust = world
    rows = [r for rs in robust.values() for r in rs]
    seen = set()
    for r in rows:
        audio, rate = sf.read(root / r["audio_path"], dtype="float32")
        cond = r["condition"]
        seen.add(cond)
        if cond == "silence":
            assert rate == 16000 and audio.shape == (80000,) and not np.any(audio)
            assert r["audio_category"] == ""
        elif cond == "noise":
            assert rate == 44100 and audio.shape == (5 * 44100,)
            assert sf.info(str(root / r["audio_path"])).subtype == "FLOAT"
            assert audio.min() >= -1.0 and audio.max() <= 1.0
            assert audio.min() < -0.999 and audio.max() > 0.999
            assert abs(audio.mean()) < 0.01 and abs(audio.std() - 1 / np.sqrt(3)) < 0.01
            hist = np.histogram(audio, bins=10, range=(-1, 1))[0] / audio.size
            assert np.all(np.abs(hist - 0.1) < 0.01)  # uniform, not reinterpreted bytes
        elif cond == "offscreen":
            visible = r["visible"].split(";")
            assert visible[0] == r["category"]
            assert r["audio_category"] in CATEGORY_NAMES and r["audio_category"] not in visible
            # From another group than anything on screen whenever one exists (the paper's "major categories").
            assert category(r["audio_category"]).group not in {category(v).group for v in visible}
            assert rate == 16000 and np.abs(audio).max() > 0.1
        elif cond == "mixed":
            pos, _ = sf.read(root / "audio_wav" / r["audio_path"].split("/")[1] / r["category"] / f"{r['name']}.wav",
                             dtype="float64")
            a = float(audio @ pos / (pos @ pos))
            residual = audio - a * pos
            snr = 10 * np.log10(np.sum((a * pos) ** 2) / np.sum(residual**2))
            assert abs(snr - float(r["snr_db"])) < 0.5
            assert 3.0 <= float(r["snr_db"]) <= 15.0 and r["audio_category"] == r["category"]
    assert seen == {"positive", "silence", "noise", "offscreen", "mixed"}


def test_condition_fractions_are_parameters(tmp_path):
    fractions = {"train": {"silence": 0.0, "noise": 1.0}, "val": {}, "test": {}}
    _generate(tmp_path, sizes={"train": 3}, config=AudioVisualWorldConfig(condition_fractions=fractions))
    conds = [r["condition"] for r in _rows(tmp_path / "robust_train.csv")]
    assert conds.count("positive") == 3 and conds.count("noise") == 3 and len(conds) == 6
    with pytest.raises(ValueError):
        AudioVisualWorldConfig(condition_fractions={"train": {"loud": 0.5}})


def _features(audio: np.ndarray) -> np.ndarray:
    frames = audio[: len(audio) // 400 * 400].reshape(-1, 400) * np.hanning(400)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    bands = np.log(spec[:, 1:].reshape(len(spec), 40, 5).sum(-1) + 1e-6)
    bands -= bands.max()
    return np.concatenate([bands.mean(0), bands.std(0)])


def test_category_sounds_are_distinct_and_vary():
    rng = np.random.default_rng(0)
    feats = {c: [_features(category_sound(c, rng)) for _ in range(6)] for c in CATEGORY_NAMES}
    correct = total = 0
    for c in CATEGORY_NAMES:
        for i in range(6):
            cents = {k: np.mean([f for j, f in enumerate(v) if not (k == c and j == i)], 0) for k, v in feats.items()}
            guess = min(cents, key=lambda k: np.linalg.norm(feats[c][i] - cents[k]))
            correct += guess == c
            total += 1
        assert not np.allclose(feats[c][0], feats[c][1])  # instances differ
    assert correct / total >= 0.9
    a = category_sound("cup", np.random.default_rng(5))
    b = category_sound("cup", np.random.default_rng(5))
    assert a.dtype == np.float32 and a.shape == (80000,) and np.array_equal(a, b)


def test_float_wav_writer_round_trips_and_is_reproducible(tmp_path):
    audio = np.random.default_rng(1).uniform(-1, 1, 1234).astype(np.float32)
    write_float_wav(tmp_path / "a.wav", audio, 44100)
    write_float_wav(tmp_path / "b.wav", audio, 44100)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    back, rate = sf.read(tmp_path / "a.wav", dtype="float32")
    assert rate == 44100 and np.array_equal(back, audio)
    assert sf.info(str(tmp_path / "a.wav")).subtype == "FLOAT"
