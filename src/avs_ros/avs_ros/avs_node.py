"""avs_node: robust audio-visual segmentation; a mask is published only when the sound comes from something visible.

A thin adapter of :class:`avs.stream.AVSStream`, which holds the pairing rules: audio chunks fill a ring buffer
indexed by capture time; for each frame, the window of ``window_seconds`` ending at the frame's stamp is taken
(waiting up to ``max_audio_wait`` seconds for late audio), the model segments the sounding object and its
correspondence classifier scores the pair. The score
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

from avs.loading import load_model, shipped_folder
from avs.stream import AVSStream
from perception_common.images import overlay
from perception_common.models import resolve_device
from perception_common.params import param
from perception_common.precision import resolve_frame_precision
from perception_common.stamps import NS, set_stamp, stamp_ns
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
  publishes   ~/class_map    sensor_msgs/msg/Image             mono8 class ids (0 = background), with the mask;
                                                               AVSS models (num_classes > 1) only
  publishes   ~/score        perception_msgs/msg/SoundingMask  every frame: score, sounding, no mask (NaN = no audio)
  publishes   /diagnostics   diagnostic_msgs/msg/DiagnosticArray  rates, drops, audio state (1 Hz)"""



@dataclass
class AVSParams:
    model: str = param("", "model folder (save_pretrained output); '' = the shipped embedded model; "
                           "'config:NAME' = a registered configuration with random weights")
    device: str = param("auto", "auto | cpu | cuda | cuda:N")
    threshold: float = param(0.0, "publish when the classifier score > threshold; 0 = the model's own threshold",
                             minimum=0.0, below=1.0)
    frame_precision: str = param("auto", "the frame path (a TorchScript trace of the model): auto (its decoder in "
                                         "bf16 on a CPU with native bf16, else fp32) | fp32 | bf16")
    mode: str = param("live", "live (newest frame only) or replay (every frame, in order)")
    image_topic: str = param("/camera/image_raw", "camera topic")
    audio_topic: str = param("/microphone/audio", "AudioChunk topic")
    window_seconds: float = param(1.0, "audio window ending at each frame's stamp (VGGish uses its last 0.975 s)",
                                  positive=True)
    buffer_seconds: float = param(10.0, "audio kept in the ring buffer", positive=True)
    max_audio_wait: float = param(0.5, "seconds a frame waits for its audio to arrive before it is scored NaN",
                                  minimum=0.0)
    image_qos_reliability: str = param("auto", IMAGE_QOS_HELP)
    replay_queue_size: int = param(1000, "replay mode: frames buffered before the oldest are dropped", minimum=1)
    publish_overlay: bool = param(False, "also publish ~/overlay")
    clip_frames: int = param(0, "frames TPAVI attends over, this one and earlier ones clip_stride_s apart; "
                                "0 = the model's own (5 for imported AVSBench models, 1 for the shipped ones)",
                             minimum=0)
    threads: int = param(1, "torch threads for the model (0 = leave unchanged); 1 leaves a core to the rest", minimum=0)


