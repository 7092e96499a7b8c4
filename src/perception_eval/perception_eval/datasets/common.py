"""Shared pieces of the dataset readers: the error type, index-mask PNG I/O, small path checks.

Index masks
-----------
DAVIS-2017, Ref-YouTube-VOS, Refer-DAVIS-17 and InsTrack annotations are *palette* ("P" mode) PNGs whose
pixel values are object ids (0 = background, 255 = void in DAVIS). OpenCV's ``cv2.imread`` converts a
palette PNG to BGR colours even with ``IMREAD_UNCHANGED`` in most builds, which loses the ids; PIL keeps
the indices (``np.asarray(Image.open(p))`` of a "P" image is the index array). So masks are read and
written with PIL here.

:func:`write_index_mask` writes a palette PNG with the DAVIS palette (the PASCAL-VOC colour map:
id 0 black, 1 dark red, 2 dark green, ..., 255 = (224, 224, 192), the colour DAVIS uses for void), so a
written file looks like, and reads back exactly like, a DAVIS annotation.

:func:`read_index_mask` returns a ``uint8`` (or ``uint16`` for 16-bit PNGs) ``H x W`` array of ids.
Accepted modes: "P" (indices), "L" (grey values taken as ids -- AVSBench's 0/255 masks), "I;16"/"I"
(ids), "1" (0/1), "LA"/"PA" (alpha dropped) and "RGB"/"RGBA" only when all colour channels are equal
(a grey image saved as colour); any other colour image is refused, since its colours are not ids.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike

__all__ = [
    "DatasetError",
    "davis_palette",
    "read_binary_mask",
    "read_csv_table",
    "read_index_mask",
    "read_json",
    "read_rgb",
    "require_dir",
    "require_file",
    "write_index_mask",
]


class DatasetError(Exception):
    """A dataset folder is missing a file or folder, or a file does not have the expected content.

    ``path`` is the offending file or folder (``None`` when the problem is not tied to one path); it is
    always also named in the message.
    """

    def __init__(self, message: str, path: PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


def davis_palette() -> np.ndarray:
    """The DAVIS / PASCAL-VOC colour map as a ``256 x 3`` ``uint8`` array.

    Rule (VOC ``labelcolormap``): for id ``c`` the bits ``c = b0 b1 b2 b3 b4 b5 b6 b7`` (b0 least
    significant) are distributed three at a time, the first triple into bit 7 of (R, G, B), the next into
    bit 6, and so on. Id 1 -> (128, 0, 0), id 2 -> (0, 128, 0), id 255 -> (224, 224, 192).
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    return palette


def require_file(path: PathLike, what: str = "file") -> Path:
    """Return ``Path(path)`` if it is an existing file, else raise :class:`DatasetError` naming it."""
    path = Path(path)
    if not path.is_file():
        reason = "is a folder, not a file" if path.is_dir() else "is missing"
        raise DatasetError(f"{what} {str(path)!r} {reason}", path)
    return path


def require_dir(path: PathLike, what: str = "folder") -> Path:
    """Return ``Path(path)`` if it is an existing folder, else raise :class:`DatasetError` naming it."""
    path = Path(path)
    if not path.is_dir():
        reason = "is a file, not a folder" if path.exists() else "is missing"
        raise DatasetError(f"{what} {str(path)!r} {reason}", path)
    return path


