"""microphone_node: publish ``perception_msgs/AudioChunk`` from a sound device or a WAV/FLAC file paced in real time.

Every chunk is stamped with the capture time of its FIRST sample. Stamps come
from the sample clock (start time + samples so far / rate), so consecutive
chunks are contiguous in time; a device overflow (lost input) is reported
with a warning, ``overflow=True`` on the next chunk, and the clock is
re-anchored to the device's ADC time. ``sequence`` increments by one per
chunk, so subscribers can detect chunks lost in transit.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
from perception_msgs.msg import AudioChunk
from rclpy.node import Node
from rclpy.time import Time

from perception_common.params import param

from .runtime import declare_and_read, parse_help, run, sensor_qos, wait_for_subscribers

TOPICS = """topics:
  publishes  audio  perception_msgs/msg/AudioChunk  stamped with the first sample's capture time"""


@dataclass
class MicrophoneParams:
    source: str = param("device", "'device' for a sound device (sounddevice), or a WAV/FLAC file path")
    device: str = param("", "sounddevice input device name or index ('' = system default)")
    sample_rate: int = param(16000, "device sample rate in Hz (files publish at their own rate)", minimum=1,
                             maximum=384000)
    channels: int = param(1, "device channel count (files publish all their channels)", minimum=1, maximum=64)
    chunk_size: int = param(512, "samples per channel in each chunk", minimum=1)
    loop: bool = param(False, "restart a file at its end (stamps stay contiguous)")
    frame_id: str = param("microphone", "frame_id of the published chunks")
    qos_depth: int = param(50, "publisher queue depth (audio is small; keep enough for bursts)", minimum=1)
    qos_reliability: str = param("reliable", "reliable (default: every chunk matters) or best_effort")
    max_chunks: int = param(0, "stop after this many chunks (0 = no limit)", minimum=0)
    wait_for_subscribers: int = param(0, "files only: wait until this many subscribers are matched before playing",
                                      minimum=0)


def _file_chunks(path: str, chunk: int, loop: bool, stop: threading.Event):
    """Yield ``(samples float32 [n, C], rate, format)`` chunks of a sound file, forever when ``loop``."""
    import soundfile as sf

    info = sf.info(path)
    fmt = AudioChunk.FORMAT_S16 if info.subtype == "PCM_16" else AudioChunk.FORMAT_F32
    while not stop.is_set():
        with sf.SoundFile(path) as f:
            while not stop.is_set():
                block = f.read(chunk, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                yield block, f.samplerate, fmt
        if not loop:
            return


def _check_file(path: str) -> None:
    """Raise ValueError naming ``path`` when it is not a sound file that can be read."""
    import soundfile as sf

    try:
        info = sf.info(path)
        with sf.SoundFile(path) as f:
            f.read(1, dtype="float32")
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, OSError, ...
        raise ValueError(f"cannot read audio file {path!r}: {exc}") from None
    if info.frames == 0:
        raise ValueError(f"audio file {path!r} holds no samples")


class MicrophoneNode(Node):
    def __init__(self):
        super().__init__("microphone_node")
        self.p = declare_and_read(self, MicrophoneParams)
        if self.p.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.p.chunk_size}")
        self.pub = self.create_publisher(AudioChunk, "audio", sensor_qos(self.p.qos_depth, self.p.qos_reliability))
        self.sequence = 0
        self.samples_sent = 0
        self._stop = threading.Event()
        self._warned_nan = False
        self._t0_ns: int | None = None
        if self.p.source == "device":
            self._start_device()
            self.thread = None
        else:
            _check_file(self.p.source)  # a file that can produce nothing stops the node at start-up
            self.thread = threading.Thread(target=self._file_loop, name="microphone_file", daemon=True)
            self.thread.start()

    # -- publishing ------------------------------------------------------------------
    def _publish(self, block: np.ndarray, rate: int, fmt: str, stamp_ns: int, overflow: bool = False) -> None:
        if not self._warned_nan and not np.isfinite(block).all():
            self._warned_nan = True
            self.get_logger().warning("input audio contains NaN/Inf samples; published as is (consumers reject them)")
        msg = AudioChunk()
        msg.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
        msg.header.frame_id = self.p.frame_id
        msg.sequence = self.sequence
        msg.sample_rate = int(rate)
        msg.channels = int(block.shape[1])
        msg.sample_format = fmt
        msg.samples_per_channel = int(block.shape[0])
        msg.samples = np.ascontiguousarray(block, dtype=np.float32).reshape(-1)
        msg.overflow = overflow
        self.pub.publish(msg)
        self.sequence += 1
        self.samples_sent += block.shape[0]

    def _file_loop(self) -> None:
        wait_for_subscribers(self, self.pub, self.p.wait_for_subscribers, self._stop)
        start_wall = time.monotonic()
        t0 = self.get_clock().now().nanoseconds
        sent = 0
        rate = None
        try:
            for block, rate, fmt in _file_chunks(self.p.source, self.p.chunk_size, self.p.loop, self._stop):
                due = start_wall + sent / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._publish(block, rate, fmt, t0 + round(sent * 1e9 / rate))
                sent += block.shape[0]
                if self.p.max_chunks and self.sequence >= self.p.max_chunks:
                    break
        except Exception as exc:  # a missing or unreadable file: say so, keep the node up
            self.get_logger().error(f"cannot read audio file {self.p.source!r}: {exc}")
            return
        self.get_logger().info(f"end of {self.p.source}: {self.sequence} chunks, {sent} samples per channel")

    def _start_device(self) -> None:
        try:
            import sounddevice as sd
        except OSError as exc:
            raise RuntimeError(f"sound input unavailable ({exc}); install libportaudio2 or use source:=FILE") from exc
        device = int(self.p.device) if self.p.device.isdigit() else (self.p.device or None)
        clock = self.get_clock()

        def callback(indata, frames, time_info, status):
            now_ns = clock.now().nanoseconds
            overflow = bool(status.input_overflow)
            if self._t0_ns is None or overflow:
                # Re-anchor the sample clock on the ADC time of this buffer's first sample.
                lag = max(0.0, stream.time - time_info.inputBufferAdcTime) if stream.time else 0.0
                self._t0_ns = now_ns - round(lag * 1e9) - round(self.samples_sent * 1e9 / self.p.sample_rate)
                if overflow:
                    self.get_logger().warning("audio input overflow: samples were dropped by the device")
            stamp = self._t0_ns + round(self.samples_sent * 1e9 / self.p.sample_rate)
            self._publish(indata.copy(), self.p.sample_rate, AudioChunk.FORMAT_F32, stamp, overflow)

        try:
            stream = sd.InputStream(
                device=device, samplerate=self.p.sample_rate, channels=self.p.channels, dtype="float32",
                blocksize=self.p.chunk_size, callback=callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            which = repr(self.p.device) if self.p.device else "the default input"
            raise RuntimeError(
                f"no usable sound input ({which}: {exc}); plug a microphone in, set device:=NAME|INDEX, "
                "or use source:=FILE"
            ) from None
        self.stream = stream
        self.get_logger().info(
            f"recording {stream.device} at {self.p.sample_rate} Hz, {self.p.channels} ch, {self.p.chunk_size}/chunk"
        )

    def close(self) -> None:
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2.0)
        stream = getattr(self, "stream", None)
        if stream is not None:
            stream.stop()
            stream.close()


def main(argv=None) -> None:
    argv = sys.argv if argv is None else argv
    parse_help(argv[1:], "microphone_node", __doc__, MicrophoneParams, TOPICS)
    run(MicrophoneNode, argv)


if __name__ == "__main__":
    main()