class AVSNode(FrameWorkerNode):
    def __init__(self):
        super().__init__("avs_node")
        self.p = declare_and_read(self, AVSParams)
        if self.p.mode not in MODES:
            raise ValueError(f"parameter 'mode' must be one of {MODES}, got {self.p.mode!r}")
        if not 0.0 <= self.p.threshold < 1.0:
            raise ValueError(f"parameter 'threshold' must be in [0, 1), got {self.p.threshold}")
        device = resolve_device(self.p.device)
        frame_precision = resolve_frame_precision(self.p.frame_precision, device)
        t0 = time.monotonic()
        self.model = load_model(self.p.model, device=device)
        self.model.set_frame_precision(frame_precision)
        value = self.p.model or str(shipped_folder())
        self.threshold = self.p.threshold or float(self.model.config.threshold)
        self.get_logger().info(
            f"model {value} on {device} (frame path {frame_precision}) loaded in {time.monotonic() - t0:.1f} s; "
            f"gate {self.model.config.gate}, "
            f"threshold {self.threshold}, mode {self.p.mode}, image conversion: {BACKEND}"
        )
        self.stream = AVSStream(
            self.model, threshold=self.threshold, window_seconds=self.p.window_seconds,
            buffer_seconds=self.p.buffer_seconds, max_audio_wait=self.p.max_audio_wait,
            clip_frames=self.p.clip_frames or None,
        )
        if self.stream.clip_frames > 1:
            self.get_logger().info(
                f"TPAVI attends over clips of {self.stream.clip_frames} frames "
                f"{self.stream.clip_stride_s:g} s apart (this frame and kept earlier ones)"
            )
        self.sounding_pub = self.create_publisher(SoundingMask, "~/sounding", reliable_qos(10))
        self.mask_pub = self.create_publisher(Image, "~/mask", sensor_qos(5))
        self.score_pub = self.create_publisher(SoundingMask, "~/score", reliable_qos(50))
        self.overlay_pub = self.create_publisher(Image, "~/overlay", sensor_qos(5)) if self.p.publish_overlay else None
        self.class_pub = (
            self.create_publisher(Image, "~/class_map", sensor_qos(5)) if self.model.config.num_classes > 1 else None
        )
        depth = 1 if self.p.mode == "live" else self.p.replay_queue_size
        image_qos_profile, reliability = image_qos(self.p.mode, depth, self.p.image_qos_reliability)
        self.get_logger().info(f"images from {self.p.image_topic}: {reliability}, keep last {depth}")
        self.create_subscription(Image, self.p.image_topic, self.on_frame, image_qos_profile)
        self.create_subscription(AudioChunk, self.p.audio_topic, self._on_audio, sensor_qos(200, "reliable"))
        self.start_worker(self.p.mode, self.p.replay_queue_size, torch_threads=self.p.threads)

    # ------------------------------------------------------------------ audio
    def _on_audio(self, msg: AudioChunk) -> None:
        for line in self.stream.push_audio(
            msg.samples, sample_rate=msg.sample_rate, channels=msg.channels, start_ns=stamp_ns(msg.header.stamp),
            sequence=msg.sequence, overflow=msg.overflow, samples_per_channel=msg.samples_per_channel,
        ):
            self.warn(line)

    # ------------------------------------------------------------------ frames
    def process(self, msg: Image, received: float) -> None:
        frame = imgmsg_to_rgb8(msg)
        end_ns = stamp_ns(msg.header.stamp)
        result = self.stream.process(frame, end_ns, stop=self._stop)
        for note in result.notes:
            self.get_logger().info(note)
        window, pred = result.window, result.prediction
        score = SoundingMask()
        score.header = msg.header
        score.threshold = self.threshold
        if pred is None:  # reported, never silently dropped: the score topic gets NaN
            score.correspondence = score.score = math.nan
            self.score_pub.publish(score)
            self.warn(f"frame at {end_ns / NS:.3f} s scored NaN: {result.why}")
            return
        score.audio_window_start = set_stamp(TimeMsg(), window.start_ns)
        score.audio_window_end = set_stamp(TimeMsg(), window.end_ns)
        score.correspondence = math.nan if pred.similarity is None else float(pred.similarity)
        score.score = 1.0 if pred.score is None else float(pred.score)
        score.sounding = bool(pred.sounding)
        self.score_pub.publish(score)
        if not pred.sounding:
            return
        out = SoundingMask()
        out.header = msg.header
        out.audio_window_start, out.audio_window_end = score.audio_window_start, score.audio_window_end
        out.correspondence, out.score, out.threshold, out.sounding = (
            score.correspondence, score.score, score.threshold, True)
        out.mask = mask_to_imgmsg(pred.mask, msg.header)
        self.sounding_pub.publish(out)
        self.mask_pub.publish(out.mask)
        if self.class_pub is not None and pred.class_map is not None:
            self.class_pub.publish(array_to_imgmsg(pred.class_map.clip(0, 255).astype("uint8"), "mono8", msg.header))
        if self.overlay_pub is not None:
            self.overlay_pub.publish(array_to_imgmsg(overlay(frame, pred.mask), "rgb8", msg.header))

    def status(self):
        audio, c = self.stream.audio, self.stream.counters
        summary = f"audio to {audio.end_ns / NS:.2f} s" if audio.rate else "no audio yet"
        return summary, [("sounding_frames", c.sounding_frames), ("no_audio_frames", c.no_audio_frames),
                         ("lost_audio_chunks", c.lost_chunks), ("bad_audio_chunks", c.bad_chunks),
                         ("audio_rate", audio.rate or 0), ("threshold", self.threshold)]


def main(argv=None) -> None:
    argv = sys.argv if argv is None else argv
    parse_help(argv[1:], "avs_node", __doc__, AVSParams, TOPICS)
    run(AVSNode, argv)


if __name__ == "__main__":
    main()