def read_index_mask(path: PathLike) -> np.ndarray:
    """Read an index (id) mask PNG as an ``H x W`` integer array; see the module docstring for modes.

    Raises :class:`DatasetError` naming the file when it is missing, unreadable, or a colour image.
    """
    from PIL import Image

    path = require_file(path, "mask")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("P", "PA"):
                array = np.asarray(image.convert("P") if mode == "PA" else image)
            elif mode in ("L", "LA"):
                array = np.asarray(image.getchannel(0))
            elif mode == "1":
                array = np.asarray(image, dtype=np.uint8)
            elif mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image)
                if array.size and (array.min() < 0 or array.max() > 65535):
                    raise DatasetError(f"mask {str(path)!r} has ids outside 0..65535", path)
                array = array.astype(np.uint16) if array.dtype != np.uint8 else array
            elif mode in ("RGB", "RGBA"):
                rgb = np.asarray(image)[..., :3]
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise DatasetError(
                        f"mask {str(path)!r} is a colour ({mode}) image, not an index/palette mask", path
                    )
                array = rgb[..., 0]
            else:
                raise DatasetError(f"mask {str(path)!r} has unsupported PNG mode {mode!r}", path)
    except DatasetError:
        raise
    except (OSError, ValueError) as error:
        raise DatasetError(f"mask {str(path)!r} cannot be read: {error}", path) from error
    return np.array(array, copy=True)


def write_index_mask(path: PathLike, array: np.ndarray) -> Path:
    """Write an ``H x W`` id array (values 0..255) as a palette PNG with the DAVIS palette.

    Boolean arrays are written as ids 0/1. Parent folders are created. Returns the path written.
    Raises ``ValueError`` for a non-2-D array or ids outside 0..255.
    """
    from PIL import Image

    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"index mask must be H x W, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"index mask ids must be in 0..255, got {array.min()}..{array.max()}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))  # mode "L"
    image.putpalette(davis_palette().reshape(-1).tolist())  # turns an "L" image into "P", ids kept
    image.save(path, format="PNG")
    return path


def read_binary_mask(path: PathLike) -> np.ndarray:
    """Read an AVSBench-style ground-truth mask as ``bool`` ``H x W`` (True = sounding object).

    Rule: grey / colour images are binarised exactly as the AVSBench S4 loader does,
    ``Image.open(p).convert("1")`` (PIL: value >= 128 is white for 0/255 masks; intermediate greys are
    Floyd-Steinberg dithered as there). Palette images are index masks: id != 0 is foreground (PIL's
    ``convert("1")`` would go through the palette colours instead). AVSBench masks are 0/255, for which
    this equals both official loaders (S4: mode "1"; MS3: mode "P" / 255).
    """
    from PIL import Image

    path = require_file(path, "mask")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "PA"):
                return np.asarray(image.convert("P") if image.mode == "PA" else image) != 0
            return np.array(image.convert("1"), dtype=bool)
    except (OSError, ValueError) as error:
        raise DatasetError(f"mask {str(path)!r} cannot be read: {error}", path) from error


def read_rgb(path: PathLike) -> np.ndarray:
    """Read an image file as ``H x W x 3`` RGB ``uint8``; :class:`DatasetError` naming it when missing/unreadable."""
    import cv2

    path = require_file(path, "frame")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"frame {str(path)!r} cannot be read as an image", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_json(path: PathLike, what: str = "JSON file"):
    """Parse a JSON file; :class:`DatasetError` naming it when missing or malformed."""
    import json

    path = require_file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise DatasetError(f"{what} {str(path)!r} is not valid JSON: {error}", path) from error


def read_csv_table(
    path: PathLike, required: tuple[str, ...] = (), what: str = "CSV file"
) -> tuple[list[str], list[dict]]:
    """Read a CSV with a header row: ``(header, rows as dicts)``.

    Raises :class:`DatasetError` naming the file when it is missing, has no header, or lacks one of the
    ``required`` columns (surrounding spaces in column names are stripped).
    """
    import csv

    path = require_file(path, what)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = [column.strip() for column in next(reader)]
        except StopIteration:
            raise DatasetError(f"{what} {str(path)!r} is empty (no header row)", path) from None
        missing = [column for column in required if column not in header]
        if missing:
            raise DatasetError(f"{what} {str(path)!r} lacks column(s) {missing}; header is {header}", path)
        rows = []
        for values in reader:
            if not any(value.strip() for value in values):
                continue
            rows.append({column: (values[i].strip() if i < len(values) else "") for i, column in enumerate(header)})
    return header, rows
