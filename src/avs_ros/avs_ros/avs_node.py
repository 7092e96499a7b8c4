"""avs_node: robust audio-visual segmentation; a mask is published only when the sound comes from something visible.

Audio chunks fill a ring buffer indexed by capture time. For each frame, the
window of ``window_seconds`` ending at the frame's stamp is taken (the node
waits up to ``max_audio_wait`` seconds for late audio), the model segments the
sounding object and its correspondence classifier scores the pair. The score
of EVERY frame goes out on ``~/score`` (a SoundingMask without mask; score NaN
when there was no audio for the frame), and the mask goes out on
``~/sounding`` / ``~/mask`` only when the classifier fires.

Bad input (NaN audio, impossible sample rate, lost chunks, unsupported image
encoding, empty image) is reported with a warning naming the problem; the
node keeps running and keeps its good data.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

from builtin_interfaces.msg import Time as TimeMsg
from perception_msgs.msg import AudioChunk, SoundingMask
from sensor_msgs.msg import Image

import avs
from avs.errors import AVSError
from avs.model import AVSModel, build_model
from perception_common.audio_buffer import AudioChunkError, AudioRingBuffer, NotEnoughAudio
from perception_common.images import overlay
from perception_common.models import resolve_device, resolve_model_spec, shipped_model_dir
from perception_common.params import param
from perception_nodes.frame_queue import MODES
from perception_nodes.frame_worker import FrameWorkerNode
from perception_nodes.image_msgs import BACKEND, array_to_imgmsg, imgmsg_to_rgb8, mask_to_imgmsg
from perception_nodes.runtime import (
    IMAGE_QOS_HELP,
    declare_and_read,
    image_qos,
    parse_help,
    reliable_qos,
    run,
    sensor_qos,
)

TOPICS = """topics:
  subscribes  <image_topic>  sensor_msgs/msg/Image             camera frames
  subscribes  <audio_topic>  perception_msgs/msg/AudioChunk    microphone chunks (first-sample stamps)
  publishes   ~/sounding     perception_msgs/msg/SoundingMask  ONLY when the classifier fires, with the mask
  publishes   ~/mask         sensor_msgs/msg/Image             mono8 0/255 mask, same condition
  publishes   ~/overlay      sensor_msgs/msg/Image             rgb8 frame with the mask (publish_overlay)
  publishes   ~/score        perception_msgs/msg/SoundingMask  every frame: score, sounding, no mask (NaN = no audio)
  publishes   /diagnostics   diagnostic_msgs/msg/DiagnosticArray  rates, drops, audio state (1 Hz)"""

NS = 1_000_000_000


@dataclass
class AVSParams:
    model: str = param("", "model folder (save_pretrained output); '' = the shipped embedded model; "
                           "'config:NAME' = a registered configuration with random weights")
    device: str = param("auto", "auto | cpu | cuda | cuda:N")
    threshold: float = param(0.0, "publish when the classifier score > threshold; 0 = the model's own threshold")
    mode: str = param("live", "live (newest frame only) or replay (every frame, in order)")
    image_topic: str = param("/camera/image_raw", "camera topic")
    audio_topic: str = param("/microphone/audio", "AudioChunk topic")
    window_seconds: float = param(1.0, "audio window ending at each frame's stamp (VGGish uses its last 0.975 s)")
    buffer_seconds: float = param(10.0, "audio kept in the ring buffer")
    max_audio_wait: float = param(0.5, "seconds a frame waits for its audio to arrive before it is scored NaN")
    image_qos_reliability: str = param("auto", IMAGE_QOS_HELP)
    replay_queue_size: int = param(1000, "replay mode: frames buffered before the oldest are dropped")
    publish_overlay: bool = param(False, "also publish ~/overlay")
    threads: int = param(1, "torch threads for the model (0 = leave unchanged); 1 leaves a core to the rest")


def _stamp_ns(stamp) -> int:
    return stamp.sec * NS + stamp.nanosec


def _time_msg(ns: int) -> TimeMsg:
    return TimeMsg(sec=ns // NS, nanosec=ns % NS)


class AVSNode(FrameWorkerNode):
    def __init__(self):
        super().__init__("avs_node")
        self.p = declare_and_read(self, AVSParams)
        if self.p.mode not in MODES:
            raise ValueError(f"parameter 'mode' must be one of {MODES}, got {self.p.mode!r}")
        if not 0.0 <= self.p.threshold < 1.0:
            raise ValueError(f"parameter 'threshold' must be in [0, 1), got {self.p.threshold}")
        device = resolve_device(self.p.device)
        kind, value = resolve_model_spec(self.p.model, shipped_model_dir(avs))
        t0 = time.monotonic()
        self.model = (build_model(value) if kind == "config" else AVSModel.from_pretrained(value)).to(device).eval()
        self.threshold = self.p.threshold or float(self.model.config.threshold)
        self.get_logger().info(
            f"model {value} on {device} loaded in {time.monotonic() - t0:.1f} s; gate {self.model.config.gate}, "
            f"threshold {self.threshold}, mode {self.p.mode}, image conversion: {BACKEND}"
        )
        self.audio = AudioRingBuffer(capacity_s=self.p.buffer_seconds)
        self._last_seq: int | None = None
        self._last_frame_ns: int | None = None
        self._restarts_seen = 0
        self.lost_chunks = self.bad_chunks = self.no_audio_frames = self.sounding_frames = 0
        self.sounding_pub = self.create_publisher(SoundingMask, "~/sounding", reliable_qos(10))
        self.mask_pub = self.create_publisher(Image, "~/mask", sensor_qos(5))
        self.score_pub = self.create_publisher(SoundingMask, "~/score", reliable_qos(50))
        self.overlay_pub = self.create_publisher(Image, "~/overlay", sensor_qos(5)) if self.p.publish_overlay else None
        depth = 1 if self.p.mode == "live" else self.p.replay_queue_size
        image_qos_profile, reliability = image_qos(self.p.mode, depth, self.p.image_qos_reliability)
        self.get_logger().info(f"images from {self.p.image_topic}: {reliability}, keep last {depth}")
        self.create_subscription(Image, self.p.image_topic, self.on_frame, image_qos_profile)
        self.create_subscription(AudioChunk, self.p.audio_topic, self._on_audio, sensor_qos(200, "reliable"))
        self.start_worker(self.p.mode, self.p.replay_queue_size, torch_threads=self.p.threads)

    # ------------------------------------------------------------------ audio
    def _on_audio(self, msg: AudioChunk) -> None:
        if self._last_seq is not None and msg.sequence > self._last_seq + 1:
            lost = msg.sequence - self._last_seq - 1
            self.lost_chunks += lost
            self.warn(f"{lost} audio chunk(s) lost before sequence {msg.sequence}; zero-filled")
        self._last_seq = msg.sequence
        if msg.overflow:
            self.warn("microphone reported an input overflow (samples dropped at the device)")
        try:
            note = self.audio.push(msg.samples, sample_rate=msg.sample_rate, channels=msg.channels,
                                   start_ns=_stamp_ns(msg.header.stamp), sequence=msg.sequence)
            if note:
                self.warn(note)
        except AudioChunkError as exc:
            self.bad_chunks += 1
            self.warn(f"audio chunk {msg.sequence} rejected: {exc}")

    def _window(self, end_ns: int):
        deadline = time.monotonic() + self.p.max_audio_wait
        while True:
            try:
                return self.audio.window(end_ns, self.p.window_seconds), None
            except NotEnoughAudio as exc:
                behind = "before the frame" in str(exc) or "no audio" in str(exc)
                if not behind or time.monotonic() >= deadline or self._stop.is_set():
                    return None, str(exc)
                time.sleep(0.005)

    # ------------------------------------------------------------------ frames
    def _check_time_jump(self, end_ns: int) -> None:
        """Frames went back in time by more than the audio window (a new or looped bag, a restarted camera clock)
        while the audio buffer did not restart: its audio at these stamps may be the earlier timeline's, the new
        timeline's audio still on its way on the other topic. Wait up to ``max_audio_wait`` for the audio to restart;
        if it does not (a late frame of the same timeline), the buffer is used as it is: nothing is dropped."""
        last, self._last_frame_ns = self._last_frame_ns, end_ns
        seen = self._restarts_seen
        if last is not None and end_ns < last - self.p.window_seconds * NS and self.audio.restarts == seen:
            deadline = time.monotonic() + self.p.max_audio_wait
            while self.audio.restarts == seen and time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(0.005)
            restarted = self.audio.restarts != seen
            self.get_logger().info(
                f"frame time went back {(last - end_ns) / NS:.2f} s: "
                + ("audio restarted with it" if restarted else "no new audio; the buffered audio is used")
            )
        self._restarts_seen = self.audio.restarts

    def process(self, msg: Image, received: float) -> None:
        frame = imgmsg_to_rgb8(msg)
        end_ns = _stamp_ns(msg.header.stamp)
        self._check_time_jump(end_ns)
        window, why = self._window(end_ns)
        score = SoundingMask()
        score.header = msg.header
        score.threshold = self.threshold
        pred = None
        if window is not None:
            try:
                pred = self.model.predict(frame, window.samples, window.sample_rate, threshold=self.threshold)
            except AVSError as exc:
                why = str(exc)
        if pred is None:  # reported, never silently dropped: the score topic gets NaN
            self.no_audio_frames += 1
            score.correspondence = score.score = math.nan
            self.score_pub.publish(score)
            self.warn(f"frame at {end_ns / NS:.3f} s scored NaN: {why}")
            return
        score.audio_window_start, score.audio_window_end = _time_msg(window.start_ns), _time_msg(window.end_ns)
        score.correspondence = math.nan if pred.similarity is None else float(pred.similarity)
        score.score = 1.0 if pred.score is None else float(pred.score)
        score.sounding = bool(pred.sounding)
        self.score_pub.publish(score)
        if not pred.sounding:
            return
        self.sounding_frames += 1
        out = SoundingMask()
        out.header = msg.header
        out.audio_window_start, out.audio_window_end = score.audio_window_start, score.audio_window_end
        out.correspondence, out.score, out.threshold, out.sounding = (
            score.correspondence, score.score, score.threshold, True)
        out.mask = mask_to_imgmsg(pred.mask, msg.header)
        self.sounding_pub.publish(out)
        self.mask_pub.publish(out.mask)
        if self.overlay_pub is not None:
            self.overlay_pub.publish(array_to_imgmsg(overlay(frame, pred.mask), "rgb8", msg.header))

    def status(self):
        audio = f"audio to {self.audio.end_ns / NS:.2f} s" if self.audio.rate else "no audio yet"
        return audio, [("sounding_frames", self.sounding_frames), ("no_audio_frames", self.no_audio_frames),
                       ("lost_audio_chunks", self.lost_chunks), ("bad_audio_chunks", self.bad_chunks),
                       ("audio_rate", self.audio.rate or 0), ("threshold", self.threshold)]


def main(argv=None) -> None:
    argv = sys.argv if argv is None else argv
    parse_help(argv[1:], "avs_node", __doc__, AVSParams, TOPICS)
    run(AVSNode, argv)


if __name__ == "__main__":
    main()
