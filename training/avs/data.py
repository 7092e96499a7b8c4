"""AVS training and evaluation data: AVSBench S4 / MS3 clips, with the paper's negative audio.

Training stream (a pure function of the seed and the sample number ``n``, so resuming is exact and worker
processes agree):

* epoch ``e = n // N`` visits the ``N`` training clips (S4 and MS3 together) in a seeded permutation;
* :meth:`avs.negatives.NegativeAudioGenerator.plan` turns EXACTLY ``round(proportion * N)`` samples of each epoch
  into negatives (paper: 10 %), split over silence / noise / off-screen by ``kind_weights``; those samples
  replace their clip's audio by the negative audio and their ground truth by empty masks (label 0 for the
  gate); the others are positives (label 1). Choice: negatives replace positives rather than being added,
  so an epoch keeps ``N`` samples and a clip's positive pairing is skipped in at most the epochs it is drawn
  negative;
* off-screen audio comes from another training clip sharing no category (and, with ``category_groups: s4``, no
  AVSBench-Robust major category) with the visible one; a clip with no category (MS3) or no such partner
  gets a noise negative instead (counted in ``offscreen_fallbacks``). A clip's categories are its sounding
  category, plus, with ``data.visible_csv`` (columns ``name``, ``visible``: ``;``-separated categories on
  screen, as the audio-visual world's ``robust_<split>.csv`` has), every category on screen, so an off-screen
  sound is never that of a visible silent object;
* optionally (``mixed.proportion``, default 0) a positive gets white noise mixed in at ``mixed.snr_db`` (the
  paper's Table 4 control; it stays a positive);
* per-sample randomness (noise samples, off-screen partner, mixing, flips) comes from
  ``item_rng(seed, 2, n)``.

A sample is one clip: 5 frames, 5 log-mel examples (one per frame, VGGish front end from the clip's wav, or
the clip's ``.pkl`` examples when there is no wav), the ground truth of the annotated frames (S4 train: frame
1 only, as AVSBench trains; MS3: all 5), the pair label and the index of the clip's category in
:attr:`AVSTrainData.categories` (-1 without one: MS3), whatever the audio (the auxiliary category loss).

Evaluation set: the clips of ``eval_split`` (at most ``max_clips``), each under the positive audio and the three
negative conditions. With ``robust_root`` the conditions' audio files come from an AVSBench-Robust CSV
(:class:`perception_eval.datasets.AVSBenchRobust`); without it they are generated like the training negatives
with a fixed seed (off-screen: another evaluation clip of a disjoint category).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avs.audio import waveform_to_examples
from avs.errors import NegativeAudioError
from avs.negatives import NEGATIVE_KINDS, S4_MAJOR_CATEGORIES, AudioSample, NegativeAudioGenerator
from perception_eval.datasets import (
    AVSBenchMS3,
    AVSBenchRobust,
    AVSBenchS4,
    AVSClip,
    DatasetError,
    read_csv_table,
)

from ..common.errors import SetupError
from ..common.state import item_rng
from .presets import ClipTransform

FRAMES = 5


def clip_examples(clip: AVSClip) -> torch.Tensor:
    """``5 x 1 x 96 x 64`` log-mel examples of a clip's own audio (wav preferred, else its ``.pkl``)."""
    if clip.wav_path is not None:
        wave, rate = clip.load_audio()
        return waveform_to_examples(wave, rate, num_examples=FRAMES).examples
    return load_log_mel(clip.log_mel_path)


