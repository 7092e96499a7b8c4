"""Contact sheets of generated worlds, read back from the files on disk, for a person to look at.

* :func:`instruction_preview` -- one row per instruction: a few frames with the target's mask overlaid and
  the instruction text (kind, template id, held-out flags) under them.
* :func:`audiovisual_preview` -- one row per clip: frames with the sounding object's mask overlaid and
  spectrograms of the clip's audio under each condition written for it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from ..datasets.common import read_index_mask

__all__ = ["audiovisual_preview", "instruction_preview"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_OUTLINE = (0, 255, 255)


def _overlay(img: np.ndarray, mask: np.ndarray, dim: float = 0.45) -> np.ndarray:
    """Dim everything outside ``mask`` and outline the mask in cyan (distinct from every object colour)."""
    m = mask.astype(bool)
    out = img.astype(np.float32)
    out[~m] *= dim
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, _OUTLINE, 1)
    return out


def _text_strip(lines: list[str], width: int, height: int = 38, scale: float = 0.42) -> np.ndarray:
    strip = np.full((height, width, 3), 250, np.uint8)
    for i, line in enumerate(lines[:2]):
        cv2.putText(strip, line, (4, 15 + 17 * i), _FONT, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return strip


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (8 + 7 * len(text), 16), (0, 0, 0), -1)
    cv2.putText(out, text, (3, 12), _FONT, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _save(path: Path, rows: list[np.ndarray]) -> Path:
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    sheet = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def instruction_preview(
    root: str | Path, out_png: str | Path, *, split: str = "test", rows: int = 8, frames_per_row: int = 4
) -> Path:
    """Write a contact sheet of the first ``rows`` instructions of ``split`` to ``out_png``; returns the path.

    Instructions are taken round-robin over kinds (explicit, implicit, relational) so each kind shows.
    """
    root = Path(root)
    meta = json.loads((root / "meta_expressions" / split / "meta_expressions.json").read_text())["videos"]
    by_kind: dict[str, list] = {"explicit": [], "implicit": [], "relational": []}
    for vid, v in meta.items():
        for e in v["expressions"].values():
            by_kind.setdefault(e["kind"], []).append((vid, e))
    picked = []
    k = 0
    while len(picked) < rows and any(by_kind.values()):
        kind = list(by_kind)[k % len(by_kind)]
        if by_kind[kind]:
            picked.append(by_kind[kind].pop(0))
        k += 1
    out_rows = []
    for vid, e in picked:
        frames = meta[vid]["frames"]
        idx = np.linspace(0, len(frames) - 1, frames_per_row).round().astype(int)
        tiles = []
        for i in idx:
            name = frames[int(i)]
            img = cv2.cvtColor(cv2.imread(str(root / split / "JPEGImages" / vid / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
            ids = read_index_mask(root / split / "Annotations" / vid / f"{name}.png")
            tiles.append(_label(_overlay(img, ids == int(e["obj_id"])), f"{vid} #{name}"))
        row = np.concatenate([np.pad(t, ((0, 0), (0, 2), (0, 0)), constant_values=255) for t in tiles], axis=1)
        flags = [f for f in ("template", "combo", "use") if e.get(f"heldout_{f}")]
        held = f" HELD-OUT {'+'.join(flags)}" if flags else ""
        line2 = f"[{e['kind']} {e['template']}{held}] target {e['obj_id']}: {e.get('colour', '')} {e['category']}"
        out_rows.append(np.concatenate([row, _text_strip([f'"{e["exp"]}"', line2], row.shape[1])], axis=0))
    return _save(Path(out_png), out_rows)


def _spectrogram(path: Path, width: int, height: int, max_hz: float = 8000.0) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    n_fft = 512 if rate <= 16000 else 1024
    hop = n_fft // 2
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    n = 1 + (len(audio) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(audio[idx] * np.hanning(n_fft), axis=1)) ** 2
    keep = np.fft.rfftfreq(n_fft, 1.0 / rate) <= max_hz
    db = 10 * np.log10(spec[:, keep].T + 1e-10)
    if not np.any(audio):
        return np.zeros((height, width, 3), np.uint8)  # digital silence
    top = float(db.max())
    img = np.clip((db - (top - 70.0)) / 70.0, 0, 1)[::-1]  # 70 dB below the loudest bin; low frequencies at the bottom
    img = cv2.resize((img * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(cv2.applyColorMap(img, cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB)


def audiovisual_preview(root: str | Path, out_png: str | Path, *, split: str = "test", rows: int = 6) -> Path:
    """Write a contact sheet of ``rows`` clips of ``split``: frames 1, 3 and 5 with the ground-truth mask,
    then a spectrogram (0-8 kHz, 5 s) of the audio of each condition listed for the clip."""
    root = Path(root)
    with open(root / f"robust_{split}.csv", newline="") as f:
        table = list(csv.DictReader(f))
    names: list[str] = []
    for r in table:
        if r["name"] not in names:
            names.append(r["name"])
    # Spread the picks over categories.
    cat_of = {r["name"]: r["category"] for r in table}
    picked, seen = [], set()
    for n in names:
        if cat_of[n] not in seen:
            picked.append(n)
            seen.add(cat_of[n])
        if len(picked) == rows:
            break
    out_rows = []
    for name in picked:
        cat = cat_of[name]
        tiles = []
        for i in (1, 3, 5):
            img = cv2.cvtColor(
                cv2.imread(str(root / "visual_frames" / split / cat / name / f"{name}_{i}.png")), cv2.COLOR_BGR2RGB
            )
            gt = cv2.imread(str(root / "gt_masks" / split / cat / name / f"{name}_{i}.png"), cv2.IMREAD_GRAYSCALE)
            tiles.append(_label(_overlay(img, gt > 127), f"{name}_{i}"))
        h = tiles[0].shape[0]
        for r in (r for r in table if r["name"] == name):
            spec = _spectrogram(root / r["audio_path"], int(h * 1.2), h)
            extra = r.get("audio_category") or ""
            snr = r.get("snr_db") or ""
            tag = r["condition"] + (f": {extra}" if extra and r["condition"] != "positive" else "")
            tag += f" {float(snr):.0f}dB" if snr else ""
            tiles.append(_label(spec, tag))
        row = np.concatenate([np.pad(t, ((0, 0), (0, 2), (0, 0)), constant_values=255) for t in tiles], axis=1)
        out_rows.append(np.concatenate([row, _text_strip([f"{name}: sounding {cat}"], row.shape[1], 22)], axis=0))
    return _save(Path(out_png), out_rows)
