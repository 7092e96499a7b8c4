"""Audio-visual world: generated 5 s clips in the AVSBench S4 layout, plus the AVSBench-Robust audio
conditions, for training and evaluating audio-visual segmentation without downloading data.

Each clip shows one *sounding* object (its category's sound, :mod:`perception_eval.worlds.sounds`, is the
clip's audio) and 0-2 silent distractor objects of other categories, drawn with the instruction world's
sprites on a textured background; 5 frames (one per second), 224 x 224 by default, with small motion and
scale change between frames and possible partial occlusion. The ground-truth mask of a frame is the
visible pixels of the sounding object (0/255). Sounding categories are balanced (each block of 12 clips
holds each category once, in a random order).

Layout written under ``root`` (``<i>`` = 1..5)::

    s4_meta_data.csv                                        name,category,split (all splits)
    visual_frames/<split>/<category>/<name>/<name>_<i>.png  RGB frames
    audio_wav/<split>/<category>/<name>.wav                 the clip's own sound (positive audio)
    gt_masks/<split>/<category>/<name>/<name>_<i>.png       0/255 mask; all 5 frames in EVERY split
                                                            (AVSBench S4 gives train only frame 1)
    robust_<split>.csv                                      name,category,condition,audio_path,
                                                            audio_category,snr_db,visible
    robust_audio/<split>/<condition>/<name>.wav             the generated non-positive audio
    world.json                                              generator, version, seed, parameters, counts

Conditions (AVSBench-Robust, plus a mixed one): ``positive`` (the clip's sound; its row points into
``audio_wav``), ``silence`` (all zeros), ``noise`` (white noise drawn uniformly in [-1, 1] at 44.1 kHz,
5 s, as the paper describes), ``offscreen`` (a new instance of the sound of a category NOT visible in the
clip -- neither the sounding object nor a distractor -- taken from another group when one exists, as the
paper's "different major categories"), and ``mixed`` (the positive audio plus uniform white noise at a
random SNR; a positive sample). For silence, noise and offscreen the target mask is empty; for positive
and mixed it is ``gt_masks``. ``audio_category`` is the category heard (empty for silence/noise) and
``snr_db`` the mixing SNR (mixed only), ``visible`` the categories on screen (``;``-separated, the
sounding one first). Which clips get which negative conditions is drawn per clip with
the fractions of :attr:`AudioVisualWorldConfig.condition_fractions`. Audio is float32 WAV, mono, at
``sample_rate`` (16 kHz default), except noise at ``noise_sample_rate`` (44.1 kHz).
"""

from __future__ import annotations

import csv
import io
import math
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .categories import CATEGORIES, CATEGORY_NAMES, COLOURS, category, category_table
from .common import SPLITS, item_rng, prepare_output, run_jobs, write_json
from .drawing import ObjectPose, background, composite, jitter_colour, render_sprite
from .sounds import SOUND_DESCRIPTIONS, category_sound, white_noise

__all__ = [
    "CONDITIONS",
    "GENERATOR_VERSION",
    "AudioVisualWorldConfig",
    "generate_audiovisual_world",
    "write_float_wav",
]

GENERATOR_VERSION = "1.0.0"
WORLD_CODE = 2
CONDITIONS: tuple[str, ...] = ("positive", "silence", "noise", "offscreen", "mixed")
NEGATIVE_CONDITIONS: tuple[str, ...] = ("silence", "noise", "offscreen")
DEFAULT_CLIPS = {"train": 600, "val": 100, "test": 150}


def _default_fractions() -> dict[str, dict[str, float]]:
    train = {"silence": 0.25, "noise": 0.25, "offscreen": 0.25, "mixed": 0.25}
    full = {"silence": 1.0, "noise": 1.0, "offscreen": 1.0, "mixed": 1.0}
    return {"train": train, "val": dict(full), "test": dict(full)}


