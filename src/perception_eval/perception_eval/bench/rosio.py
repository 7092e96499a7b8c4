"""The harness's ROS side: one rclpy node spinning in a thread; frames and audio out, node outputs recorded
with their arrival times (wall clock, the clock frame stamps come from)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from perception_common.stamps import NS, header_ns, set_stamp, stamp_ns
from perception_nodes.recorder import RecorderNode


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


class BenchIO(RecorderNode):
    """The harness's recorder: publishers for frames and instructions, logs of what each node published, and the
    latest ``/diagnostics`` of every node."""

    def __init__(self):
        from diagnostic_msgs.msg import DiagnosticArray

        super().__init__(f"perception_bench_{os.getpid()}")
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.subscribe(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    # -- inputs ---------------------------------------------------------------------------
    def image_publisher(self, topic: str):
        from sensor_msgs.msg import Image

        # Depth 1, as a camera: this process publishes to three nodes, and each reliable writer keeps its history in
        # the participant's shared-memory segment (16 MB: three writers x 5 VGA frames nearly filled it).
        return self.publisher(Image, topic, 1)

    def string_publisher(self, topic: str):
        from std_msgs.msg import String

        return self.publisher(String, topic, 10)

    # -- outputs --------------------------------------------------------------------------
    def watch_tracker(self, fqn: str) -> TrackerLog:
        from perception_msgs.msg import Reasoning, TrackResult

        log = TrackerLog()

        def on_result(msg):
            log.results.append(
                (header_ns(msg), time.time_ns(), int(msg.state), bool(msg.rethinking), float(msg.processing_time))
            )

        def on_reasoning(msg):
            log.reasoning.append((stamp_ns(msg.frame_stamp), float(msg.latency), bool(msg.success), time.time_ns()))

        self.subscribe(TrackResult, f"{fqn}/result", on_result, 500)
        self.subscribe(Reasoning, f"{fqn}/reasoning", on_reasoning, 50)
        return log

    def watch_avs(self, fqn: str) -> AVSLog:
        from perception_msgs.msg import SoundingMask

        log = AVSLog()

        def on_score(msg):
            log.scores.append((header_ns(msg), time.time_ns(), float(msg.score), bool(msg.sounding)))

        self.subscribe(SoundingMask, f"{fqn}/score", on_score, 500)
        return log

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            self.diagnostics[status.hardware_id] = {kv.key: kv.value for kv in status.values}


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
        set_stamp(self.msg.header.stamp, now)
        for pub in publishers:
            pub.publish(self.msg)
        return now


class AudioStream:
    """Microphone-like AudioChunks (16 kHz mono, contiguous first-sample stamps from the wall clock, the clock
    frames are stamped with) published by a child process of its own.

    Chunk ``k`` goes out when its last sample has been "captured", ``lead`` seconds early (``lead > 0`` keeps
    audio ahead of the frames, for throughput runs that must not wait for audio). The stream runs in its own
    process (own interpreter, own GIL, own DDS participant): as a thread of the harness it fell up to 1.8 s
    behind the frames while the harness's main thread ran the bare model loop and the closed loop, and the
    node then waited ``max_audio_wait`` per frame for audio that was late in the harness, not in the node.
    ``stats()`` reports how late chunks went out against their schedule.
    """

    def __init__(
        self,
        topic: str,
        *,
        lead: float = 0.0,
        rate: int = 16000,
        chunk: int = 512,
        history_s: float = 1.5,
    ):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no fork of a process holding DDS threads
        self.topic, self.rate, self.chunk, self.lead = topic, rate, chunk, float(lead)
        self.t0 = time.time_ns() - int(history_s * NS)
        self._stop = ctx.Event()
        self._ready = ctx.Event()
        self._sent = ctx.Value("q", 0)
        self._late_max_ns = ctx.Value("q", 0)
        self._proc = ctx.Process(
            target=_audio_process,
            args=(topic, rate, chunk, self.lead, self.t0, self._stop, self._ready, self._sent, self._late_max_ns),
            name="bench_audio",
            daemon=True,
        )
        self._proc.start()

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    def wait_matched(self, timeout: float) -> bool:
        """True once the stream's publisher has a subscriber (the node), False after ``timeout`` seconds.

        Raises:
            RuntimeError: the stream's process ended (its error is in this process's stderr).
        """
        deadline = time.monotonic() + timeout
        while not self._ready.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if not self._proc.is_alive():
                raise RuntimeError(f"the bench audio process exited with code {self._proc.exitcode}")
            if time.monotonic() >= deadline:
                return False
        return True

    def alive(self) -> bool:
        return self._proc.is_alive()

    def stats(self) -> dict:
        return {
            "chunks_sent": self.sent,
            "chunk_samples": self.chunk,
            "lead_s": self.lead,
            "late_ms_max": self._late_max_ns.value / 1e6,
        }

    def stop(self) -> None:
        self._stop.set()
        self._proc.join(timeout=5.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=2.0)


def audio_chunk_schedule(t0_ns: int, k: int, chunk: int, rate: int, lead_s: float) -> tuple[int, int]:
    """``(first-sample stamp, due time)`` of chunk ``k``, both wall-clock ns: the stamps are contiguous from
    ``t0_ns``; a chunk is due when its last sample has been captured, ``lead_s`` early."""
    start = t0_ns + k * chunk * NS // rate
    due = t0_ns + (k + 1) * chunk * NS // rate - int(lead_s * NS)
    return start, due


def _audio_process(topic, rate, chunk, lead, t0, stop, ready, sent, late_max_ns) -> None:
    """Body of :class:`AudioStream`'s child process."""
    import signal

    import rclpy
    from perception_msgs.msg import AudioChunk

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops it (Ctrl-C goes to the whole group)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"perception_bench_audio_{os.getpid()}", context=context)
    try:
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy

        pub = node.create_publisher(AudioChunk, topic, QoSProfile(depth=200, reliability=QoSReliabilityPolicy.RELIABLE))
        while not stop.is_set() and pub.get_subscription_count() == 0:
            stop.wait(0.05)
        ready.set()
        begin = time.time_ns()  # chunks due before this (the history, the wait for the node) go out at once
        rng = np.random.default_rng(1)
        t = np.arange(rate * 4) / rate
        signal_ = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        k = 0
        while not stop.is_set():
            start, due = audio_chunk_schedule(t0, k, chunk, rate, lead)
            now = time.time_ns()
            if due > now:
                stop.wait(min((due - now) / NS, 0.05))
                continue
            if due >= begin:
                late_max_ns.value = max(late_max_ns.value, now - due)
            i = (k * chunk) % (signal_.size - chunk)
            msg = AudioChunk(
                sample_rate=rate,
                channels=1,
                sample_format="f32",
                sequence=k,
                samples=signal_[i : i + chunk],
                samples_per_channel=chunk,
            )
            set_stamp(msg.header.stamp, start)
            msg.header.frame_id = "microphone"
            pub.publish(msg)
            sent.value += 1
            k += 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
