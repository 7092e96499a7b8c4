"""AVSBench-Robust reader: the audio condition of every sample, over an AVSBench S4 / MS3 layout.

Layout (the team's; the paper's released code instead keeps separate log-mel folders per condition)::

    <root>/robust_<split>.csv        header; columns name, category, condition, audio_path (+ any others)
    <avs_root>/...                   the AVSBench S4 (default) or MS3 layout of the same split, for the
                                     frames and the original ground truth; ``avs_root`` defaults to ``root``

Rules:
    * ``condition`` is one of ``positive``, ``silence``, ``noise``, ``offscreen``, ``mixed`` (case and
      ``-``/``_`` ignored: ``off-screen`` is ``offscreen``). ``silence``, ``noise`` and ``offscreen`` are
      negatives: the expected output is an EMPTY mask in every frame. ``mixed`` (noise added to the true audio)
      and ``positive`` expect the original ground truth.
    * ``audio_path`` is relative to ``root`` and must exist.
    * ``name`` must be a clip of the AVSBench split (and ``category``, when given, its category).
    * For every sample the clip's original ground truth stays available (:meth:`RobustSample.reference_masks`):
      AVSBench-Robust's mIoU_N / F_N of a negative sample are measured against it (see
      :mod:`perception_eval.metrics.robust`).
    * Problems raise :class:`DatasetError` naming the file (and the CSV line).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.robust import NEGATIVE_CONDITIONS, normalize_condition
from .avsbench import AVSBenchMS3, AVSBenchS4, AVSClip
from .common import DatasetError, PathLike, read_csv_table, require_dir, require_file

__all__ = ["AVSBenchRobust", "RobustSample"]


@dataclass(frozen=True)
class RobustSample:
    """One (clip, audio condition) pair."""

    name: str
    category: str | None
    condition: str
    audio_path: Path
    clip: AVSClip
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_negative(self) -> bool:
        """True for silence, noise and off-screen audio (the sounding object is absent)."""
        return self.condition in NEGATIVE_CONDITIONS

    def reference_masks(self) -> np.ndarray:
        """The clip's original ground truth (``M x H x W`` bool), whatever the condition."""
        return self.clip.load_masks()

    def expected_masks(self) -> np.ndarray:
        """What a correct model outputs: empty masks for negatives, the original ground truth otherwise."""
        masks = self.reference_masks()
        return np.zeros_like(masks) if self.is_negative else masks

    def load_audio(self) -> tuple[np.ndarray, int]:
        """``(samples float32, sample_rate)`` of this condition's audio file."""
        import soundfile

        samples, rate = soundfile.read(str(require_file(self.audio_path, "audio")), dtype="float32")
        return samples, int(rate)


class AVSBenchRobust:
    """Samples of ``<root>/robust_<split>.csv`` joined with the AVSBench clips of the split.

    ``subset="s4"`` (default) or ``"ms3"`` picks the AVSBench layout; ``audio`` is passed to that reader
    (its rule for the clips' own wav / log-mel files; the CSV's ``audio_path`` is always required).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "test",
        *,
        subset: str = "s4",
        avs_root: PathLike | None = None,
        audio: str = "any",
    ):
        self.root = require_dir(root, "AVSBench-Robust root")
        self.split = split
        readers = {"s4": AVSBenchS4, "ms3": AVSBenchMS3}
        if subset not in readers:
            raise ValueError(f"subset must be 's4' or 'ms3', got {subset!r}")
        self.avs = readers[subset](self.root if avs_root is None else avs_root, split, audio=audio)
        self.csv_path = self.root / f"robust_{split}.csv"
        _, rows = read_csv_table(
            self.csv_path, required=("name", "category", "condition", "audio_path"), what="AVSBench-Robust CSV"
        )
        self.samples: tuple[RobustSample, ...] = tuple(
            self._sample(row, line) for line, row in enumerate(rows, start=2)
        )

    def _sample(self, row: dict[str, str], line: int) -> RobustSample:
        where = f"{str(self.csv_path)!r} line {line}"
        try:
            condition = normalize_condition(row["condition"])
        except ValueError as error:
            raise DatasetError(f"AVSBench-Robust CSV {where}: {error}", self.csv_path) from None
        name = row["name"]
        try:
            clip = self.avs[name]
        except KeyError:
            raise DatasetError(
                f"AVSBench-Robust CSV {where}: clip {name!r} is not in {type(self.avs).__name__} {self.split} "
                f"({str(self.avs.csv_path)!r})",
                self.csv_path,
            ) from None
        category = row["category"] or None
        if category is not None and clip.category is not None and category != clip.category:
            raise DatasetError(
                f"AVSBench-Robust CSV {where}: category {category!r} of {name!r} differs from {clip.category!r}",
                self.csv_path,
            )
        if not row["audio_path"]:
            raise DatasetError(f"AVSBench-Robust CSV {where}: empty audio_path", self.csv_path)
        audio_path = require_file(self.root / row["audio_path"], f"audio ({where})")
        extra = {k: v for k, v in row.items() if k not in ("name", "category", "condition", "audio_path")}
        return RobustSample(name, category or clip.category, condition, audio_path, clip, extra)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[RobustSample]:
        return iter(self.samples)

    def by_condition(self, condition: str) -> tuple[RobustSample, ...]:
        """Samples of one condition (name normalised as in the CSV)."""
        wanted = normalize_condition(condition)
        return tuple(s for s in self.samples if s.condition == wanted)

    @property
    def conditions(self) -> tuple[str, ...]:
        """Conditions present, in first-seen order."""
        return tuple(dict.fromkeys(s.condition for s in self.samples))
