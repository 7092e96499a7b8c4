"""Image message conversion: built-in code, ROS 2 cv_bridge where present, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from perception_common.images import ImageError, to_rgb8
from perception_nodes import image_msgs

ENCODED = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "mono8": (np.uint8, 1),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono16": (np.uint16, 1),
}


def _array(encoding, h=5, w=7, seed=0):
    dtype, c = ENCODED[encoding]
    rng = np.random.default_rng(seed)
    hi = 65535 if dtype == np.uint16 else 255
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, hi + 1, size=shape).astype(dtype)


@pytest.mark.parametrize("encoding", ENCODED)
def test_builtin_round_trip(encoding, ros_available):
    arr = _array(encoding)
    msg = image_msgs.array_to_imgmsg(arr, encoding, use_bridge=False)
    assert msg.encoding == encoding and msg.height == 5 and msg.width == 7
    back = image_msgs.imgmsg_to_array(msg, use_bridge=False)
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)


def test_bigendian_mono16_and_padded_rows(ros_available):
    from sensor_msgs.msg import Image

    arr = np.array([[1, 256, 65535], [4660, 0, 2]], np.uint16)
    pad = 2  # two bytes of padding at the end of each row
    raw = b"".join(arr[r].astype(">u2").tobytes() + b"\xee" * pad for r in range(2))
    msg = Image(height=2, width=3, encoding="mono16", is_bigendian=1, step=6 + pad, data=raw)
    np.testing.assert_array_equal(image_msgs.imgmsg_to_array(msg, use_bridge=False), arr)


def test_to_rgb8_conversions():
    gray = np.array([[0, 128], [255, 7]], np.uint8)
    np.testing.assert_array_equal(to_rgb8(gray), np.stack([gray] * 3, axis=2))
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[0, 0] = (1, 2, 3)
    assert tuple(to_rgb8(bgr, channel_order="bgr")[0, 0]) == (3, 2, 1)
    rgba = np.zeros((1, 1, 4), np.uint8)
    rgba[0, 0] = (9, 8, 7, 0)
    assert tuple(to_rgb8(rgba)[0, 0]) == (9, 8, 7)
    assert tuple(to_rgb8(np.full((1, 1), 65535, np.uint16))[0, 0]) == (255, 255, 255)
    assert tuple(to_rgb8(np.full((1, 1), 257 * 100, np.uint16))[0, 0]) == (100, 100, 100)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 2), np.uint8), "2 channels"),
        (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
        (np.zeros((2, 2, 3), np.int64), "dtype"),
        (np.zeros((2, 2, 3, 1), np.uint8), "shape"),
    ],
)
def test_to_rgb8_rejects_bad_frames(frame, match):
    with pytest.raises(ImageError, match=match):
        to_rgb8(frame)


def test_bad_messages_name_the_problem(ros_available):
    from sensor_msgs.msg import Image

    good = image_msgs.array_to_imgmsg(_array("rgb8"), "rgb8", use_bridge=False)
    cases = {
        "unsupported image encoding 'yuv422'": Image(height=2, width=2, encoding="yuv422", step=4, data=b"\0" * 8),
        "empty image": Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        "step 5 is smaller": Image(height=5, width=7, encoding="rgb8", step=5, data=bytes(good.data)),
        "expected step\\*height": Image(height=5, width=7, encoding="rgb8", step=21, data=bytes(good.data)[:50]),
    }
    for match, msg in cases.items():
        with pytest.raises(ImageError, match=match):
            image_msgs.imgmsg_to_rgb8(msg)


@pytest.mark.parametrize("encoding", ENCODED)
def test_cv_bridge_and_builtin_agree(encoding, ros_available):
    if image_msgs.BACKEND != "cv_bridge":
        pytest.skip("ROS 2 cv_bridge is not importable here (pip environment); it is in the Docker image")
    arr = _array(encoding, seed=3)
    via_bridge = image_msgs.array_to_imgmsg(arr, encoding, use_bridge=True)
    via_builtin = image_msgs.array_to_imgmsg(arr, encoding, use_bridge=False)
    np.testing.assert_array_equal(image_msgs.imgmsg_to_array(via_bridge, use_bridge=False), arr)
    np.testing.assert_array_equal(image_msgs.imgmsg_to_array(via_builtin, use_bridge=True), arr)


def test_mask_to_box_is_the_tight_box_of_the_mask():
    from perception_common.images import mask_to_box

    def reference(mask):
        ys, xs = np.nonzero(mask)
        if xs.size == 0:
            return (0, 0, 0, 0)
        return (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))

    rng = np.random.default_rng(0)
    masks = [np.zeros((48, 64), bool), np.ones((48, 64), bool), np.zeros((1, 1), bool), np.ones((1, 1), bool)]
    for _ in range(50):
        m = np.zeros((48, 64), bool)
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, 48), rng.integers(0, 64)
            m[y : y + rng.integers(1, 20), x : x + rng.integers(1, 20)] = True
        masks.append(m)
    masks.append(rng.random((48, 64)) < 0.01)
    masks.append(np.where(rng.random((48, 64)) < 0.05, 255, 0).astype(np.uint8))  # 0/255 counts as a mask too
    for m in masks:
        assert mask_to_box(m) == reference(m)
    with pytest.raises(ValueError, match="H x W"):
        mask_to_box(np.zeros((2, 2, 2), bool))
