"""tracker_node: instruction tracking (TrackGPT) on a camera stream.

Send an instruction on ``instruction_topic`` (std_msgs/String). The
vision-language brain reasons about it in its own thread while every frame
keeps being decoded; results go out per processed frame. ``mode`` chooses how
frames are taken:

* ``live``: only the newest frame is kept; frames replaced before they were
  processed are counted as dropped and reported, so latency cannot grow;
* ``replay``: every frame is processed in arrival order (for evaluation with
  recorded bags); frames beyond ``replay_queue_size`` are dropped with a warning.

Bad input (unsupported encoding, empty image, size/step mismatch, empty or
oversized instruction) is reported with a warning naming the problem; the node
keeps running.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from perception_msgs.msg import Reasoning, TrackResult
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import String
from std_srvs.srv import Trigger

from perception_common.affinity import parse_cpus
from perception_common.images import overlay
from perception_common.models import resolve_device
from perception_common.params import param
from perception_common.precision import resolve_frame_precision
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
from trackgpt.aot import use_frame_compile
from trackgpt.brain_process import ProcessBrain
from trackgpt.errors import TrackGPTError
from trackgpt.loading import load_model, shipped_folder
from trackgpt.tracker import OnlineTracker, TrackState

TOPICS = """topics:
  subscribes  <image_topic>        sensor_msgs/msg/Image            camera frames (any supported encoding)
  subscribes  <instruction_topic>  std_msgs/msg/String              free-text instruction; a new one supersedes
  publishes   ~/result             perception_msgs/msg/TrackResult  one per processed frame, the frame's stamp
  publishes   ~/mask               sensor_msgs/msg/Image            mono8 0/255 target mask (while tracking)
  publishes   ~/overlay            sensor_msgs/msg/Image            rgb8 frame with the mask (publish_overlay)
  publishes   ~/reasoning          perception_msgs/msg/Reasoning    one per brain call
  publishes   /diagnostics         diagnostic_msgs/msg/DiagnosticArray  rates, drops, state (1 Hz)
