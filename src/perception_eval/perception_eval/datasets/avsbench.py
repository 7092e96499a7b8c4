"""AVSBench S4 (single source) and MS3 (multiple sources) readers, following the official AVSBench code.

Layouts (checked against OpenNLPLab/AVSBench ``avs_scripts/avs_{s4,ms3}/{config,dataloader}.py`` and
``preprocess_scripts/preprocess_{s4,ms3}.py``)::

    S4  <root>/s4_meta_data.csv                      header; columns name, ..., category, ..., split
        <data>/visual_frames/<split>/<category>/<name>/<name>_<i>.png     i = 1..5
        <data>/gt_masks/<split>/<category>/<name>/<name>_<i>.png          0/255; train: i = 1 only
        <data>/audio_wav/<split>/<category>/<name>.wav
        <data>/audio_log_mel/<split>/<category>/<name>.pkl                (pickled VGGish examples [5,1,96,64])

    MS3 <root>/ms3_meta_data.csv                     header; columns name (first), ..., split
        <data>/visual_frames/<name>/<name>.mp4_<i>.png                     i = 1..5, NO split / category level
        <data>/gt_masks/<split>/<name>/<name>_<i>.png                      i = 1..5 in every split
        <data>/audio_wav/<split>/<name>.wav
        <data>/audio_log_mel/<split>/<name>.pkl

``<data>`` is ``<root>/s4_data`` (``<root>/ms3_data``) when that folder exists -- the official release,
``Single-source/{s4_meta_data.csv, s4_data/...}`` -- and ``<root>`` itself otherwise (the team's generated
worlds put the folders directly beside the CSV).

Rules:
    * Rows are those whose ``split`` column equals the split. The official loaders take the name from the
      first column and (S4) the category from the third; here the ``name`` / ``category`` columns are used
      when the header has them, else those positions. Other columns are kept in ``AVSClip.extra``.
    * 5 frames per clip. Masks: S4 ``train`` has one (frame 1, ``mask_num = 1``), other S4 splits and every
      MS3 split have 5, as the official loaders read them.
    * Audio: ``audio="any"`` (default) needs the ``.wav`` or the ``.pkl`` of each clip, ``"wav"`` /
      ``"log_mel"`` need that one; the other path is given when it exists, else ``None``.
    * Every file a clip needs is checked when the reader is built; the first missing one raises
      :class:`DatasetError` naming it.
    * Masks load as ``bool`` by :func:`~perception_eval.datasets.common.read_binary_mask` (the S4 loader's
      ``convert("1")``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import DatasetError, PathLike, read_binary_mask, read_csv_table, read_rgb, require_dir, require_file

__all__ = ["FRAMES_PER_CLIP", "AVSBenchMS3", "AVSBenchS4", "AVSClip"]

FRAMES_PER_CLIP = 5


@dataclass(frozen=True)
class AVSClip:
    """One AVSBench clip: 5 frames, its ground-truth masks (1 or 5), its audio files."""

    name: str
    category: str | None
    split: str
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...]
    wav_path: Path | None
    log_mel_path: Path | None
    extra: dict[str, Any] = field(default_factory=dict)

    def load_frames(self) -> np.ndarray:
        """``T x H x W x 3`` RGB ``uint8``."""
        return np.stack([read_rgb(p) for p in self.frame_paths])

    def load_masks(self) -> np.ndarray:
        """``M x H x W`` bool ground truth (M = len(mask_paths): frames 1..M)."""
        return np.stack([read_binary_mask(p) for p in self.mask_paths])

    def load_audio(self) -> tuple[np.ndarray, int]:
        """``(samples float32, sample_rate)`` of the wav (``soundfile``); :class:`DatasetError` without one."""
        if self.wav_path is None:
            raise DatasetError(f"clip {self.name!r} has no .wav file (only {self.log_mel_path})")
        import soundfile

        samples, rate = soundfile.read(str(require_file(self.wav_path, "audio")), dtype="float32")
        return samples, int(rate)


class _AVSBenchReader:
    csv_name = ""
    data_folder = ""

    def __init__(self, root: PathLike, split: str, *, audio: str = "any"):
        if audio not in ("any", "wav", "log_mel"):
            raise ValueError(f"audio must be 'any', 'wav' or 'log_mel', got {audio!r}")
        self.root = require_dir(root, f"{type(self).__name__} root")
        self.split = split
        self.audio = audio
        self.csv_path = self.root / self.csv_name
        self.header, rows = read_csv_table(self.csv_path, required=("split",), what="AVSBench meta-data CSV")
        official = self.root / self.data_folder
        self.data_dir = official if official.is_dir() else self.root
        clips = [self._clip(row) for row in rows if row["split"] == split]
        self._clips = {clip.name: clip for clip in clips}
        if len(self._clips) != len(clips):
            raise DatasetError(
                f"AVSBench meta-data CSV {str(self.csv_path)!r} repeats a name in {split!r}", self.csv_path
            )

    def _column(self, row: dict[str, str], name: str, position: int) -> str:
        if name in self.header:
            return row[name]
        if position >= len(self.header):
            raise DatasetError(f"AVSBench meta-data CSV {str(self.csv_path)!r} has no {name!r} column", self.csv_path)
        return row[self.header[position]]

    def _audio_paths(self, wav: Path, log_mel: Path) -> tuple[Path | None, Path | None]:
        wav_ok, mel_ok = wav.is_file(), log_mel.is_file()
        if self.audio == "wav":
            require_file(wav, "audio")
        elif self.audio == "log_mel":
            require_file(log_mel, "log-mel file")
        elif not (wav_ok or mel_ok):
            raise DatasetError(f"audio of clip is missing: neither {str(wav)!r} nor {str(log_mel)!r} exists", wav)
        return (wav if wav_ok else None), (log_mel if mel_ok else None)

    def _clip(self, row: dict[str, str]) -> AVSClip:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._clips)

    def __len__(self) -> int:
        return len(self._clips)

    def __iter__(self) -> Iterator[AVSClip]:
        return iter(self._clips.values())

    def __getitem__(self, name: str) -> AVSClip:
        try:
            return self._clips[name]
        except KeyError:
            raise KeyError(f"clip {name!r} is not in {type(self).__name__} {self.split}") from None


def _require_all(paths: list[Path], what: str) -> tuple[Path, ...]:
    for path in paths:
        require_file(path, what)
    return tuple(paths)


class AVSBenchS4(_AVSBenchReader):
    """AVSBench single-source (S4) clips of one split (``train`` / ``val`` / ``test``)."""

    csv_name = "s4_meta_data.csv"
    data_folder = "s4_data"

    def _clip(self, row: dict[str, str]) -> AVSClip:
        name = self._column(row, "name", 0)
        category = self._column(row, "category", 2)
        split, data = self.split, self.data_dir
        frame_dir = data / "visual_frames" / split / category / name
        mask_dir = data / "gt_masks" / split / category / name
        mask_count = 1 if split == "train" else FRAMES_PER_CLIP
        frames = _require_all([frame_dir / f"{name}_{i}.png" for i in range(1, FRAMES_PER_CLIP + 1)], "frame")
        masks = _require_all([mask_dir / f"{name}_{i}.png" for i in range(1, mask_count + 1)], "mask")
        wav, log_mel = self._audio_paths(
            data / "audio_wav" / split / category / f"{name}.wav",
            data / "audio_log_mel" / split / category / f"{name}.pkl",
        )
        extra = {k: v for k, v in row.items() if k not in ("name", "category", "split")}
        return AVSClip(name, category, split, frames, masks, wav, log_mel, extra)


class AVSBenchMS3(_AVSBenchReader):
    """AVSBench multi-source (MS3) clips of one split, in the official MS3 layout (see module docstring)."""

    csv_name = "ms3_meta_data.csv"
    data_folder = "ms3_data"

    def _clip(self, row: dict[str, str]) -> AVSClip:
        name = self._column(row, "name", 0)
        category = row.get("category") or None
        split, data = self.split, self.data_dir
        frame_dir = data / "visual_frames" / name
        frames = _require_all([frame_dir / f"{name}.mp4_{i}.png" for i in range(1, FRAMES_PER_CLIP + 1)], "frame")
        mask_dir = data / "gt_masks" / split / name
        masks = _require_all([mask_dir / f"{name}_{i}.png" for i in range(1, FRAMES_PER_CLIP + 1)], "mask")
        wav, log_mel = self._audio_paths(
            data / "audio_wav" / split / f"{name}.wav", data / "audio_log_mel" / split / f"{name}.pkl"
        )
        extra = {k: v for k, v in row.items() if k not in ("name", "category", "split")}
        return AVSClip(name, category, split, frames, masks, wav, log_mel, extra)
