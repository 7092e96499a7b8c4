"""``sensor_msgs/Image`` <-> NumPy, through ROS 2 ``cv_bridge`` when it is importable, else our own code.

ROS 2's ``cv_bridge`` is not on PyPI (the PyPI ``cv-bridge`` is a 2020 ROS 1
port that fails on NumPy 2 and is never used here). In the Docker image the
real one is present and used; in the pip environment the built-in conversion
below runs, which gives identical arrays for the encodings listed in
:data:`ENCODINGS` (a test checks this where both exist). :data:`BACKEND` says
which one is in force; nodes log it at start.

Only the message's plain attributes are touched, so this module imports
without rclpy.
"""

from __future__ import annotations

import sys

import numpy as np

from perception_common.images import ImageError, to_rgb8

# encoding -> (dtype, channels, channel order for to_rgb8)
ENCODINGS = {
    "rgb8": (np.uint8, 3, "rgb"),
    "bgr8": (np.uint8, 3, "bgr"),
    "rgba8": (np.uint8, 4, "rgb"),
    "bgra8": (np.uint8, 4, "bgr"),
    "mono8": (np.uint8, 1, "rgb"),
    "8UC1": (np.uint8, 1, "rgb"),
    "8UC3": (np.uint8, 3, "bgr"),
    "mono16": (np.uint16, 1, "rgb"),
    "16UC1": (np.uint16, 1, "rgb"),
}


def _load_cv_bridge():
    try:
        from cv_bridge import CvBridge  # ROS 2 cv_bridge (Docker image)

        bridge = CvBridge()
        # The PyPI ROS 1 port imports but breaks on NumPy 2: prove it works once.
        probe = np.zeros((2, 3, 3), np.uint8)
        bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(probe, "rgb8"), "passthrough")
        return bridge
    except Exception:
        return None


_BRIDGE = _load_cv_bridge()
BACKEND = "cv_bridge" if _BRIDGE is not None else "builtin"


def imgmsg_to_array(msg, *, use_bridge: bool = True) -> np.ndarray:
    """Decode an Image message to ``H x W`` or ``H x W x C`` in the message's own encoding.

    Raises:
        ImageError: unsupported encoding, zero size, or a data/step/size mismatch (named).
    """
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageError(f"unsupported image encoding {enc!r}; supported: {', '.join(ENCODINGS)}")
    if msg.width == 0 or msg.height == 0:
        raise ImageError(f"empty image ({msg.width}x{msg.height})")
    dtype, channels, _ = ENCODINGS[enc]
    itemsize = np.dtype(dtype).itemsize
    row = msg.width * channels * itemsize
    if msg.step < row:
        raise ImageError(f"image step {msg.step} is smaller than width*channels*bytes = {row} ({enc})")
    if len(msg.data) < msg.step * msg.height:
        raise ImageError(f"image data has {len(msg.data)} bytes, expected step*height = {msg.step * msg.height}")
    if use_bridge and _BRIDGE is not None:
        return np.asarray(_BRIDGE.imgmsg_to_cv2(msg, "passthrough"))
    buf = np.frombuffer(_buffer(msg.data), dtype=np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    buf = buf[:, :row]
    big = bool(msg.is_bigendian)
    arr = np.ascontiguousarray(buf).view(np.dtype(dtype).newbyteorder(">" if big else "<"))
    arr = arr.reshape(msg.height, msg.width, channels).astype(dtype, copy=False)
    if channels == 1:
        arr = arr[:, :, 0]
    if arr.dtype.byteorder not in ("=", "|") and arr.dtype.byteorder != ("<" if sys.byteorder == "little" else ">"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr)


def imgmsg_to_rgb8(msg) -> np.ndarray:
    """Decode any supported Image message to ``H x W x 3`` RGB uint8 (see :func:`images.to_rgb8`)."""
    arr = imgmsg_to_array(msg)
    return to_rgb8(arr, channel_order=ENCODINGS[msg.encoding][2])


def array_to_imgmsg(array: np.ndarray, encoding: str, header=None, *, use_bridge: bool = True):
    """Encode ``array`` (``H x W`` or ``H x W x C`` matching ``encoding``) as an Image message."""
    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported image encoding {encoding!r}")
    dtype, channels, _ = ENCODINGS[encoding]
    arr = np.asarray(array)
    if arr.dtype != dtype:
        raise ImageError(f"{encoding} needs dtype {np.dtype(dtype)}, got {arr.dtype}")
    shape_ok = arr.ndim == 2 if channels == 1 else (arr.ndim == 3 and arr.shape[2] == channels)
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr, shape_ok = arr[:, :, 0], True
    if not shape_ok:
        raise ImageError(f"{encoding} needs {channels} channel(s), got array of shape {arr.shape}")
    if use_bridge and _BRIDGE is not None:
        msg = _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(arr), encoding)
    else:
        arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
        msg = Image()
        msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
        msg.encoding = encoding
        msg.is_bigendian = 0
        msg.step = int(arr.shape[1] * channels * arr.dtype.itemsize)
        msg.data = arr.tobytes()
    if header is not None:
        msg.header = header
    return msg


def mask_to_imgmsg(mask: np.ndarray, header=None):
    """A boolean mask as a mono8 0/255 Image."""
    # bool viewed as 0/1 bytes, times 255 in uint8: no int64 temporary (np.where(mask, 255, 0) took ~1 ms at 640x480)
    return array_to_imgmsg(np.asarray(mask, bool).view(np.uint8) * np.uint8(255), "mono8", header)


def _buffer(data):
    """The message's bytes without a copy where they expose the buffer protocol (rclpy gives ``array.array``)."""
    try:
        memoryview(data)
    except TypeError:  # a plain sequence of ints
        return bytes(data)
    return data
