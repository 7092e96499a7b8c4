"""Base of the model nodes: frames handed from the subscription to one processing thread, diagnostics, shutdown.

Subclasses implement :meth:`FrameWorkerNode.process` (one frame message in,
messages out) and :meth:`FrameWorkerNode.status`. The callback only queues
(:class:`FrameQueue`), so the executor is never blocked by the model, and a
slow reasoning step cannot stall subscriptions or services.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from perception_common.images import ImageError

from .frame_queue import FrameQueue
from .runtime import reliable_qos


class FrameWorkerNode(Node):
    def __init__(self, name: str):
        super().__init__(name)
        self.frames: FrameQueue = FrameQueue("live")  # replaced by start_worker()
        self.processed = 0
        self.bad_frames = 0
        self._times: deque[float] = deque(maxlen=120)
        self._stop = threading.Event()
        self._warned: dict[str, float] = {}
        self._worker: threading.Thread | None = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self.create_timer(1.0, self._publish_diagnostics)

    # -- for subclasses ----------------------------------------------------------------
    def process(self, msg, received: float) -> None:
        """Handle one frame message; ``received`` is its ``time.monotonic()`` arrival time."""
        raise NotImplementedError

    def status(self) -> tuple[str, list[tuple[str, object]]]:
        """A one-line summary and extra key/values for the diagnostics message."""
        return "", []

    def start_worker(
        self, mode: str, capacity: int, *, torch_threads: int = 0, cpus: set[int] | None = None
    ) -> None:
        """Create the frame queue (``live`` or ``replay``, see :class:`FrameQueue`) and the processing thread.

        Call at the end of the subclass constructor, before frames can arrive. ``torch_threads`` > 0 sets
        torch's intra-op thread count in the processing thread (a per-thread setting with OpenMP). ``cpus``: the
        CPU ids the processing thread alone may run on (Linux; the executor and DDS threads stay free, so on a small
        machine they need not take their turns on the frame path's core).
        """
        self.frames = FrameQueue(mode, capacity)
        self._torch_threads = int(torch_threads)
        self._cpus = set(cpus) if cpus else None
        self._worker = threading.Thread(target=self._loop, name=f"{self.get_name()}_frames", daemon=True)
        self._worker.start()

    def on_frame(self, msg) -> None:
        """Subscription callback: queue the frame (live mode keeps only the newest)."""
        if not self.frames.put((msg, time.monotonic())) and self.frames.mode == "replay":
            self.get_logger().warning("replay queue full: dropped the oldest frame", throttle_duration_sec=2.0)

    # -- internals ---------------------------------------------------------------------
    def _loop(self) -> None:
        if self._cpus:
            os.sched_setaffinity(0, self._cpus)  # 0: this thread (Linux sets affinity per thread)
        if self._torch_threads > 0:
            import torch

            torch.set_num_threads(self._torch_threads)
        while not self._stop.is_set():
            item = self.frames.get(timeout=0.2)
            if item is None:
                continue
            try:
                self.process(*item)
                self.processed += 1
                self._times.append(time.monotonic())
            except ImageError as exc:
                self.bad_frames += 1
                self.warn(f"frame skipped: {exc}")
            except Exception as exc:  # the node stays up and says what happened
                self.bad_frames += 1
                self.warn(f"frame processing failed: {type(exc).__name__}: {exc}", error=True)

    def warn(self, text: str, *, period: float = 2.0, error: bool = False) -> None:
        """Log ``text`` at most once per ``period`` seconds *per kind of problem*.

        The kind is the text with its numbers removed, so a stream of the same bad
        input is throttled while a different problem is still reported at once.
        """
        kind = re.sub(r"[0-9.]+", "#", text)
        now = time.monotonic()
        if now - self._warned.get(kind, -math.inf) < period:
            return
        self._warned[kind] = now
        (self.get_logger().error if error else self.get_logger().warning)(text)

    def fps(self, horizon: float = 5.0) -> float:
        now = time.monotonic()
        recent = [t for t in self._times if now - t <= horizon]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _publish_diagnostics(self) -> None:
        summary, extra = self.status()
        st = DiagnosticStatus(name=f"{self.get_name()}", hardware_id=self.get_fully_qualified_name())
        st.level = DiagnosticStatus.OK if self.bad_frames == 0 else DiagnosticStatus.WARN
        st.message = f"{summary}, {self.fps():.1f} frames/s".lstrip(", ")
        base = [("mode", self.frames.mode), ("frames_received", self.frames.received),
                ("frames_processed", self.processed), ("frames_dropped", self.frames.dropped),
                ("bad_frames", self.bad_frames), ("fps", f"{self.fps():.2f}")]
        st.values = [KeyValue(key=k, value=str(v)) for k, v in base + list(extra)]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self._diag_pub.publish(arr)

    def close(self) -> None:
        self._stop.set()
        self.frames.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        self.get_logger().info(
            f"processed {self.processed} of {self.frames.received} frames, dropped {self.frames.dropped}, "
            f"bad {self.bad_frames}"
        )
