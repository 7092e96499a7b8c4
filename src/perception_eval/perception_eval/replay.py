"""replay-eval: play bags into the RUNNING nodes, record what they publish, score every frame.

Bags come from ``bag-from-dataset`` (:mod:`perception_eval.bags`). For each bag, its images, audio chunks and
instructions are published with the bag's own stamps (the messages are sent byte for byte as stored), in
log-time order, paced at the recorded rate times ``--rate`` (``--rate 0``: as fast as the nodes take them).
What the nodes publish is recorded and matched to the bag's frames by header stamp:

* tracking bags -> ``tracker_node``: ``<node>/result`` (TrackResult, one per frame) and ``<node>/reasoning``;
* AVS bags -> ``avs_node``: ``<node>/score`` (every frame: score, sounding) and ``<node>/sounding`` (the mask
  when the gate fired).

The outputs are scored by :mod:`perception_eval.scoring` -- the same scorer a direct library run
(``--direct``) uses -- and written as ``replay_eval.json``, ``replay_eval.md`` and plots (per-frame J and
purport score over time with rethinks marked; AVS score over time per audio condition) into ``--out``. A frame
with no output is a failure, never skipped.

Nodes: ``--graph config/tracking.yaml`` starts the graph's tracker_node / avs_node (only those the bags need;
the bag replaces camera and microphone) through ``perception-run`` with ``mode=replay``, a reliable image
subscription, an image topic of their own (``/replay_eval/{tracker,avs}/image_raw``, so neither node spends time
on the other task's frames) and any ``--set`` overrides, and stops them at the end. Without ``--graph``
replay-eval attaches to nodes already running under ``--tracker-node`` / ``--avs-node`` and publishes on the
bag's topics (or ``--image-topic`` ...); their ``mode`` should be ``replay`` (live mode drops frames by design)
and their image subscription reliable (best-effort frames over about 0.5 MB are not delivered by Fast DDS's
default transports): both are checked and reported.

Every bag of a run uses the same stamps, so before each bag replay-eval waits until the nodes have published
nothing for ``--quiet`` seconds, and a tracker's instruction is cleared (``~/cancel``) before a tracking bag.

Determinism (``--lockstep``, ``--brain-sync``): paced replay measures the nodes as they run, so which frames
the tracker answers before its brain is done depends on timing. ``--lockstep`` sends a frame only when the
previous frame's output has arrived (and waits ``--settle`` seconds after an instruction, so the instruction is
in before the next frame). ``--brain-sync`` (implies lockstep) also waits, after a frame that asked the brain
(state REASONING or rethinking), for that call's ``Reasoning`` message (at most ``--brain-wait`` seconds;
how often that ran out is reported) before the next frame. Then the node's results equal a direct library run
with ``scoring.run_tracker_library(..., brain_sync=True)`` on the same bag -- tests check exactly that.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avs.loading import load_model as load_avs
from perception_common.compiled import FRAME_COMPILE
from perception_common.precision import FRAME_PRECISIONS
from perception_common.stamps import header_ns, stamp_ns
from perception_nodes.processes import ManagedProcess
from perception_nodes.recorder import RecorderNode
from trackgpt.aot import use_frame_compile
from trackgpt.loading import load_model as load_tracker

from . import scoring
from .bags import NS, PLAYED_ROLES, BagError, Episode, read_episode

__all__ = ["NodeRecorder", "ReplayOptions", "main", "play_episode"]

DEFAULT_TRACKER_NODE = "/tracker/tracker_node"
DEFAULT_AVS_NODE = "/avs/avs_node"
STATE_NAMES = {0: "idle", 1: "reasoning", 2: "tracking", 3: "lost"}
TASK_EXECUTABLE = {"tracking": "tracker_node", "avs": "avs_node"}
GRAPH_IMAGE_TOPIC = {"tracker_node": "/replay_eval/tracker/image_raw", "avs_node": "/replay_eval/avs/image_raw"}


@dataclass
class ReplayOptions:
    rate: float = 1.0
    lockstep: bool = False
    brain_sync: bool = False
    settle: float = 0.3
    quiet: float = 0.5
    brain_wait: float = 5.0
    frame_timeout: float = 30.0
    drain_timeout: float = 10.0
    topics: dict[str, str] = field(default_factory=dict)  # role -> topic override


def _mask(image) -> np.ndarray | None:
    if image.width == 0 or image.height == 0:
        return None
    from perception_nodes.image_msgs import imgmsg_to_array

    return imgmsg_to_array(image) > 0


class NodeRecorder(RecorderNode):
    """The replay's recorder (:class:`perception_nodes.recorder.RecorderNode`): publishers for the bags' roles,
    subscriptions to what tracker_node / avs_node publish, everything recorded by frame stamp."""

    def __init__(self, *, tracker_node: str | None, avs_node: str | None, topics: dict[str, str]):
        from perception_msgs.msg import AudioChunk, Reasoning, SoundingMask, TrackResult
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        super().__init__(f"replay_eval_{os.getpid()}")  # loads the Fast DDS profile: this process publishes images
        dds_level, dds_message = self.dds
        if dds_level != "info":
            print(f"replay-eval: {dds_message}", file=sys.stderr, flush=True)
        self.tracker_node, self.avs_node = tracker_node, avs_node
        self.topics = topics

        types = {"image": Image, "audio": AudioChunk, "instruction": String}
        depth = {"image": 100, "audio": 1000, "instruction": 10}
        self.pubs = {role: self.publisher(types[role], topics[role], depth[role]) for role in types}
        # per-task image topics (graph mode gives each node its own, so a node never gets the other task's frames)
        self.image_pubs = {
            task: self.publisher(Image, topics[f"image_{task}"], 100)
            if topics.get(f"image_{task}", topics["image"]) != topics["image"]
            else self.pubs["image"]
            for task in ("tracking", "avs")
        }
        self.results: dict[int, Any] = {}
        self.reasoning: list[dict[str, Any]] = []
        self.scores: dict[int, Any] = {}
        self.sounding: dict[int, Any] = {}
        self.duplicates = 0
        self.last_output = time.monotonic()
        if tracker_node:
            # the callbacks take the lock themselves, after decoding (not while holding it)
            self.subscribe(TrackResult, f"{tracker_node}/result", self._on_result, 1000, locked=False)
            self.subscribe(Reasoning, f"{tracker_node}/reasoning", self._on_reasoning, 100, locked=False)
            from std_srvs.srv import Trigger

            self.cancel_client = self.node.create_client(Trigger, f"{tracker_node}/cancel")
        if avs_node:
            self.subscribe(SoundingMask, f"{avs_node}/score", self._on_score, 1000, locked=False)
            self.subscribe(SoundingMask, f"{avs_node}/sounding", self._on_sounding, 100, locked=False)

    # -- callbacks (executor thread) --------------------------------------------------
    def _store(self, table: dict, stamp: int, value) -> None:
        with self.lock:
            if stamp in table:
                self.duplicates += 1
            else:
                table[stamp] = value
            self.last_output = time.monotonic()
            self.lock.notify_all()

    def _on_result(self, msg) -> None:
        state = STATE_NAMES.get(int(msg.state), str(msg.state))
        mask = _mask(msg.mask)
        with_score = mask is not None
        self._store(
            self.results,
            header_ns(msg),
            scoring.TrackingFrameOutput(
                mask=mask,
                state=state,
                purport_score=float(msg.purport_score) if with_score else None,
                purport_threshold=float(msg.purport_threshold) if with_score and msg.purport_threshold > 0 else None,
                rethinking=bool(msg.rethinking),
                instruction_id=int(msg.instruction_id) or None,
                received_ns=time.time_ns(),
            ),
        )

    def _on_reasoning(self, msg) -> None:
        with self.lock:
            self.reasoning.append(
                {
                    "frame_stamp_ns": stamp_ns(msg.frame_stamp),
                    "published_ns": header_ns(msg),
                    "received_ns": time.time_ns(),
                    "instruction_id": int(msg.instruction_id),
                    "rethinking": bool(msg.rethinking),
                    "latency": float(msg.latency),
                    "success": bool(msg.success),
                    "error": msg.error,
                    "answer": msg.answer,
                }
            )
            self.last_output = time.monotonic()
            self.lock.notify_all()

    def _on_score(self, msg) -> None:
        self._store(self.scores, header_ns(msg), (float(msg.score), bool(msg.sounding), time.time_ns()))

    def _on_sounding(self, msg) -> None:
        self._store(self.sounding, header_ns(msg), _mask(msg.mask))

    # -- helpers -------------------------------------------------------------------------
    def ready(self, task: str) -> str | None:
        """None when the node of ``task`` is connected both ways, else what is missing."""
        node = self.tracker_node if task == "tracking" else self.avs_node
        out_topic = f"{node}/result" if task == "tracking" else f"{node}/score"
        pubs = {"image": self.image_pubs[task]}
        pubs.update({"instruction": self.pubs["instruction"]} if task == "tracking" else {"audio": self.pubs["audio"]})
        for pub in pubs.values():
            if pub.get_subscription_count() < 1:
                return f"nothing subscribes to {pub.topic_name}"
        if self.node.count_publishers(out_topic) < 1:
            return f"nothing publishes {out_topic}"
        return None

    def node_parameter(self, node: str, name: str) -> str | None:
        """A parameter of a running node as a string (None when the node does not answer)."""
        from rcl_interfaces.srv import GetParameters

        client = self.node.create_client(GetParameters, f"{node}/get_parameters")
        try:
            if not client.wait_for_service(timeout_sec=3.0):
                return None
            future = client.call_async(GetParameters.Request(names=[name]))
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            if not done.wait(5.0) or future.result() is None or not future.result().values:
                return None
            value = future.result().values[0]
            return value.string_value if value.type == 4 else None
        finally:
            self.node.destroy_client(client)

    def cancel_instruction(self) -> bool:
        from std_srvs.srv import Trigger

        client = getattr(self, "cancel_client", None)
        if client is None or not client.wait_for_service(timeout_sec=2.0):
            return False
        future = client.call_async(Trigger.Request())
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        return done.wait(5.0) and future.result() is not None and future.result().success

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Wait until no output arrived for ``quiet`` seconds (at most ``timeout`` seconds); True when quiet."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                idle = time.monotonic() - self.last_output
            if idle >= quiet:
                return True
            if time.monotonic() + (quiet - idle) > deadline:
                return False
            time.sleep(quiet - idle)

    def reset(self) -> None:
        with self.lock:
            self.results.clear()
            self.scores.clear()
            self.sounding.clear()
            self.reasoning.clear()
            self.duplicates = 0


# ---------------------------------------------------------------------------------------------- playing
def _frame_done(rec: NodeRecorder, task: str, stamp: int) -> bool:
    if task == "tracking":
        return stamp in rec.results
    score = rec.scores.get(stamp)
    return score is not None and (not score[1] or stamp in rec.sounding)


def play_episode(rec: NodeRecorder, episode: Episode, options: ReplayOptions) -> dict[str, Any]:
    """Publish one episode and collect the node outputs; returns outputs by stamp plus playing statistics."""
    task = episode.task
    lockstep = options.lockstep or options.brain_sync
    stamps = set(episode.stamps)
    stats = {
        "frames_published": 0,
        "brain_sync_waits": 0,
        "brain_sync_timeouts": 0,
        "frame_timeouts": 0,
        "instruction_not_applied": 0,
        "cancelled_before": False,
    }
    # outputs of the previous episode still coming (same stamps in every bag) must not be taken for this one's
    stats["quiet_before"] = rec.wait_quiet(options.quiet, options.drain_timeout)
    if task == "tracking":
        stats["cancelled_before"] = rec.cancel_instruction()
    rec.reset()
    start_wall = time.monotonic()
    first_log: int | None = None
    shift = 0.0  # seconds the schedule has been pushed back by lockstep waits
    instruction_sent = False
    for role, log_ns, _, raw in episode.raw_messages(PLAYED_ROLES):
        if role not in rec.pubs:
            continue
        if first_log is None:
            first_log = log_ns
        if options.rate > 0:
            due = start_wall + shift + (log_ns - first_log) / NS / options.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        (rec.image_pubs[task] if role == "image" else rec.pubs[role]).publish(raw)
        if role == "instruction":
            instruction_sent = True
            if lockstep and options.settle > 0:
                time.sleep(options.settle)
                shift += options.settle
            continue
        if role != "image":
            continue
        stats["frames_published"] += 1
        if not lockstep:
            continue
        t_wait = time.monotonic()
        stamp = episode.stamps[stats["frames_published"] - 1]  # images are logged at their stamps, in order
        if not rec.wait_for(lambda s=stamp: _frame_done(rec, task, s), options.frame_timeout):
            stats["frame_timeouts"] += 1
        if task == "tracking":
            with rec.lock:
                result = rec.results.get(stamp)
            if result is not None and instruction_sent and result.state == "idle":
                stats["instruction_not_applied"] += 1
            if options.brain_sync and result is not None and (result.state == "reasoning" or result.rethinking):
                stats["brain_sync_waits"] += 1
                if not rec.wait_for(
                    lambda s=stamp: any(r["frame_stamp_ns"] == s for r in rec.reasoning), options.brain_wait
                ):
                    stats["brain_sync_timeouts"] += 1
        shift += time.monotonic() - t_wait
    # drain: wait until every frame is answered, or nothing new arrived for drain_timeout seconds
    while True:
        with rec.lock:
            done = all(_frame_done(rec, task, s) for s in episode.stamps)
            idle = time.monotonic() - rec.last_output
        if done or idle > options.drain_timeout:
            break
        rec.wait_for(lambda: False, 0.1)
    stats["play_seconds"] = round(time.monotonic() - start_wall, 3)
    with rec.lock:
        if task == "tracking":
            outputs = {s: o for s, o in rec.results.items() if s in stamps}
            reasoning = [dict(r) for r in rec.reasoning]
        else:
            outputs = {}
            for s, (score, sounding, received) in rec.scores.items():
                if s in stamps:
                    outputs[s] = scoring.AVSFrameOutput(
                        score=score, sounding=sounding, mask=rec.sounding.get(s), received_ns=received
                    )
            reasoning = []
            stats["sounding_without_mask"] = sum(1 for o in outputs.values() if o.sounding and o.mask is None)
        stats["foreign_outputs"] = sum(
            1 for s in (rec.results if task == "tracking" else rec.scores) if s not in stamps
        )
        stats["duplicate_outputs"] = rec.duplicates
    return {"outputs": outputs, "reasoning": reasoning, "stats": stats}


# ---------------------------------------------------------------------------------------------- nodes
class GraphNodes:
    """Start a graph's tracker_node / avs_node through perception-run (mode=replay) and stop them."""

    def __init__(self, graph: Path, tasks: set[str], overrides: Sequence[str], log_path: Path):
        from perception_nodes.graph import load_graph

        specs = load_graph(graph)
        wanted = {TASK_EXECUTABLE[t] for t in tasks}
        self.specs = {s.executable: s for s in specs if s.executable in wanted}
        missing = wanted - set(self.specs)
        if missing:
            raise BagError(f"{graph} has no {', '.join(sorted(missing))} for these bags")
        self.names = {exe: (spec.namespace + "/" + exe) for exe, spec in self.specs.items()}
        cmd = ["perception-run", str(graph), "--only", ",".join(s.key for s in self.specs.values())]
        self.image_topics: dict[str, str] = {}
        for exe, spec in self.specs.items():
            # replay mode, and a reliable image subscription: every frame must arrive (best-effort images over
            # about 0.5 MB are not delivered at all by Fast DDS's default transports on a stock machine)
            cmd += ["--set", f"{spec.key}.mode=replay", "--set", f"{spec.key}.image_qos_reliability=reliable"]
            # each node its own image topic: tracking bags' frames never reach the AVS node and vice versa
            self.image_topics[exe] = GRAPH_IMAGE_TOPIC[exe]
            cmd += ["--set", f"{spec.key}.image_topic={GRAPH_IMAGE_TOPIC[exe]}"]
        for item in overrides:  # the user's overrides come last and win
            cmd += ["--set", item]
            lhs, _, value = item.partition("=")
            for exe in self.specs:
                if lhs.endswith(f"{exe}.image_topic"):
                    self.image_topics[exe] = value
        if shutil.which("perception-run") is None:
            cmd = [sys.executable, "-m", "perception_nodes.launcher", *cmd[1:]]
        self.log_path = log_path
        self.cmd = cmd
        self.proc = ManagedProcess(cmd, name="perception-run", log_path=log_path)

    def topic(self, exe: str, param: str, default: str) -> str:
        spec = self.specs.get(exe)
        value = spec.parameters.get(param) if spec is not None else None
        return str(value) if value else default

    def failed(self) -> str | None:
        code = self.proc.poll()
        if code is None:
            return None
        return f"perception-run exited with code {code}; its log: {self.log_path}"

    def stop(self) -> None:
        self.proc.stop(grace=20.0)


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replay-eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  replay-eval out/bags/* --graph config/robot.yaml --set /tracker/tracker_node.model=config:tiny "
        "--out out/replay\n"
        "  replay-eval out/bags/vid0 --lockstep --out out/replay          (nodes already running, mode=replay)\n"
        "  replay-eval out/bags/* --direct --tracker-model config:tiny --avs-model models/avs --out out/direct",
    )
    parser.add_argument("bags", nargs="+", type=Path, help="bag folders written by bag-from-dataset")
    parser.add_argument("--out", type=Path, required=True, help="folder for replay_eval.json / .md and plots")
    parser.add_argument(
        "--graph",
        type=Path,
        default=None,
        help="start this graph's tracker_node / avs_node (mode=replay) with perception-run",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="parameter override for --graph (repeatable)",
    )
    parser.add_argument("--tracker-node", default=None, help=f"tracker node name (default {DEFAULT_TRACKER_NODE})")
    parser.add_argument("--avs-node", default=None, help=f"AVS node name (default {DEFAULT_AVS_NODE})")
    parser.add_argument("--rate", type=float, default=1.0, help="playing speed factor; 0 = as fast as possible")
    parser.add_argument("--lockstep", action="store_true", help="send a frame only after the previous output")
    parser.add_argument(
        "--brain-sync",
        action="store_true",
        help="tracking: after a frame that asked the brain, wait for its Reasoning (implies "
        "--lockstep): results equal a direct library run",
    )
    parser.add_argument("--settle", type=float, default=0.3, help="lockstep: seconds after an instruction")
    parser.add_argument(
        "--quiet", type=float, default=0.5, help="before each bag: wait until the nodes published nothing for this long"
    )
    parser.add_argument("--brain-wait", type=float, default=5.0, help="brain-sync: most seconds to wait")
    parser.add_argument("--frame-timeout", type=float, default=30.0, help="lockstep: most seconds per frame")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="after the last message: stop waiting when nothing arrived for this long",
    )
    parser.add_argument("--wait-nodes", type=float, default=120.0, help="most seconds to wait for the nodes")
    for role in PLAYED_ROLES:
        parser.add_argument(f"--{role}-topic", default=None, help=f"publish the bag's {role} here instead")
    parser.add_argument("--direct", action="store_true", help="no ROS: run the model libraries on the bags")
    parser.add_argument("--tracker-model", default="config:tiny", help="--direct: tracker model (node syntax)")
    parser.add_argument("--avs-model", default="config:tiny", help="--direct: AVS model (node syntax)")
    parser.add_argument("--device", default="cpu", help="--direct: torch device")
    parser.add_argument("--tau", type=float, default=0.5, help="--direct: rethinking threshold tau")
    parser.add_argument("--frame-precision", default="auto", choices=FRAME_PRECISIONS,
                        help="--direct: both models' frame paths, as the nodes' frame_precision (default auto, "
                             "the nodes' default: the same masks as the nodes)")
    parser.add_argument("--frame-compile", default="auto", choices=FRAME_COMPILE,
                        help="--direct: the tracker's image encoder as a compiled package, as tracker_node's "
                             "frame_compile (auto: when trackgpt-compile built one for the model)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--save-masks", action="store_true", help="also write every output mask as a PNG")
    return parser


def _reasoning_summary(calls: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [c["latency"] for c in calls if c["success"]]
    return {
        "calls": len(calls),
        "failed": sum(1 for c in calls if not c["success"]),
        "latency_p50": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_max": float(max(latencies)) if latencies else None,
    }


def run_direct(episodes: list[Episode], args, warnings: list[str]) -> list[dict[str, Any]]:
    results = []
    tracker = avs = None
    for episode in episodes:
        t0 = time.monotonic()
        if episode.task == "tracking":
            if tracker is None:
                tracker = load_tracker(args.tracker_model, device=args.device)
                tracker.perception.set_frame_precision(args.frame_precision)
                use_frame_compile(tracker, args.frame_compile, args.device, spec=args.tracker_model,
                                  frame_precision=args.frame_precision, threads=1,  # as run_tracker_library runs
                                  warn=lambda line: warnings.append(f"tracker: {line}"))
            outputs = scoring.run_tracker_library(episode, tracker, tau=args.tau, warnings=warnings)
        else:
            if avs is None:
                avs = load_avs(args.avs_model, device=args.device)
                avs.set_frame_precision(args.frame_precision)
            outputs = scoring.run_avs_library(episode, avs, warnings=warnings)
        result = scoring.score_episode(episode, outputs)
        if args.save_masks:
            scoring.save_masks(args.out / "masks", result, outputs)
        result["play"] = {"seconds": round(time.monotonic() - t0, 3)}
        results.append(result)
    return results


def run_nodes(episodes: list[Episode], args, options: ReplayOptions, warnings: list[str]) -> tuple[list, dict]:
    tasks = {e.task for e in episodes}
    graph = None
    extra: dict[str, Any] = {}
    topics = dict(options.topics)
    tracker_name = args.tracker_node or DEFAULT_TRACKER_NODE
    avs_name = args.avs_node or DEFAULT_AVS_NODE
    if args.graph is not None:
        graph = GraphNodes(args.graph, tasks, args.set, args.out / "nodes.log")
        tracker_name = args.tracker_node or graph.names.get("tracker_node", tracker_name)
        avs_name = args.avs_node or graph.names.get("avs_node", avs_name)
        for task in tasks:
            topics.setdefault(f"image_{task}", graph.image_topics[TASK_EXECUTABLE[task]])
        topics.setdefault("instruction", graph.topic("tracker_node", "instruction_topic", ""))
        topics.setdefault("audio", graph.topic("avs_node", "audio_topic", ""))
        topics = {k: v for k, v in topics.items() if v}
        extra["graph"] = {"file": str(args.graph), "command": graph.cmd}
    for role in PLAYED_ROLES:  # default: the first bag's topic
        topics.setdefault(role, next((e.topics[role] for e in episodes if role in e.topics), f"/{role}"))
    if len(tasks) == 2 and topics.get("image_tracking", topics["image"]) == topics.get("image_avs", topics["image"]):
        warnings.append(
            f"tracker and AVS node both get the frames of every bag on {topics['image']}; episodes are kept apart "
            "by waiting for quiet, but each node also spends time on the other task's frames"
        )
    rec = NodeRecorder(
        tracker_node=tracker_name if "tracking" in tasks else None,
        avs_node=avs_name if "avs" in tasks else None,
        topics=topics,
    )
    results = []
    try:
        deadline = time.monotonic() + args.wait_nodes
        for task in sorted(tasks):
            while (why := rec.ready(task)) is not None:
                if graph is not None and graph.failed():
                    raise BagError(graph.failed())
                if time.monotonic() > deadline:
                    raise BagError(f"nodes not ready after {args.wait_nodes:.0f} s: {why}")
                time.sleep(0.1)
        modes = {}
        for task, name in (("tracking", tracker_name), ("avs", avs_name)):
            if task in tasks:
                modes[name] = rec.node_parameter(name, "mode")
                if modes[name] == "live":
                    warnings.append(
                        f"{name} runs in live mode: it keeps only the newest frame, so frames are "
                        "dropped by design; start it with mode:=replay"
                    )
                if rec.node_parameter(name, "image_qos_reliability") == "best_effort":
                    warnings.append(
                        f"{name} subscribes to images best-effort: frames can be lost under load and are then "
                        "missing from the score; start it with image_qos_reliability:=reliable (or auto in replay mode)"
                    )
        extra.update(
            {
                "nodes": {
                    "tracker": tracker_name if "tracking" in tasks else None,
                    "avs": avs_name if "avs" in tasks else None,
                    "modes": modes,
                },
                "topics": topics,
            }
        )
        for episode in episodes:
            print(f"replay-eval: playing {episode.path} ({episode.task}, {len(episode.frames)} frames)", flush=True)
            played = play_episode(rec, episode, options)
            result = scoring.score_episode(episode, played["outputs"])
            result["play"] = played["stats"]
            if args.save_masks:
                scoring.save_masks(args.out / "masks", result, played["outputs"])
            if episode.task == "tracking":
                result["reasoning"] = played["reasoning"]
                result["reasoning_summary"] = _reasoning_summary(played["reasoning"])
                if played["stats"]["brain_sync_timeouts"]:
                    warnings.append(
                        f"{episode.name}: {played['stats']['brain_sync_timeouts']} brain-sync wait(s) "
                        "ran out (the node published no Reasoning for that frame in time)"
                    )
                if played["stats"]["instruction_not_applied"]:
                    warnings.append(
                        f"{episode.name}: {played['stats']['instruction_not_applied']} frame(s) after "
                        "an instruction came back IDLE (instruction late or rejected)"
                    )
            results.append(result)
    finally:
        rec.close()
        if graph is not None:
            graph.stop()
    return results, extra


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rate < 0:
        parser.error("--rate must be >= 0")
    try:
        episodes = [read_episode(p) for p in args.bags]
    except BagError as exc:
        parser.error(str(exc))
    options = ReplayOptions(
        rate=args.rate,
        lockstep=args.lockstep,
        brain_sync=args.brain_sync,
        settle=args.settle,
        quiet=args.quiet,
        brain_wait=args.brain_wait,
        frame_timeout=args.frame_timeout,
        drain_timeout=args.drain_timeout,
        topics={r: getattr(args, f"{r}_topic") for r in PLAYED_ROLES if getattr(args, f"{r}_topic")},
    )
    warnings: list[str] = []
    settings: dict[str, Any] = {"bags": [str(p) for p in args.bags]}
    try:
        if args.direct:
            settings.update(
                {
                    "tracker_model": args.tracker_model,
                    "avs_model": args.avs_model,
                    "device": args.device,
                    "tau": args.tau,
                    "brain_sync": True,
                }
            )
            results = run_direct(episodes, args, warnings)
            path = "library"
        else:
            settings.update(
                {
                    "rate": args.rate,
                    "lockstep": options.lockstep or options.brain_sync,
                    "brain_sync": args.brain_sync,
                    "settle": args.settle,
                }
            )
            results, extra = run_nodes(episodes, args, options, warnings)
            settings.update(extra)
            path = "nodes"
    except BagError as exc:
        print(f"replay-eval: error: {exc}", file=sys.stderr)
        return 2
    overall = scoring.summarize(results)
    report = {"path": path, "settings": settings, "warnings": warnings, "episodes": results, "overall": overall}
    paths = scoring.write_report(args.out, report, plots=not args.no_plots)
    print(scoring.markdown_report(report))
    for w in warnings:
        print(f"replay-eval: warning: {w}", file=sys.stderr)
    print(f"replay-eval: wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