def load_log_mel(path: Path | None) -> torch.Tensor:
    """AVSBench's pickled ``[5, 1, 96, 64]`` log-mel tensor, read with ``torch.load(weights_only=True)``."""
    if path is None:
        raise DatasetError("clip has neither a wav nor a log-mel file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling problem is a dataset problem
        raise DatasetError(
            f"log-mel file {str(path)!r} cannot be read safely ({exc}); provide the wav instead", path
        ) from None
    tensor = torch.as_tensor(data, dtype=torch.float32)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    if tuple(tensor.shape[1:]) != (1, 96, 64) or tensor.shape[0] < FRAMES:
        raise DatasetError(
            f"log-mel file {str(path)!r} holds shape {tuple(tensor.shape)}, expected [5, 1, 96, 64]", path
        )
    return tensor[:FRAMES]


def read_clips(data: Mapping[str, Any], split: str) -> list[tuple[str, AVSClip]]:
    """``[(subset, clip)]`` of S4 (``data.s4_root``) and MS3 (``data.ms3_root``) for ``split``."""
    clips: list[tuple[str, AVSClip]] = []
    if not data.get("s4_root") and not data.get("ms3_root"):
        raise SetupError("no AVS data: set data.s4_root and/or data.ms3_root")
    if data.get("s4_root"):
        clips += [("s4", c) for c in AVSBenchS4(data["s4_root"], split, audio=data.get("audio", "any"))]
    if data.get("ms3_root"):
        clips += [("ms3", c) for c in AVSBenchMS3(data["ms3_root"], split, audio=data.get("audio", "any"))]
    return clips


def read_visible(path: Any) -> dict[str, frozenset[str]]:
    """``name -> categories on screen`` from a CSV with ``name`` and ``visible`` (``;``-separated) columns.

    A missing file or column raises :class:`DatasetError` naming the file."""
    if not path:
        return {}
    _, rows = read_csv_table(path, ("name", "visible"), "data.visible_csv")
    visible: dict[str, set[str]] = {}
    for row in rows:
        visible.setdefault(row["name"], set()).update(c for c in (row["visible"] or "").split(";") if c)
    return {k: frozenset(v) for k, v in visible.items()}


def category_groups(spec: Any) -> dict[str, str] | None:
    if spec in (None, "none", False):
        return None
    if spec == "s4":
        return dict(S4_MAJOR_CATEGORIES)
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    raise SetupError(f"data.negatives.category_groups must be null, 's4' or a label->group mapping, got {spec!r}")


@dataclass
class Sample:
    """One training or evaluation sample (tensors on CPU)."""

    frames: torch.Tensor  # 5 x 3 x S x S
    audio: torch.Tensor  # 5 x 1 x 96 x 64
    gt: torch.Tensor  # 5 x 1 x S x S (zeros where not annotated)
    has_gt: torch.Tensor  # 5 bool
    label: float  # 1 positive / mixed, 0 negative
    kind: str  # positive, mixed, silence, noise, offscreen
    name: str
    category: int = -1  # index in AVSTrainData.categories of the clip's (visual) category; -1 unknown


def collate(samples: Sequence[Sample]) -> dict[str, Any]:
    """Clip-major batch: ``frames B*5 x 3 x S x S``, ``audio B*5 x 1 x 96 x 64``, ``gt``, ``has_gt``, ``label``,
    ``category`` (per frame)."""
    return {
        "frames": torch.cat([s.frames for s in samples]),
        "audio": torch.cat([s.audio for s in samples]),
        "gt": torch.cat([s.gt for s in samples]),
        "has_gt": torch.cat([s.has_gt for s in samples]),
        "label": torch.cat([torch.full((FRAMES,), s.label) for s in samples]),
        "category": torch.cat([torch.full((FRAMES,), s.category, dtype=torch.long) for s in samples]),
        "kind": [s.kind for s in samples],
        "name": [s.name for s in samples],
    }


class _Negatives:
    """Negative audio for clips, through :class:`NegativeAudioGenerator` (seeded per call)."""

    def __init__(
        self,
        clips: Sequence[tuple[str, AVSClip]],
        cfg: Mapping[str, Any],
        visible: Mapping[str, frozenset[str]] | None = None,
    ):
        self.clips = {f"{subset}/{c.name}": c for subset, c in clips}
        visible = visible or {}
        pool = [
            AudioSample(
                key,
                np.zeros(1, np.float32),
                16000,
                ({c.category} if c.category else set()) | set(visible.get(c.name, ())),
            )
            for key, c in self.clips.items()
        ]
        self.samples = {s.sample_id: s for s in pool}
        weights = {k: float(cfg["kind_weights"].get(k, 0.0)) for k in NEGATIVE_KINDS}
        try:
            self.generator = NegativeAudioGenerator(
                pool=pool,
                proportion=float(cfg["proportion"]),
                kind_weights=weights,
                category_groups=category_groups(cfg.get("category_groups")),
                seed=0,
            )
        except NegativeAudioError as exc:
            raise SetupError(f"data.negatives: {exc}") from exc

    def plan(self, count: int, rng: np.random.Generator) -> list[str | None]:
        self.generator.rng = rng
        return self.generator.plan(count)

    def examples(self, kind: str, key: str, rng: np.random.Generator) -> tuple[torch.Tensor, str]:
        """Log-mel of a ``kind`` negative for clip ``key``; returns (examples, kind actually used)."""
        gen = self.generator
        gen.rng = rng
        if kind == "offscreen":
            try:
                candidates = gen.offscreen_candidates(self.samples[key])
            except NegativeAudioError:
                candidates = []
            if candidates:
                other = candidates[int(rng.integers(len(candidates)))]
                return clip_examples(self.clips[other.sample_id]), "offscreen"
            kind = "noise_fallback"
        if kind == "silence":
            return waveform_to_examples(np.zeros(FRAMES * 16000, np.float32), 16000, num_examples=FRAMES).examples, kind
        neg = gen.white_noise()
        return waveform_to_examples(neg.waveform, neg.sample_rate, num_examples=FRAMES).examples, kind


class AVSTrainData(torch.utils.data.Dataset):
    """Training samples by global sample number (see the module docstring)."""

    def __init__(self, data: Mapping[str, Any], *, image_size: int, seed: int):
        self.clips = read_clips(data, data["train_split"])
        if not self.clips:
            raise SetupError(
                f"no {data['train_split']!r} clips in data.s4_root={data.get('s4_root')!r} / "
                f"data.ms3_root={data.get('ms3_root')!r} (check the meta-data CSV's split column)"
            )
        self.seed = int(seed)
        visible = read_visible(data.get("visible_csv"))
        if visible:
            missing = sum(c.name not in visible for _, c in self.clips)
            if missing:
                print(
                    f"warning: data.visible_csv lists no visible categories for {missing} training clips",
                    file=sys.stderr,
                )
        self.negatives = _Negatives(self.clips, data["negatives"], visible)
        #: the training clips' categories (sorted); a sample's ``category`` indexes this
        self.categories: tuple[str, ...] = tuple(sorted({c.category for _, c in self.clips if c.category}))
        self._category_index = {c: i for i, c in enumerate(self.categories)}
        self.mixed = data.get("mixed") or {}
        self.transform = ClipTransform(image_size=image_size, hflip=float(data.get("hflip", 0.0)))
        self._epochs: dict[int, tuple[np.ndarray, list[str | None]]] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, list[str | None]]:
        """(clip order, negative kind per position) of one epoch."""
        if epoch not in self._epochs:
            order = item_rng(self.seed, 0, epoch).permutation(len(self.clips))
            kinds = self.negatives.plan(len(self.clips), item_rng(self.seed, 1, epoch))
            self._epochs = {epoch: (order, kinds)}
        return self._epochs[epoch]

    def __getitem__(self, n: int) -> Sample:
        epoch, pos = divmod(int(n), len(self.clips))
        order, kinds = self.epoch_plan(epoch)
        subset, clip = self.clips[int(order[pos])]
        kind = kinds[pos] or "positive"
        rng = item_rng(self.seed, 2, n)
        frames, masks = self.transform(clip.load_frames(), clip.load_masks(), rng)
        key = f"{subset}/{clip.name}"
        if kind == "positive":
            audio = clip_examples(clip)
            mix = float(self.mixed.get("proportion", 0.0))
            if mix > 0 and rng.random() < mix and clip.wav_path is not None:
                wave, rate = clip.load_audio()
                mixed = self.negatives.generator
                mixed.rng = rng
                noisy = mixed.mixed(AudioSample(key, wave, rate), snr_db=float(self.mixed.get("snr_db", 0.0)))
                audio = waveform_to_examples(noisy.waveform, noisy.sample_rate, num_examples=FRAMES).examples
                kind = "mixed"
        else:
            audio, kind = self.negatives.examples(kind, key, rng)
        negative = kind not in ("positive", "mixed")
        gt = torch.zeros(FRAMES, 1, *frames.shape[-2:])
        has_gt = torch.zeros(FRAMES, dtype=torch.bool)
        count = min(FRAMES, masks.shape[0])
        has_gt[:count] = True
        if not negative:
            gt[:count] = masks[:count]
        category = self._category_index.get(clip.category, -1)
        return Sample(frames, audio, gt, has_gt, 0.0 if negative else 1.0, kind, key, category)