@dataclass(frozen=True)
class AudioVisualWorldConfig:
    """Parameters of the audio-visual world (all written to ``world.json``).

    Attributes:
        size: frame side in pixels (square frames).
        frames: frames per clip (one per second).
        duration: clip length in seconds.
        sample_rate: rate of the category sounds, silence, offscreen and mixed audio.
        noise_sample_rate: rate of the white-noise condition (the paper: 44.1 kHz).
        distractors_max: at most this many silent distractors (0..distractors_max, uniform).
        condition_fractions: per split, the chance that a clip also gets each non-positive condition
            (``silence``, ``noise``, ``offscreen``, ``mixed``); every clip has ``positive``.
        snr_db_min, snr_db_max: range of the mixed condition's signal-to-noise ratio (dB).
        background_snr_db: level of a faint background hiss added to category sounds (None: none).
    """

    size: int = 224
    frames: int = 5
    duration: float = 5.0
    sample_rate: int = 16000
    noise_sample_rate: int = 44100
    distractors_max: int = 2
    condition_fractions: dict = field(default_factory=_default_fractions)
    snr_db_min: float = 3.0
    snr_db_max: float = 15.0
    background_snr_db: float | None = 35.0

    def __post_init__(self):
        if self.size < 64:
            raise ValueError("size must be at least 64")
        if self.frames < 1:
            raise ValueError("frames must be at least 1")
        for split, fr in self.condition_fractions.items():
            if split not in SPLITS:
                raise ValueError(f"condition_fractions: unknown split {split!r}")
            for cond, v in fr.items():
                if cond not in CONDITIONS[1:]:
                    raise ValueError(f"condition_fractions[{split!r}]: unknown condition {cond!r}")
                if not 0.0 <= float(v) <= 1.0:
                    raise ValueError(f"condition_fractions[{split!r}][{cond!r}] must be in [0, 1]")
        if self.snr_db_min > self.snr_db_max:
            raise ValueError("snr_db_min > snr_db_max")


def write_float_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    """Write mono ``audio`` as a 32-bit float WAV (IEEE float, format tag 3), byte-for-byte reproducibly.

    libsndfile (soundfile) adds a PEAK chunk holding the current time to float WAVs, so the same audio
    would give different files; this writer emits only the ``fmt``, ``fact`` and ``data`` chunks.
    """
    data = np.ascontiguousarray(audio, dtype="<f4").tobytes()
    n = len(data) // 4
    fmt = struct.pack("<HHIIHHH", 3, 1, int(rate), int(rate) * 4, 4, 32, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<II", 4, n) + b"data" + struct.pack("<I", len(data)) + data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def _scene(rng, cfg: AudioVisualWorldConfig, sounding: str):
    """Objects (category, rgb, base size, per-frame poses) with the sounding object first, and a z-order."""
    n_dis = int(rng.integers(0, cfg.distractors_max + 1))
    others = [c for c in CATEGORY_NAMES if c != sounding]
    picks = [sounding] + [others[int(i)] for i in rng.choice(len(others), size=n_dis, replace=False)]
    s = cfg.size
    objs = []
    centres: list[tuple[float, float, float]] = []
    for cat in picks:
        cols = category(cat).colours
        colour = cols[int(rng.integers(len(cols)))]
        # The sounding object is drawn from the same size and position ranges as the distractors, so that
        # vision alone cannot tell which object sounds.
        size = category(cat).size * s * float(rng.uniform(1.0, 1.6))
        best = None
        for _ in range(30):
            x, y = rng.uniform(0.18 * s, 0.82 * s), rng.uniform(0.18 * s, 0.82 * s)
            gap = min((math.hypot(x - cx, y - cy) / (0.5 * (size + cs)) for cx, cy, cs in centres), default=9.0)
            if best is None or gap > best[0]:
                best = (gap, x, y)
            if gap > 0.8:
                break
        x, y = best[1], best[2]
        centres.append((x, y, size))
        upright = category(cat).upright
        angle = float(np.clip(rng.normal(0, 6), -15, 15)) if upright else float(rng.uniform(-180, 180))
        vx, vy = rng.normal(0, 0.02 * s, 2)
        grow = float(rng.uniform(-0.06, 0.06))
        spin = float(rng.normal(0, 2 if upright else 6))
        poses = []
        for t in range(cfg.frames):
            px = float(np.clip(x + vx * t + rng.normal(0, 0.006 * s), 0.1 * s, 0.9 * s))
            py = float(np.clip(y + vy * t + rng.normal(0, 0.006 * s), 0.1 * s, 0.9 * s))
            poses.append(ObjectPose(px, py, size * (1 + grow * t), angle + spin * t))
        objs.append({"category": cat, "colour": colour, "rgb": jitter_colour(rng, colour), "poses": poses})
    z = [int(i) for i in rng.permutation(len(objs))]
    return objs, z


def _render_clip(rng, cfg: AudioVisualWorldConfig, sounding: str):
    bg = background(rng, cfg.size, cfg.size)
    for attempt in range(40):
        objs, z = _scene(rng, cfg, sounding)
        if attempt == 39:  # last resort: the sounding object in front
            z = [i for i in z if i != 0] + [0]
        frames, masks, ok = [], [], True
        for t in range(cfg.frames):
            sprites = [(k + 1, render_sprite(objs[k]["category"], objs[k]["poses"][t], objs[k]["rgb"])) for k in z]
            img, ids = composite(bg, sprites)
            full = next(sp.area for oid, sp in sprites if oid == 1)
            vis = int((ids == 1).sum())
            if vis < 0.6 * full or vis < 200:
                ok = False
                break
            frames.append(img)
            masks.append(np.where(ids == 1, 255, 0).astype(np.uint8))
        if ok:
            return objs, frames, masks
    raise RuntimeError("could not place a visible sounding object")  # pragma: no cover


def _mix_at_snr(rng, signal: np.ndarray, snr_db: float) -> np.ndarray:
    noise = white_noise(rng, len(signal)).astype(np.float64)
    p_sig = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise**2))
    noise *= math.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    mix = signal + noise
    peak = float(np.abs(mix).max())
    if peak > 0.99:
        mix *= 0.99 / peak
    return mix.astype(np.float32)


