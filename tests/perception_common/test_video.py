"""perception_common.video: frames read one way everywhere; a truncated image is a bad frame, not a good one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception_common.video import FrameSource, VideoError, read_image


@pytest.fixture
def images(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3)).astype(np.uint8)
    for ext in ("jpg", "png"):
        cv2.imwrite(str(tmp_path / f"good.{ext}"), img)
        data = (tmp_path / f"good.{ext}").read_bytes()
        (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) * 2 // 3])
    return tmp_path, img


@pytest.mark.parametrize("ext, why", [("jpg", "truncated JPEG"), ("png", "truncated PNG")])
def test_a_truncated_image_is_an_error_naming_it(images, ext, why):
    folder, img = images
    assert read_image(folder / f"good.{ext}").shape == img.shape
    assert cv2.imread(str(folder / f"cut.{ext}")) is not None or ext == "png"  # OpenCV alone may accept it
    with pytest.raises(VideoError, match=why) as err:
        read_image(folder / f"cut.{ext}")
    assert f"cut.{ext}" in str(err.value)


def test_a_folder_source_skips_truncated_frames(images, tmp_path):
    folder, _ = images
    skipped = []
    frames = list(FrameSource(folder, on_unreadable=lambda path, exc: skipped.append(path.name)))
    assert len(frames) == 2 and sorted(skipped) == ["cut.jpg", "cut.png"]


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(VideoError, match="cannot read image"):
        read_image(tmp_path / "none.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(VideoError, match="cannot read image"):
        read_image(tmp_path / "junk.jpg")
