"""Reading frames from a video file or a folder of images, and writing overlay videos.

Used by the CLIs, the camera node and the evaluation tools, so every entry
point reads frames the same way (RGB uint8, see :mod:`perception_common.images`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .images import ImageError, to_rgb8

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class VideoError(RuntimeError):
    """A video source cannot be opened or read."""


def list_frame_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoError(f"folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as RGB uint8 (16-bit and alpha handled by :func:`to_rgb8`).

    Raises:
        VideoError: the file cannot be decoded, or it is a truncated JPEG or PNG (OpenCV decodes those with the
            missing part grey and only libjpeg's stderr complains: such a frame is not a good frame).
    """
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    truncated = _truncated(data)
    if truncated:
        raise VideoError(f"cannot read image {path}: {truncated}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise VideoError(f"cannot read image {path}")
    return to_rgb8(img, channel_order="bgr")


def _truncated(data: bytes) -> str | None:
    """Why a JPEG or PNG file is cut short, or None (other formats are left to the decoder)."""
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-1024:]:  # trailers after EOI are short
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        return "truncated PNG (no IEND chunk)"
    return None


class FrameSource:
    """Iterate RGB frames from a video file or a folder of images.

    Attributes:
        fps: the file's frame rate, or ``default_fps`` for folders and files
            that do not state one.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        default_fps: float = 30.0,
        on_unreadable: Callable[[Path, Exception], None] | None = None,
    ):
        self.source = Path(source)
        self.on_unreadable = on_unreadable  # folder sources: called for a file that cannot be read, which is skipped
        if not self.source.exists():
            raise VideoError(f"video source {self.source} does not exist")
        self.fps = float(default_fps)
        self._files: list[Path] | None = None
        if self.source.is_dir():
            self._files = list_frame_files(self.source)
        else:
            cap = cv2.VideoCapture(str(self.source))
            if not cap.isOpened():
                raise VideoError(f"cannot open video file {self.source}")
            fps = cap.get(cv2.CAP_PROP_FPS)
            if fps and np.isfinite(fps) and fps > 0:
                self.fps = float(fps)
            cap.release()

    def __len__(self) -> int:
        if self._files is not None:
            return len(self._files)
        cap = cv2.VideoCapture(str(self.source))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        return max(n, 0)

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.indexed():
            yield frame

    def indexed(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(position, frame)`` pairs: the position counts every file of a folder, read or skipped, so
        outputs named by it stay aligned with the source when ``on_unreadable`` skipped a file."""
        if self._files is not None:
            for index, path in enumerate(self._files):
                try:
                    frame = read_image(path)
                except (VideoError, ImageError) as exc:
                    if self.on_unreadable is None:
                        raise
                    self.on_unreadable(path, exc)
                    continue
                yield index, frame
            return
        cap = cv2.VideoCapture(str(self.source))
        try:
            index = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield index, to_rgb8(frame, channel_order="bgr")
                index += 1
        finally:
            cap.release()


class SkippedFrames(list):
    """An ``on_unreadable`` callback for command-line tools: records each skipped file (``file``, ``error``)
    and warns on stderr through tqdm, so a progress bar stays intact."""

    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def __call__(self, path: Path, exc: Exception) -> None:
        from tqdm import tqdm

        self.append({"file": str(path), "error": str(exc)})
        tqdm.write(f"{self.prog}: warning: skipping unreadable frame {path}: {exc}", file=sys.stderr)


class RunOutcome:
    """Records how a ``with`` block ended, so a tool can write its partial results and say why they stop.

    ``error`` is None after a normal exit, else the exception's type and text; the exception propagates.
    """

    def __init__(self) -> None:
        self.error: str | None = None

    def __enter__(self) -> RunOutcome:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc_type is not None:
            self.error = f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__
        return False

    @property
    def complete(self) -> bool:
        return self.error is None


class VideoWriter:
    """Write RGB frames to an MP4 (mp4v) file; the size is fixed by the first frame."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame_rgb: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame_rgb.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise VideoError(f"cannot write video {self.path}")
        self._writer.write(np.ascontiguousarray(frame_rgb[:, :, ::-1]))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