def _sound(rng, cfg: AudioVisualWorldConfig, cat: str) -> np.ndarray:
    audio = category_sound(cat, rng, duration=cfg.duration, rate=cfg.sample_rate).astype(np.float64)
    if cfg.background_snr_db is not None:
        spec = np.fft.rfft(rng.standard_normal(len(audio)))
        spec /= np.sqrt(1.0 + np.fft.rfftfreq(len(audio), 1.0 / cfg.sample_rate) / 500.0)  # a soft, pink-ish hiss
        hiss = np.fft.irfft(spec, len(audio))
        hiss *= math.sqrt(np.mean(audio**2) / (np.mean(hiss**2) * 10 ** (cfg.background_snr_db / 10)))
        audio = audio + hiss
    return audio.astype(np.float32)


def _sounding_category(seed: int, split: str, index: int) -> str:
    block = item_rng(seed, WORLD_CODE, split, 1_000_000 + index // len(CATEGORY_NAMES))
    return CATEGORY_NAMES[int(block.permutation(len(CATEGORY_NAMES))[index % len(CATEGORY_NAMES)])]


def _make_clip(job) -> dict:
    root, split, index, seed, cfg = job
    root = Path(root)
    rng = item_rng(seed, WORLD_CODE, split, index)
    name = f"{split}_{index:05d}"
    cat = _sounding_category(seed, split, index)
    objs, frames, masks = _render_clip(rng, cfg, cat)
    vdir = root / "visual_frames" / split / cat / name
    mdir = root / "gt_masks" / split / cat / name
    vdir.mkdir(parents=True, exist_ok=True)
    mdir.mkdir(parents=True, exist_ok=True)
    for i, (img, mask) in enumerate(zip(frames, masks, strict=True), start=1):
        cv2.imwrite(str(vdir / f"{name}_{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(mdir / f"{name}_{i}.png"), mask)
    audio = _sound(rng, cfg, cat)
    rel_pos = f"audio_wav/{split}/{cat}/{name}.wav"
    write_float_wav(root / rel_pos, audio, cfg.sample_rate)
    shown = ";".join(o["category"] for o in objs)
    rows = [{"name": name, "category": cat, "condition": "positive", "audio_path": rel_pos,
             "audio_category": cat, "snr_db": "", "visible": shown}]
    fractions = cfg.condition_fractions.get(split, {})
    draws = rng.random(len(CONDITIONS) - 1)  # drawn whatever the fractions (same stream)
    visible = {o["category"] for o in objs}
    for cond, u in zip(CONDITIONS[1:], draws, strict=True):
        if u >= float(fractions.get(cond, 0.0)):
            continue
        rel = f"robust_audio/{split}/{cond}/{name}.wav"
        heard, snr = "", ""
        if cond == "silence":
            silence = np.zeros(int(round(cfg.duration * cfg.sample_rate)), np.float32)
            write_float_wav(root / rel, silence, cfg.sample_rate)
        elif cond == "noise":
            n = int(round(cfg.duration * cfg.noise_sample_rate))
            write_float_wav(root / rel, white_noise(rng, n), cfg.noise_sample_rate)
        elif cond == "offscreen":
            groups = {category(c).group for c in visible}
            pool = [c.name for c in CATEGORIES if c.name not in visible and c.group not in groups]
            pool = pool or [c for c in CATEGORY_NAMES if c not in visible]
            heard = pool[int(rng.integers(len(pool)))]
            write_float_wav(root / rel, _sound(rng, cfg, heard), cfg.sample_rate)
        else:  # mixed
            snr_db = float(rng.uniform(cfg.snr_db_min, cfg.snr_db_max))
            write_float_wav(root / rel, _mix_at_snr(rng, audio, snr_db), cfg.sample_rate)
            heard, snr = cat, f"{snr_db:.2f}"
        rows.append({"name": name, "category": cat, "condition": cond, "audio_path": rel,
                     "audio_category": heard, "snr_db": snr, "visible": shown})
    objects = [{"category": o["category"], "colour": o["colour"], "sounding": k == 0} for k, o in enumerate(objs)]
    return {"split": split, "name": name, "category": cat, "rows": rows, "objects": objects}


def _csv_text(fieldnames: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def generate_audiovisual_world(
    root: str | Path,
    *,
    seed: int = 0,
    clips: dict[str, int] | None = None,
    config: AudioVisualWorldConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generate the audio-visual world under ``root`` and return the ``world.json`` content.

    Args:
        root: output folder (created). Refuses to overwrite an earlier world unless ``overwrite``.
        seed: the seed; the same seed, sizes and config give byte-identical files.
        clips: clips per split, e.g. ``{"train": 600, "val": 100, "test": 150}`` (the default).
        config: :class:`AudioVisualWorldConfig` (defaults if None).
        workers: processes to render on (the output does not depend on it).
        overwrite: remove this generator's earlier outputs under ``root`` first.
        progress: show a tqdm progress bar.
    """
    root = Path(root)
    cfg = config or AudioVisualWorldConfig()
    clips = dict(DEFAULT_CLIPS if clips is None else clips)
    unknown = set(clips) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; expected {SPLITS}")
    owned = ["s4_meta_data.csv", "visual_frames", "audio_wav", "gt_masks", "robust_audio", "world.json"]
    owned += [f"robust_{s}.csv" for s in SPLITS]
    prepare_output(root, owned, overwrite)
    jobs = [(str(root), split, i, int(seed), cfg) for split in SPLITS for i in range(int(clips.get(split, 0)))]
    meta_rows: list[dict] = []
    robust: dict[str, list[dict]] = {s: [] for s in SPLITS if clips.get(s, 0)}
    distractors = {s: 0 for s in robust}
    for res in run_jobs(_make_clip, jobs, workers=workers, desc="audio-visual world", progress=progress):
        meta_rows.append({"name": res["name"], "category": res["category"], "split": res["split"]})
        robust[res["split"]].extend(res["rows"])
        distractors[res["split"]] += len(res["objects"]) - 1
    (root / "s4_meta_data.csv").write_text(_csv_text(["name", "category", "split"], meta_rows))
    fields = ["name", "category", "condition", "audio_path", "audio_category", "snr_db", "visible"]
    for split, rows in robust.items():
        (root / f"robust_{split}.csv").write_text(_csv_text(fields, rows))
    counts = {
        split: {
            "clips": int(clips[split]),
            "distractors": distractors[split],
            "by_condition": {c: sum(r["condition"] == c for r in rows) for c in CONDITIONS},
            "by_category": {c: sum(r["category"] == c and r["condition"] == "positive" for r in rows)
                            for c in CATEGORY_NAMES},
        }
        for split, rows in robust.items()
    }
    world = {
        "world": "audiovisual",
        "generator": "perception_eval.worlds.audiovisual",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "clips": {s: int(clips.get(s, 0)) for s in SPLITS},
        "config": asdict(cfg),
        "layout": "AVSBench S4 (visual_frames, audio_wav, gt_masks, s4_meta_data.csv) + robust_<split>.csv",
        "gt_masks": "all frames of every split (0/255 PNG of the sounding object's visible pixels)",
        "conditions": list(CONDITIONS),
        "categories": category_table(),
        "colours": {k: list(v) for k, v in COLOURS.items()},
        "sounds": SOUND_DESCRIPTIONS,
        "counts": counts,
    }
    write_json(root / "world.json", world)
    return world