services:
  ~/cancel  std_srvs/srv/Trigger  drop the current instruction (state IDLE)"""

STATE_CODES = {
    TrackState.IDLE: TrackResult.STATE_IDLE,
    TrackState.REASONING: TrackResult.STATE_REASONING,
    TrackState.TRACKING: TrackResult.STATE_TRACKING,
    TrackState.LOST: TrackResult.STATE_LOST,
}


@dataclass
class TrackerParams:
    model: str = param("", "model folder (save_pretrained output); '' = the shipped embedded model; "
                           "'config:NAME' = a registered configuration with random weights (tests, benchmarks)")
    device: str = param("auto", "auto | cpu | cuda | cuda:N")
    precision: str = param("fp32", "the brain's precision: fp32 | bf16 | fp16 | int8 | int4 (int8/int4: CUDA + "
                                   "bitsandbytes)")
    frame_precision: str = param("auto", "the frame path's image encoder: auto (bf16 on a CPU with native bf16, "
                                         "else fp32) | fp32 | bf16")
    frame_compile: str = param("auto", "the image encoder as an AOTInductor package built for this CPU (fused C++, "
                                       "weights pre-packed): auto (when trackgpt-compile has built one for this "
                                       "model) | on (build it at start-up if missing: about a minute on 2 cores) | off")
    tau: float = param(0.5, "rethink when the purport score falls below tau x its first value", minimum=0.0,
                       maximum=1.0)
    mask_threshold: float = param(math.nan, "mask logit threshold; nan = the model's own (config.sam.mask_threshold)",
                                  allow_nan=True)
    mode: str = param("live", "live (newest frame only) or replay (every frame, in order)")
    image_topic: str = param("/camera/image_raw", "camera topic")
    instruction_topic: str = param("/instruction", "instruction topic (std_msgs/String)")
    image_qos_reliability: str = param("auto", IMAGE_QOS_HELP)
    image_qos_depth: int = param(1, "image subscription depth in live mode; replay mode uses replay_queue_size",
                                 minimum=1)
    replay_queue_size: int = param(1000, "replay mode: frames buffered before the oldest are dropped", minimum=1)
    publish_overlay: bool = param(False, "also publish ~/overlay (rgb8 frame with the mask)")
    max_instruction_bytes: int = param(4096, "instructions longer than this (UTF-8 bytes) are rejected", minimum=1)
    brain_threads: int = param(1, "torch threads for the reasoning worker (0 = leave unchanged)", minimum=0)
    frame_threads: int = param(1, "torch threads for per-frame decoding (0 = leave unchanged)", minimum=0)
    brain_nice: int = param(10, "nice increment of the reasoning worker (0-19; 0 = unchanged): frames first",
                            minimum=0, maximum=19)
    brain_process: bool = param(True, "reason in a separate process (no GIL contention with the frame path); "
                                      "false = a thread in this process (one CUDA context)")
    brain_cpus: str = param("", "brain_process: CPU ids the brain may use, e.g. '1' or '2,3' (Linux; '' = all)",
                            int_as_text=True)
    frame_cpus: str = param("", "CPU ids the node's frame thread (the frame path) may use, e.g. '0' (Linux; '' = all;"
                            " the node's other threads stay free)", int_as_text=True)
    brain_hang_timeout: float = param(300.0, "brain_process: seconds one brain call may take before the brain "
                                             "process is killed and restarted", positive=True)


class TrackerNode(FrameWorkerNode):
    def __init__(self):
        super().__init__("tracker_node")
        self.p = declare_and_read(self, TrackerParams)
        if self.p.mode not in MODES:
            raise ValueError(f"parameter 'mode' must be one of {MODES}, got {self.p.mode!r}")
        if math.isinf(self.p.mask_threshold):
            raise ValueError(f"parameter 'mask_threshold' must be finite or nan, got {self.p.mask_threshold}")
        device = resolve_device(self.p.device)
        frame_precision = resolve_frame_precision(self.p.frame_precision, device)
        brain_cpus = parse_cpus(self.p.brain_cpus, "brain_cpus")
        frame_cpus = parse_cpus(self.p.frame_cpus, "frame_cpus")
        t0 = time.monotonic()
        self.brain_process = None
        if self.p.brain_process:  # the child loads the brain while this process loads the perception
            self.brain_process = ProcessBrain(
                self.p.model, device=device, precision=self.p.precision, threads=self.p.brain_threads or None,
                nice=self.p.brain_nice, cpus=brain_cpus, hang_timeout=self.p.brain_hang_timeout, wait=False,
            )
            try:
                model = load_model(self.p.model, device=device, precision=self.p.precision, with_brain=False)
                self.brain_process.wait_ready()
            except BaseException:
                self.brain_process.close()
                raise
        else:
            model = load_model(self.p.model, device=device, precision=self.p.precision)
        source = self.p.model or str(shipped_folder())
        if not math.isnan(self.p.mask_threshold):
            model.perception.mask_threshold = self.p.mask_threshold
        model.perception.set_frame_precision(frame_precision)
        compiled = use_frame_compile(  # the package runs as many threads as it was built for
            model, self.p.frame_compile, device, spec=self.p.model, frame_precision=self.p.frame_precision,
            threads=self.p.frame_threads or torch.get_num_threads(), warn=self.get_logger().warning)
        in_process = self.brain_process is None
        # brain calls end whether or not frames arrive: the tracker wakes the executor when a record exists (a
        # polling timer woke it 20 times a second, and each wake takes the GIL from the frame path)
        records_ready = self.create_guard_condition(self._publish_reasoning)
        self.tracker = OnlineTracker(
            perception=model, brain=self.brain_process, tau=self.p.tau,
            brain_threads=(self.p.brain_threads or None) if in_process else None,
            frame_threads=self.p.frame_threads or None,
            brain_nice=self.p.brain_nice if in_process else 0, on_record=records_ready.trigger,
        )
        if self.brain_process is not None:
            self.get_logger().info(
                f"brain process {self.brain_process.pid} ready (loaded in {self.brain_process.info['load_s']:.1f} s"
                f"{', CPUs ' + self.p.brain_cpus if brain_cpus else ''})"
            )
        if self.tracker.wait_started(5.0) and self.tracker.brain_nice_error:
            self.get_logger().warning(f"brain_nice {self.p.brain_nice} not applied: {self.tracker.brain_nice_error}")
        self.get_logger().info(
            f"model {source} on {device} (brain {self.p.precision}, frame path {frame_precision}, encoder {compiled}) "
            f"loaded in "
            f"{time.monotonic() - t0:.1f} s; "
            f"mode {self.p.mode}, tau {self.p.tau}, mask threshold {model.perception.mask_threshold:g}, "
            f"image conversion: {BACKEND}"
        )
        self.result_pub = self.create_publisher(TrackResult, "~/result", reliable_qos(10))
        self.mask_pub = self.create_publisher(Image, "~/mask", sensor_qos(5))
        self.overlay_pub = self.create_publisher(Image, "~/overlay", sensor_qos(5)) if self.p.publish_overlay else None
        self.reasoning_pub = self.create_publisher(Reasoning, "~/reasoning", reliable_qos(10))
        depth = self.p.image_qos_depth if self.p.mode == "live" else self.p.replay_queue_size
        image_qos_profile, reliability = image_qos(self.p.mode, depth, self.p.image_qos_reliability)
        self.get_logger().info(f"images from {self.p.image_topic}: {reliability}, keep last {depth}")
        self.create_subscription(Image, self.p.image_topic, self.on_frame, image_qos_profile)
        self.create_subscription(String, self.p.instruction_topic, self._on_instruction, reliable_qos(10))
        self.create_service(Trigger, "~/cancel", self._on_cancel)
        self._stamps: dict[int, object] = {}  # frame_index -> header (for Reasoning.frame_stamp)
        self._last_state = TrackState.IDLE
        self.start_worker(self.p.mode, self.p.replay_queue_size, cpus=frame_cpus)

    # ------------------------------------------------------------------ callbacks
    def _on_instruction(self, msg: String) -> None:
        text = msg.data
        size = len(text.encode("utf-8", errors="replace"))
        if size > self.p.max_instruction_bytes:
            self.get_logger().warning(
                f"instruction rejected: {size} bytes is more than max_instruction_bytes={self.p.max_instruction_bytes}"
            )
            return
        try:
            iid = self.tracker.set_instruction(text)
        except TrackGPTError as exc:
            self.get_logger().warning(f"instruction rejected: {exc}")
            return
        # throttled: a flood of instructions must not flood the log (each still gets its ~/reasoning record)
        self.get_logger().info(f"instruction {iid}: {text!r}", throttle_duration_sec=0.5)

    def _on_cancel(self, request, response):
        self.tracker.clear_instruction()
        response.success, response.message = True, "instruction cleared"
        self.get_logger().info("instruction cleared")
        return response

    # ------------------------------------------------------------------ frame path
    def process(self, msg: Image, received: float) -> None:
        frame = imgmsg_to_rgb8(msg)
        step = self.tracker.step(frame)
        self._stamps[step.frame_index] = msg.header
        if len(self._stamps) > 10000:
            for k in sorted(self._stamps)[:5000]:
                del self._stamps[k]
        out = TrackResult()
        out.header = msg.header
        out.instruction_id = step.instruction_id or 0
        out.instruction = (self.tracker.instruction or "") if step.instruction_id else ""
        out.answer = step.answer or ""
        out.state = STATE_CODES[step.state]
        out.rethinking = bool(step.rethinking)
        out.rethink_count = int(step.rethink_count)
        if step.purport_score is not None:
            out.purport_score = float(step.purport_score)
        if step.purport_threshold is not None:
            out.purport_threshold = float(step.purport_threshold)
        if step.mask is not None:
            out.mask = mask_to_imgmsg(step.mask, msg.header)
            x, y, w, h = step.box
            out.box = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
        out.processing_time = float(time.monotonic() - received)
        self.result_pub.publish(out)
        if step.mask is not None:
            self.mask_pub.publish(out.mask)
            if self.overlay_pub is not None:
                self.overlay_pub.publish(array_to_imgmsg(overlay(frame, step.mask), "rgb8", msg.header))
        if step.state != self._last_state:
            self.get_logger().info(f"state {self._last_state.value} -> {step.state.value}")
            self._last_state = step.state
        if step.rethinking:
            self.get_logger().info(f"rethinking (purport {out.purport_score:.3f} < {out.purport_threshold:.3f})")

    def _publish_reasoning(self) -> None:
        for rec in self.tracker.pop_reasoning_records():
            msg = Reasoning()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.instruction_id = rec.instruction_id
            msg.instruction = rec.instruction
            header = self._stamps.get(rec.frame_index)
            if header is not None:
                msg.frame_stamp = header.stamp
            msg.rethinking = rec.kind == "rethink"
            msg.answer = rec.answer or ""
            msg.latency = float(rec.latency)
            msg.success = rec.error is None
            msg.error = rec.error or ""
            self.reasoning_pub.publish(msg)
            outcome = f"answer {msg.answer!r}" if msg.success else f"no answer: {msg.error}"
            line = f"reasoning for instruction {rec.instruction_id} ({rec.kind}), {rec.latency:.2f} s: {outcome}"
            if rec.error is not None and rec.error.startswith(("superseded", "cleared")):
                self.get_logger().info(line, throttle_duration_sec=0.5)  # floods: one line per half second
            else:
                self.get_logger().info(line)

    def status(self):
        values = [("state", self._last_state.value), ("rethinks", self.tracker.rethink_count)]
        if self.brain_process is not None:
            values += [("brain_pid", self.brain_process.pid), ("brain_restarts", self.brain_process.restarts),
                       ("brain_last_failure", self.brain_process.last_failure or "")]
        return self._last_state.value, values

    def close(self) -> None:
        super().close()
        self.tracker.close()
        if self.brain_process is not None:
            self.brain_process.close()


def main(argv=None) -> None:
    argv = sys.argv if argv is None else argv
    parse_help(argv[1:], "tracker_node", __doc__, TrackerParams, TOPICS)
    run(TrackerNode, argv)


if __name__ == "__main__":
    main()
