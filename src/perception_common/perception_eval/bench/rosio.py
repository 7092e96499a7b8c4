"""The harness's ROS side: one rclpy node spinning in a thread; frames and audio out, node outputs recorded
with their arrival times (wall clock, the clock frame stamps come from)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

NS = 1_000_000_000


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)


@dataclass
class TrackerLog:
    """What one tracker node published: results ``(stamp, received, state, rethinking, processing_time)`` and
    brain calls ``(frame_stamp, latency, success, received)``."""

    results: list[tuple[int, int, int, bool, float]] = field(default_factory=list)
    reasoning: list[tuple[int, float, bool, int]] = field(default_factory=list)

    def clear(self) -> None:
        self.results.clear()
        self.reasoning.clear()


@dataclass
class AVSLog:
    """What one AVS node published on ``~/score``: ``(stamp, received, score, sounding)``."""

    scores: list[tuple[int, int, float, bool]] = field(default_factory=list)

    def clear(self) -> None:
        self.scores.clear()


class BenchIO:
    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"perception_bench_{os.getpid()}", context=self.context)
        self.lock = threading.Condition()
        self.diagnostics: dict[str, dict[str, str]] = {}
        self._subs = []
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._closing = threading.Event()
        self._spin = threading.Thread(target=self._spin_loop, name="bench_spin", daemon=True)
        self._spin.start()
        from diagnostic_msgs.msg import DiagnosticArray

        self._subs.append(self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50))

    def _spin_loop(self) -> None:
        try:
            while self.context.ok() and not self._closing.is_set():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # shutting down
            pass

    def _qos(self, depth: int, reliable: bool = True):
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy

        return QoSProfile(
            depth=depth,
            reliability=QoSReliabilityPolicy.RELIABLE if reliable else QoSReliabilityPolicy.BEST_EFFORT,
        )

    # -- inputs ---------------------------------------------------------------------------
    def image_publisher(self, topic: str):
        from sensor_msgs.msg import Image

        return self.node.create_publisher(Image, topic, self._qos(5))

    def string_publisher(self, topic: str):
        from std_msgs.msg import String

        return self.node.create_publisher(String, topic, self._qos(10))

    def audio_publisher(self, topic: str):
        from perception_msgs.msg import AudioChunk

        return self.node.create_publisher(AudioChunk, topic, self._qos(200))

    # -- outputs --------------------------------------------------------------------------
    def watch_tracker(self, fqn: str) -> TrackerLog:
        from perception_msgs.msg import Reasoning, TrackResult

        log = TrackerLog()

        def on_result(msg):
            with self.lock:
                log.results.append(
                    (_stamp(msg), time.time_ns(), int(msg.state), bool(msg.rethinking), float(msg.processing_time))
                )
                self.lock.notify_all()

        def on_reasoning(msg):
            frame = int(msg.frame_stamp.sec) * NS + int(msg.frame_stamp.nanosec)
            with self.lock:
                log.reasoning.append((frame, float(msg.latency), bool(msg.success), time.time_ns()))
                self.lock.notify_all()

        self._subs.append(self.node.create_subscription(TrackResult, f"{fqn}/result", on_result, self._qos(500)))
        self._subs.append(self.node.create_subscription(Reasoning, f"{fqn}/reasoning", on_reasoning, self._qos(50)))
        return log

    def watch_avs(self, fqn: str) -> AVSLog:
        from perception_msgs.msg import SoundingMask

        log = AVSLog()

        def on_score(msg):
            with self.lock:
                log.scores.append((_stamp(msg), time.time_ns(), float(msg.score), bool(msg.sounding)))
                self.lock.notify_all()

        self._subs.append(self.node.create_subscription(SoundingMask, f"{fqn}/score", on_score, self._qos(500)))
        return log

    def _on_diag(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                self.diagnostics[status.hardware_id] = {kv.key: kv.value for kv in status.values}

    def wait_for(self, predicate, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(predicate, timeout)

    def count_publishers(self, topic: str) -> int:
        return self.node.count_publishers(topic)

    def close(self) -> None:
        self._closing.set()
        self._spin.join(timeout=2.0)
        try:
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            self._rclpy.try_shutdown(context=self.context)


class FrameSource:
    """A fixed 640x480 (or given) rgb8 frame published with the current wall-clock stamp."""

    def __init__(self, width: int, height: int, seed: int = 0):
        from sensor_msgs.msg import Image

        rng = np.random.default_rng(seed)
        self.array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        self.msg = Image(
            height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3, data=self.array.tobytes()
        )
        self.msg.header.frame_id = "camera_optical_frame"

    def publish(self, *publishers) -> int:
        now = time.time_ns()
        self.msg.header.stamp.sec, self.msg.header.stamp.nanosec = divmod(now, NS)
        for pub in publishers:
            pub.publish(self.msg)
        return now


class AudioStream:
    """Microphone-like AudioChunks (16 kHz mono, 512-sample chunks, contiguous first-sample stamps) from a
    background thread. Chunk ``k`` goes out when its last sample has been "captured", ``lead`` seconds early
    (``lead > 0`` keeps audio ahead of the frames, for throughput runs that must not wait for audio)."""

    def __init__(self, publishers, *, rate: int = 16000, chunk: int = 512, history_s: float = 1.5):
        from perception_msgs.msg import AudioChunk

        self.publishers = list(publishers)
        self.rate, self.chunk = rate, chunk
        self.lead = 0.0
        self.t0 = time.time_ns() - int(history_s * NS)
        self._type = AudioChunk
        rng = np.random.default_rng(1)
        t = np.arange(rate * 4) / rate
        self._signal = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="bench_audio", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            start = self.t0 + k * self.chunk * NS // self.rate
            due = start + self.chunk * NS // self.rate - int(self.lead * NS)
            wait = (due - time.time_ns()) / NS
            if wait > 0:
                self._stop.wait(min(wait, 0.05))
                continue
            i = (k * self.chunk) % (self._signal.size - self.chunk)
            msg = self._type(
                sample_rate=self.rate,
                channels=1,
                sample_format="f32",
                sequence=k,
                samples=self._signal[i : i + self.chunk],
                samples_per_channel=self.chunk,
            )
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(start, NS)
            msg.header.frame_id = "microphone"
            for pub in self.publishers:
                pub.publish(msg)
            self.sent += 1
            k += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
