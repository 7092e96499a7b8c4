"""camera_node: publish ``sensor_msgs/Image`` (rgb8) and ``CameraInfo`` from a V4L2 device, a video file or a folder.

Frames are read in their own thread and stamped with their capture time (the
moment it was read from the device; for a file or folder, the moment it is
published at its paced time). Publishing is keep-last, volatile and reliable by default (see the README on QoS).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from perception_common.images import to_rgb8
from perception_common.params import param
from perception_common.video import FrameSource

from .runtime import declare_and_read, parse_help, run, sensor_qos, wait_for_subscribers

TOPICS = """topics:
  publishes  image_raw    sensor_msgs/msg/Image       rgb8, stamped at capture time
  publishes  camera_info  sensor_msgs/msg/CameraInfo  same stamp as the image"""


@dataclass
class CameraParams:
    source: str = param("/dev/video0", "V4L2 device (/dev/videoN or its index), a video file, or a folder of images")
    rate: float = param(0.0, "publish rate in Hz; 0 = the file's own frame rate (30 for folders and devices)",
                        minimum=0.0)
    loop: bool = param(False, "restart a file or folder at its end")
    frame_id: str = param("camera_optical_frame", "frame_id of the published messages")
    width: int = param(0, "requested device width (0 = device default); files are published at their size", minimum=0)
    height: int = param(0, "requested device height (0 = device default)", minimum=0)
    qos_depth: int = param(5, "publisher queue depth", minimum=1)
    qos_reliability: str = param("reliable", "reliable (default; see README, QoS) or best_effort")
    fx: float = param(0.0, "camera matrix fx for CameraInfo (0 = uncalibrated)", minimum=0.0)
    fy: float = param(0.0, "camera matrix fy", minimum=0.0)
    cx: float = param(0.0, "camera matrix cx", minimum=0.0)
    cy: float = param(0.0, "camera matrix cy", minimum=0.0)
    max_frames: int = param(0, "stop after this many frames (0 = no limit)", minimum=0)
    wait_for_subscribers: int = param(0, "files only: wait until this many subscribers are matched before playing",
                                      minimum=0)


def _open_device(source: str, width: int, height: int):
    index = int(source) if source.isdigit() else source
    cap = cv2.VideoCapture(index, cv2.CAP_V4L2) if isinstance(index, int) else cv2.VideoCapture(source, cv2.CAP_V4L2)
    if not cap.isOpened():
        raise RuntimeError(f"cannot open camera device {source!r}")
    if width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    if height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    return cap


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera_node")
        self.p = declare_and_read(self, CameraParams)
        qos = sensor_qos(self.p.qos_depth, self.p.qos_reliability)
        self.image_pub = self.create_publisher(Image, "image_raw", qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self._stop = threading.Event()
        self.published = 0
        src = self.p.source
        self.is_device = src.startswith("/dev/") or src.isdigit()
        if self.is_device:
            self.cap = _open_device(src, self.p.width, self.p.height)
            self.fps = self.p.rate or 30.0
        else:
            self.frames = FrameSource(src, on_unreadable=self._skip_unreadable)
            if next(iter(FrameSource(src, on_unreadable=lambda path, exc: None)), None) is None:
                raise ValueError(f"no readable frame in {src}")  # a source that can produce nothing
            self.fps = self.p.rate or self.frames.fps
        self.get_logger().info(
            f"publishing {src} at {self.fps:.1f} Hz on {self.image_pub.topic_name} "
            f"(qos {self.p.qos_reliability}, depth {self.p.qos_depth}, loop={self.p.loop})"
        )
        self.thread = threading.Thread(target=self._loop, name="camera_capture", daemon=True)
        self.thread.start()

    def _iterate(self):
        if self.is_device:
            while not self._stop.is_set():
                ok, frame = self.cap.read()
                if not ok:
                    self.get_logger().warning("camera read failed; retrying", throttle_duration_sec=5.0)
                    time.sleep(0.1)
                    continue
                yield to_rgb8(frame, channel_order="bgr")
            return
        while not self._stop.is_set():
            count = 0
            for frame in self.frames:
                count += 1
                yield frame
            if count == 0:
                self.get_logger().error(f"no readable frame in {self.p.source}; stopping")
                return
            if not self.p.loop:
                return

    def _skip_unreadable(self, path, exc) -> None:
        self.get_logger().warning(f"skipping an unreadable frame: {exc}")

    def _loop(self):
        if not self.is_device:
            wait_for_subscribers(self, self.image_pub, self.p.wait_for_subscribers, self._stop)
        period = 1.0 / self.fps
        next_due = time.monotonic()
        for frame in self._iterate():
            if self._stop.is_set():
                break
            if not self.is_device:
                delay = next_due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_due = max(next_due + period, time.monotonic() - period)
            self._publish(frame, self.get_clock().now().to_msg())
            if self.p.max_frames and self.published >= self.p.max_frames:
                break
        self.get_logger().info(f"end of source after {self.published} frames")

    def _publish(self, frame: np.ndarray, stamp):
        h, w = frame.shape[:2]
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = self.p.frame_id
        msg.height, msg.width, msg.encoding, msg.step = h, w, "rgb8", 3 * w
        msg.data = frame.tobytes()
        info = CameraInfo()
        info.header = msg.header
        info.height, info.width = h, w
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [self.p.fx, 0.0, self.p.cx, 0.0, self.p.fy, self.p.cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [self.p.fx, 0.0, self.p.cx, 0.0, 0.0, self.p.fy, self.p.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        self.image_pub.publish(msg)
        self.info_pub.publish(info)
        self.published += 1

    def close(self):
        self._stop.set()
        self.thread.join(timeout=2.0)
        if self.is_device:
            self.cap.release()



def main(argv=None) -> None:
    argv = sys.argv if argv is None else argv
    parse_help(argv[1:], "camera_node", __doc__, CameraParams, TOPICS)
    run(CameraNode, argv)


if __name__ == "__main__":
    main()