# ----------------------------------------------------------------------------- evaluation
@dataclass
class EvalItem:
    name: str
    condition: str
    frames: np.ndarray  # 5 x S x S x 3 uint8 (resized)
    reference: np.ndarray  # M x S x S bool, the clip's original ground truth
    audio: torch.Tensor  # 5 x 1 x 96 x 64


class AVSEvalData:
    """The evaluation samples (see the module docstring), loaded once and kept in memory."""

    def __init__(self, data: Mapping[str, Any], eval_cfg: Mapping[str, Any], *, image_size: int, seed: int):
        split = data["eval_split"]
        self.items: list[EvalItem] = []
        max_clips = int(eval_cfg.get("max_clips", 0)) or None
        conditions = tuple(eval_cfg.get("conditions", ("positive", *NEGATIVE_KINDS)))
        robust_root = eval_cfg.get("robust_root")
        transform = ClipTransform(image_size=image_size)
        frames_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def load(clip: AVSClip) -> tuple[np.ndarray, np.ndarray]:
            if clip.name not in frames_cache:
                f, m = transform(clip.load_frames(), clip.load_masks())
                frames_cache[clip.name] = (
                    (f.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy(),
                    m[:, 0].numpy().astype(bool),
                )
            return frames_cache[clip.name]

        if robust_root:
            subset = str(eval_cfg.get("robust_subset", "s4"))
            avs_root = data.get("s4_root") if subset == "s4" else data.get("ms3_root")
            robust = AVSBenchRobust(robust_root, split, subset=subset, avs_root=avs_root or None)
            names = list(dict.fromkeys(s.name for s in robust))[:max_clips]
            for s in robust:
                if s.name not in names or s.condition not in conditions:
                    continue
                wave, rate = s.load_audio()
                frames, ref = load(s.clip)
                audio = waveform_to_examples(wave, rate, num_examples=FRAMES).examples
                self.items.append(EvalItem(s.name, s.condition, frames, ref, audio))
            return
        clips = read_clips(data, split)[:max_clips]
        gen = _Negatives(clips, {**data["negatives"], "proportion": 0.0})
        for i, (subset, clip) in enumerate(clips):
            frames, ref = load(clip)
            if not ref.any():
                continue  # mIoU_N needs a non-empty reference (see perception_eval.metrics.robust)
            key = f"{subset}/{clip.name}"
            for j, condition in enumerate(conditions):
                if condition == "positive":
                    audio = clip_examples(clip)
                else:
                    audio, used = gen.examples(condition, key, item_rng(seed, 3, i, j))
                    if used != condition:
                        continue  # no off-screen partner among the evaluation clips
                self.items.append(EvalItem(clip.name, condition, frames, ref, audio))

    def __len__(self) -> int:
        return len(self.items)
