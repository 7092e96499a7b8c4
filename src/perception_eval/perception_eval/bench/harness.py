"""The node-level benchmark run (see the package docstring for what is measured and why)."""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from perception_common.affinity import others_kept_off, parse_cpus, pinned
from perception_common.stamps import NS
from perception_common.timing import split_evenly
from perception_nodes.processes import stop_all

from .procs import NodeProcess

# default: the shipped embedded models (their folders, so the bare loops and the nodes load the same files)
DEFAULT_MODELS = {"tracker": "shipped embedded model", "avs": "shipped embedded model"}
FULL_MODELS = {"tracker": "config:llava-7b-sam-vit-h", "avs": "config:pvt-v2-b5-vggish"}
DECODED = (2, 3)  # TrackResult.STATE_TRACKING, STATE_LOST
INSTRUCTIONS = ("track the red cup on the table", "follow the person walking to the door")
AUDIO_LEAD_S = 1.0


# ---------------------------------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return float(num) / float(den)


def live_stats(
    stamps: list[int],
    rows: list[tuple],
    *,
    margin_ns: int,
    keep: Callable[[tuple], bool] | None = None,
) -> dict[str, Any]:
    """Figures of a live phase: frames published (``stamps`` = publish times) vs outputs ``rows``
    (``(stamp, received, ...)``).

    Latency = received - stamp, over the rows ``keep`` accepts. Queued beyond the newest: the node's single
    worker took frame ``k`` at about :func:`taken_at` (when it was free again, never before ``k`` was
    published); every frame newer than ``k`` and published more than ``margin_ns`` before that moment was
    waiting while an older one was taken. The margin absorbs transport and the arrival-time error of this
    process (one input frame period by default).
    """
    index = {s: i for i, s in enumerate(stamps)}
    mine = sorted((r for r in rows if r[0] in index), key=lambda r: r[1])
    taken = taken_at(mine)
    kept = [r for r in mine if keep is None or keep(r)]
    latency_ms = [(r[1] - r[0]) / 1e6 for r in kept]
    queued, examples, out_of_order, last_stamp = [], [], 0, -1
    for r in mine:
        start = taken[r[0]]
        newest = bisect.bisect_right(stamps, start - margin_ns) - 1
        queued.append(max(0, newest - index[r[0]]))
        if queued[-1] and len(examples) < 10:
            examples.append(
                {
                    "frame": index[r[0]],
                    "newest_published": newest,
                    "newest_waited_ms": round((start - stamps[newest]) / 1e6, 1),
                    "latency_ms": round((r[1] - r[0]) / 1e6, 1),
                }
            )
        out_of_order += r[0] < last_stamp
        last_stamp = max(last_stamp, r[0])
    gaps = np.diff(stamps) if len(stamps) > 1 else np.array([])
    gap = float(np.median(gaps)) / NS if len(gaps) else 0.0  # the median gap: phases may come in windows
    return {
        "published": len(stamps),
        "input_fps": 1.0 / gap if gap > 0 else None,
        "processed": len(mine),
        "missed": len(stamps) - len(mine),
        "latency_frames": len(kept),
        "latency_ms_p50": percentile(latency_ms, 50),
        "latency_ms_p99": percentile(latency_ms, 99),
        "latency_ms_max": max(latency_ms) if latency_ms else None,
        "queued_beyond_newest_max": max(queued) if queued else 0,
        "frames_taken_while_newer_waited": sum(1 for q in queued if q > 0),
        "queued_examples": examples,
        "queue_margin_ms": margin_ns / 1e6,
        "out_of_order": int(out_of_order),
    }


def taken_at(rows: list[tuple]) -> dict[int, int]:
    """Stamp -> when the node's single worker took that frame, estimated as ``max(its publish time, arrival of
    the previous output)``: outputs come in processing order, and the worker is free once it published one."""
    taken, prev = {}, 0
    for r in sorted(rows, key=lambda r: r[1]):
        taken[r[0]] = max(r[0], prev)
        prev = r[1]
    return taken


def brain_intervals(rows: list[tuple], reasoning: list[tuple], end_ns: int) -> list[tuple[int, int]]:
    """Wall-clock spans of brain calls: from the moment the frame that asked was taken (:func:`taken_at`) for the
    call's latency; a rethink whose Reasoning never came lasts to ``end_ns``."""
    by_stamp = {r[0]: r for r in rows}
    taken = taken_at(rows)
    spans, covered = [], set()
    for frame_stamp, latency, _ok, _recv in reasoning:
        r = by_stamp.get(frame_stamp)
        if r is None:
            continue
        start = taken[frame_stamp]
        spans.append((start, start + int(latency * NS)))
        covered.add(frame_stamp)
    for r in rows:
        if (r[3] or r[2] == 1) and r[0] not in covered:
            spans.append((taken[r[0]], end_ns))
    return spans


def overlaps(row: tuple, spans: list[tuple[int, int]]) -> bool:
    return any(row[0] < end and start < row[1] for start, end in spans)


CALL_PHASES = ("call start", "call end", "mid-call")


def call_phase(row: tuple, spans: list[tuple[int, int]], edge_ns: int) -> str | None:
    """Where a frame (published ``row[0]``, answered ``row[1]``) sits in the brain call it overlaps: in flight within
    ``edge_ns`` of the call's start (the node hands the frame over and the call begins) or of its end (the answer
    comes back and is taken in), or inside it; None when it overlaps no call."""
    phase = None
    for start, end in spans:
        if not overlaps(row, [(start, end)]):
            continue
        if row[0] <= start + edge_ns and row[1] >= start - edge_ns:
            return CALL_PHASES[0]
        if row[0] <= end + edge_ns and row[1] >= end - edge_ns:
            phase = CALL_PHASES[1]
        elif phase is None:
            phase = CALL_PHASES[2]
    return phase


def slow_frames_by_call_phase(rows: list[tuple], spans: list[tuple[int, int]], threshold_ms: float | None,
                              edge_ns: int) -> dict[str, Any]:
    """The frames that overlapped a brain call, and those of them slower than ``threshold_ms`` (the idle p99), by
    :func:`call_phase`: slow frames crowding at the calls' edges point at the hand-over between the node and its brain;
    spread like all frames, at the machine."""
    counts = {"all": dict.fromkeys(CALL_PHASES, 0), "slow": dict.fromkeys(CALL_PHASES, 0)}
    for r in rows:
        phase = call_phase(r, spans, edge_ns)
        if phase is None:
            continue
        counts["all"][phase] += 1
        if threshold_ms is not None and (r[1] - r[0]) / 1e6 > threshold_ms:
            counts["slow"][phase] += 1
    return {"threshold_ms": threshold_ms, "edge_ms": edge_ns / 1e6, **counts}


def latency_timeline(t0_ns: int, idle: list[tuple], reasoning: list[tuple],
                     spans: list[tuple[int, int]]) -> dict[str, list]:
    """Seconds since ``t0_ns`` and latency (ms) of each frame of the two phases, and the brain calls' spans (s)."""
    def points(rows):
        return [[round((r[0] - t0_ns) / NS, 4), round((r[1] - r[0]) / 1e6, 2)] for r in rows]

    return {"idle": points(idle), "reasoning": points(reasoning),
            "brain_calls": [[round((a - t0_ns) / NS, 4), round((b - t0_ns) / NS, 4)] for a, b in spans]}


def plot_latency_timeline(timeline: dict[str, list], idle_p99_ms: float | None, path: Path) -> None:
    """The frames' latencies over the latency phases, brain calls shaded, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    for start, end in timeline["brain_calls"]:
        ax.axvspan(start, end, color="tab:orange", alpha=0.15, lw=0)
    for key, colour, label in (("idle", "tab:blue", "node A, brain idle"),
                               ("reasoning", "tab:red", "node B, brain rethinking (calls shaded)")):
        pts = timeline[key]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ".", ms=3, color=colour, label=label)
    if idle_p99_ms is not None:
        ax.axhline(idle_p99_ms, color="tab:blue", ls="--", lw=1, label=f"idle p99 {idle_p99_ms:.0f} ms")
        ax.axhline(1.5 * idle_p99_ms, color="k", ls=":", lw=1, label="1.5 x idle p99")
    ax.set_xlabel("s since the first latency window")
    ax.set_ylabel("frame latency, ms")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- phases
class Bench:
    def __init__(self, args):
        from .rosio import BenchIO, FrameSource

        self.args = args
        self.io = BenchIO()
        w, h = args.width, args.height
        self.source = FrameSource(w, h)
        margin_ms = args.queue_margin_ms if args.queue_margin_ms is not None else 1000.0 / args.fps
        self.margin_ns = int(margin_ms * 1e6)
        self._pubs: dict[tuple[str, str], Any] = {}

    def pub(self, kind: str, topic: str):
        """One publisher per (kind, topic), reused across phases (a new one would first have to be discovered)."""
        key = (kind, topic)
        if key not in self._pubs:
            make = {
                "image": self.io.image_publisher,
                "string": self.io.string_publisher,
            }[kind]
            self._pubs[key] = make(topic)
        return self._pubs[key]

    def wait_ready(self, proc: NodeProcess, publishers: list, out_topic: str) -> float:
        t0 = time.monotonic()
        deadline = t0 + self.args.node_timeout
        while True:
            if (why := proc.failed()) is not None:
                raise RuntimeError(why)
            subs_ok = all(p.get_subscription_count() > 0 for p in publishers)
            if subs_ok and self.io.count_publishers(out_topic) > 0:
                return time.monotonic() - proc.started
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.fqn} not ready after {self.args.node_timeout:.0f} s (log {proc.log_path})")
            time.sleep(0.1)

    def paced(
        self,
        pubs: list,
        seconds: float,
        *,
        on_tick: Callable[[float], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[int]:
        period = 1.0 / self.args.fps
        t0 = time.monotonic()
        stamps: list[int] = []
        k = 0
        while True:
            due = t0 + k * period
            if due - t0 >= seconds or (stop is not None and stop()):
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamps.append(self.source.publish(*pubs))
            if on_tick is not None:
                on_tick(time.monotonic() - t0)
            k += 1
        return stamps

    def drain(self, rows: Callable[[], list], stamps: list[int], seconds: float = 3.0) -> None:
        """Wait until the last frame is answered or ``seconds`` pass without any new output."""
        last = stamps[-1] if stamps else None
        while True:
            with self.io.lock:
                n = len(rows())
                done = last is None or any(r[0] == last for r in rows())
            if done or not self.io.wait_for(lambda n=n: len(rows()) > n, seconds):
                return

    def wait_brain_idle(self, rows: Callable[[], list], reasoning: Callable[[], list], timeout: float = 30.0) -> bool:
        """Wait until no brain call of a tracker (its outputs ``rows``, its Reasoning records ``reasoning``) is in
        flight; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.time_ns()
            with self.io.lock:
                spans = brain_intervals(list(rows()), list(reasoning()), now + 1)
            if not any(end > now for _, end in spans):
                return True
            time.sleep(0.05)
        return False

    def closed_loop(
        self,
        pub,
        rows: Callable[[], list],
        frames: int,
        *,
        in_flight: int = 2,
        lost_after: float = 2.0,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Keep ``in_flight`` frames outstanding until ``frames`` were sent and answered: the node never waits
        for input, and in steady state a new frame arrives while the previous one is processed, so its
        newest-frame queue drops nothing. A frame overtaken by a newer answer, or unanswered after
        ``lost_after`` seconds, counts as lost.

        Frames are spaced (see :func:`may_publish`): two frames published back to back both reach the idle node
        before it takes the first, its keep-last-1 queue keeps only the second, and the loop degenerates into
        one frame at a time with every other frame lost (measured: 30 of 60 lost, and the node's throughput
        read as 1 / (processing + transport both ways))."""
        stamps: list[int] = []
        lost: set[int] = set()
        spacing_ns = int(self.args.closed_loop_spacing_ms * 1e6)
        last_output = time.monotonic()
        while True:
            with self.io.lock:
                got = {r[0] for r in rows()}
                n = len(rows())
            newest = max(got) if got else -1
            now_ns = time.time_ns()
            for s in stamps:
                if s not in got and s not in lost and (s < newest or now_ns - s > lost_after * NS):
                    lost.add(s)
            outstanding = [s for s in stamps if s not in got and s not in lost]
            if len(stamps) >= frames and not outstanding:
                break
            if len(stamps) < frames and may_publish(outstanding, now_ns, in_flight, spacing_ns):
                stamps.append(self.source.publish(pub))
                continue
            wait = min(lost_after, timeout)
            if len(stamps) < frames and len(outstanding) < in_flight:  # only the spacing holds the next frame
                wait = max(0.001, (max(outstanding) + spacing_ns - now_ns) / NS)
            if self.io.wait_for(lambda n=n: len(rows()) > n, wait):
                last_output = time.monotonic()
            elif time.monotonic() - last_output > timeout:
                raise TimeoutError(f"no output for {timeout:.0f} s in the throughput run")
        with self.io.lock:
            mine = sorted((r for r in rows() if r[0] in set(stamps)), key=lambda r: r[1])
        span = (mine[-1][1] - mine[0][1]) / NS if len(mine) > 1 else 0.0
        out = {
            "frames": len(stamps),
            "answered": len(mine),
            "lost": len(stamps) - len(mine),
            "fps": (len(mine) - 1) / span if span > 0 else None,
            "span_s": span,
        }
        if len(mine) > 1 and len(mine[0]) > 4:
            # tracker rows carry the node's time from a frame's arrival to its result (queueing included): the
            # union of those spans, ending when the answer arrived here, is the time the node had a frame
            lo = mine[0][1] / NS
            spans = [(max(lo, r[1] / NS - r[4]), r[1] / NS) for r in mine[1:]]
            out["busy_s"] = _union_length(spans)
        return out

    def diag(self, fqn: str) -> dict[str, str]:
        with self.io.lock:
            return dict(self.io.diagnostics.get(fqn, {}))


def may_publish(outstanding: Sequence[int], now_ns: int, in_flight: int, spacing_ns: int) -> bool:
    """Closed loop: may the next frame go out now? ``outstanding`` = publish stamps (ns) of the frames not yet
    answered nor lost. Yes when nothing is outstanding; otherwise only below ``in_flight`` and once the newest
    outstanding frame went out ``spacing_ns`` ago, so that it has reached the node (and been taken, when the
    node was idle) before the next one arrives. In steady state the spacing does not bind: the next frame goes
    out when the previous answer arrives, one processing time after the newest outstanding frame was sent."""
    if not outstanding:
        return True
    return len(outstanding) < in_flight and now_ns - max(outstanding) >= spacing_ns


def _diag_delta(before: dict, after: dict, key: str) -> int | None:
    try:
        return int(after[key]) - int(before.get(key, 0))
    except (KeyError, ValueError):
        return None


def _node_counts(before: dict, after: dict) -> dict[str, int | None]:
    """The node's own frame counts over a phase: frames lost before it (DDS) vs by it (its queue)."""
    keys = ("received", "processed", "dropped")
    return {f"node_reported_{key}": _diag_delta(before, after, f"frames_{key}") for key in keys}


def compare_throughput(
    bench: Bench, bare, node_run: Callable[[int], dict[str, Any]], *, cpus: set[int] | None = None
) -> dict[str, Any]:
    """The bare loop and the node's closed loop in alternating windows (``--throughput-windows``): bare, node,
    bare, ..., node, bare, ``--frames`` frames in all on the node's side and as many per window on the bare side,
    the nodes idle while the bare loop runs. This machine changes speed by up to 1.5x from one second to the next
    (unseen by the guest), so one long window on each side measured the drift as much as the node; alternating,
    it biases neither. ``cpus``: the bare loop runs there (the node's frame thread is pinned the same way), and
    this process's other threads keep off them meanwhile, so both sides get one core to themselves.

    Node rate = answered frames (less one per window) over the summed time from each window's first answer to
    its last; bare rate = frames over the summed step times."""
    args = bench.args
    from .bare import loop_stats

    sizes = split_evenly(args.frames, args.throughput_windows, least=2)  # a window's rate needs two answers
    bare_runs, nodes = [], []
    # cpus are the bare loop's, else nobody's in this process: pinned there with the bare loop, the closed loop's
    # publishing took turns with the node's frame thread on its core
    with others_kept_off(cpus) as rest:
        with pinned(cpus):
            bare_runs.append(bare.run(sizes[0], args.warmup))
        for size in sizes:
            with pinned(rest):
                nodes.append(node_run(size))
            with pinned(cpus):
                bare_runs.append(bare.run(size))
    # counts summed over the windows (no_audio: the AVS node's frames scored without audio)
    node = {key: sum(n[key] for n in nodes) for key in ("frames", "answered", "lost", "no_audio") if key in nodes[0]}
    span = sum(n["span_s"] for n in nodes)
    intervals = sum(max(0, n["answered"] - 1) for n in nodes)
    node.update({"fps": intervals / span if span > 0 else None, "span_s": span, "windows": len(sizes),
                 "window_fps": [n["fps"] for n in nodes], "spacing_ms": args.closed_loop_spacing_ms})
    if all("busy_s" in n for n in nodes) and span > 0:
        # which side limits: near 1 the node always had a frame (its own work sets the rate); well below 1 it waited
        # for input (the publisher, DDS, or the harness sharing the cores)
        node["busy_fraction"] = sum(n["busy_s"] for n in nodes) / span
    stats = loop_stats([t for run in bare_runs for t in run])
    stats.update({"load_s": bare.load_s, "window_fps": [loop_stats(run)["fps"] for run in bare_runs],
                  "cpus": sorted(cpus) if cpus else None})
    if hasattr(bare, "reasoning_s"):
        stats["reasoning_s"] = bare.reasoning_s
    if hasattr(bare, "frame_compile"):
        stats["frame_compile"] = bare.frame_compile
    return {"bare": stats, "node": node, "throughput_ratio": ratio(node["fps"], stats["fps"])}


def run_tracker(bench: Bench, a: NodeProcess, b: NodeProcess, bare, warnings: list[str]) -> dict[str, Any]:
    """Phases on tracker node A (tau 0: its brain is idle once the instruction is answered) and B (tau 1: it
    rethinks over and over, so frames are decoded while the brain works)."""
    args, io = bench.args, bench.io
    out: dict[str, Any] = {"model": args.tracker_model}
    logs, pubs = {}, {}
    for name, proc in (("a", a), ("b", b)):
        logs[name] = io.watch_tracker(proc.fqn)
        pubs[name] = (
            bench.pub("image", f"{proc.namespace}/image"),
            bench.pub("string", f"{proc.namespace}/instruction"),
        )
    ready = {
        name: bench.wait_ready(proc, list(pubs[name]), f"{proc.fqn}/result") for name, proc in (("a", a), ("b", b))
    }
    out["node_start_s"] = ready
    out["rss_after_load_mb"] = {"a": (a.rss() or 0) / 2**20, "b": (b.rss() or 0) / 2**20}

    def warm(name: str) -> None:
        from std_msgs.msg import String

        image_pub, instruction_pub = pubs[name]
        log = logs[name]
        instruction_pub.publish(String(data=INSTRUCTIONS[0]))
        time.sleep(0.2)
        decoded = lambda: sum(1 for r in log.results if r[2] in DECODED)  # noqa: E731
        stamps = bench.paced([image_pub], args.node_timeout, stop=lambda: decoded() >= args.warmup)
        if decoded() < args.warmup:
            raise TimeoutError(f"tracker {name}: fewer than {args.warmup} decoded frames after {len(stamps)} sent")

    # A: throughput against the bare loop, then latency at the live input rate with the brain idle
    warm("a")
    log_a = logs["a"]
    i0 = len(log_a.results)
    out.update(
        compare_throughput(
            bench,
            bare,
            lambda frames: bench.closed_loop(pubs["a"][0], lambda: log_a.results[i0:], frames),
            cpus=parse_cpus(args.frame_cpus, "--frame-cpus"),
        )
    )
    # Latency: A at the live input rate with its brain idle, B while its brain rethinks, in alternating windows
    # (--latency-windows), so that a machine whose speed drifts (this project's 2-core VM changes speed by up to 2x
    # within seconds, unseen by the guest) biases neither figure. Before each A window B's brain call in flight is
    # let finish (B starts none without frames), and A's frames that still overlap one of B's calls are left out.
    warm("b")
    log_b = logs["b"]
    i0, r0 = len(log_a.results), len(log_a.reasoning)
    j0, q0 = len(log_b.results), len(log_b.reasoning)
    before = bench.diag(a.fqn)
    rows_b = lambda: log_b.results[j0:]  # noqa: E731
    stamps_a: list[int] = []
    stamps_b: list[int] = []
    windows = max(1, args.latency_windows)
    for _ in range(windows):
        bench.wait_brain_idle(rows_b, lambda: log_b.reasoning[q0:])
        stamps = bench.paced([pubs["a"][0]], args.live_seconds / windows)
        bench.drain(lambda: log_a.results[i0:], stamps)
        stamps_a += stamps
        stamps = bench.paced([pubs["b"][0]], args.reasoning_seconds / windows)
        bench.drain(rows_b, stamps)
        stamps_b += stamps
    end_ns = time.time_ns()
    rows = list(log_a.results[i0:])
    spans_a = brain_intervals(rows, list(log_a.reasoning[r0:]), end_ns)
    spans_b = brain_intervals(list(rows_b()), list(log_b.reasoning[q0:]), end_ns)
    idle_keep = lambda r: r[2] in DECODED and not overlaps(r, spans_a) and not overlaps(r, spans_b)  # noqa: E731
    idle = live_stats(stamps_a, rows, margin_ns=bench.margin_ns, keep=idle_keep)
    kept_a = [r for r in rows if idle_keep(r)]  # for the timeline below
    idle.update(_node_counts(before, bench.diag(a.fqn)))
    idle["windows"] = windows
    out["live_idle"] = idle

    rows = list(rows_b())
    busy = live_stats(
        stamps_b,
        rows,
        margin_ns=bench.margin_ns,
        keep=lambda r: r[2] in DECODED and overlaps(r, spans_b),
    )
    busy["windows"] = windows
    busy["brain_calls"] = len(spans_b)
    busy["brain_busy_fraction"] = _busy_fraction(spans_b, stamps_b)
    busy["decoded_frames_with_brain_idle"] = sum(1 for r in rows if r[2] in DECODED and not overlaps(r, spans_b))
    out["live_reasoning"] = busy
    out["latency_p99_ratio"] = ratio(busy["latency_ms_p99"], idle["latency_ms_p99"])
    if busy["latency_frames"] == 0:
        warnings.append(
            "tracker: no decoded frame overlapped a brain call (the brain answers faster than a frame "
            "period); the latency ratio is undefined for this model"
        )
    out["reasoning_calls"] = _reasoning(list(log_b.reasoning[q0:]) + list(log_a.reasoning))
    sent_b = set(stamps_b)
    decoded = [r for r in rows if r[2] in DECODED and r[0] in sent_b]
    busy["slow_frames_by_call_phase"] = slow_frames_by_call_phase(
        decoded, spans_b, idle["latency_ms_p99"], edge_ns=2 * bench.margin_ns)
    sent_a = set(stamps_a)
    out["latency_timeline"] = latency_timeline(min(stamps_a + stamps_b), [r for r in kept_a if r[0] in sent_a],
                                               decoded, spans_b)
    return out


def _repeat_tracker(bench: Bench, args, procs: dict[str, NodeProcess], bare, report: dict[str, Any]) -> dict:
    """Every brain mode ``args.runs`` times (the headline run counts as the first mode's first run), on fresh
    tracker nodes each time, in one bench run, the modes taking turns: the p99 ratio, throughput ratio and brain
    latency per run, and the median and range of each."""
    common = {"device": args.device, "mode": "live", "image_qos_reliability": args.image_qos}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.brain_modes}
    if report.get("tracker"):
        runs[args.brain_modes[0]].append(_run_figures(report["tracker"]))
    # modes take turns (process, thread, process, ...): a machine whose speed drifts during the run biases neither
    order = [mode for _ in range(args.runs) for mode in args.brain_modes]
    for mode in order:
        if len(runs[mode]) < args.runs:
            k = len(runs[mode]) + 1
            print(f"perception-bench: tracker nodes, {mode} brain, run {k} of {args.runs}", flush=True)
            fresh = {name: _tracker_node(args, f"/bench_tracker_{name}_{mode}{k}", tau, mode, common)
                     for name, tau in (("a", 0.0), ("b", 1.0))}
            try:
                out = run_tracker(bench, fresh["a"], fresh["b"], bare, report["warnings"])
                out["latency_plot"] = _plot_run(args, out, f"{mode}_{k}", report["warnings"])
                runs[mode].append(_run_figures(out))
            except Exception as exc:
                report["errors"].append(f"tracker nodes ({mode}, run {k}): {type(exc).__name__}: {exc}")
                runs[mode].append({"error": str(exc)})
            finally:
                stop_all(list(fresh.values()))
    summary = {}
    for mode, rows in runs.items():
        summary[mode] = {"runs": rows}
        for key in ("latency_p99_ratio", "throughput_ratio", "node_fps", "node_busy_fraction", "brain_latency_s_p50",
                    "p99_idle_ms", "p99_reasoning_ms"):
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                summary[mode][key] = {"median": float(np.median(values)), "min": min(values), "max": max(values)}
    return summary


def _run_figures(out: dict[str, Any]) -> dict[str, Any]:
    return {
        "latency_p99_ratio": out.get("latency_p99_ratio"),
        "throughput_ratio": out.get("throughput_ratio"),
        "node_fps": (out.get("node") or {}).get("fps"),
        "node_busy_fraction": (out.get("node") or {}).get("busy_fraction"),
        "p99_idle_ms": (out.get("live_idle") or {}).get("latency_ms_p99"),
        "p99_reasoning_ms": (out.get("live_reasoning") or {}).get("latency_ms_p99"),
        "brain_latency_s_p50": (out.get("reasoning_calls") or {}).get("latency_s_p50"),
        "rss_after_load_mb": out.get("rss_after_load_mb"),
        "slow_frames_by_call_phase": (out.get("live_reasoning") or {}).get("slow_frames_by_call_phase"),
        "latency_plot": out.get("latency_plot"),
    }


def _plot_run(args, out: dict[str, Any], name: str, warnings: list[str]) -> str | None:
    """``tracker_latency_<name>.png`` in the output folder from a run's latency timeline; its path, or None (a
    plot that fails is a warning: the figures stand without it)."""
    timeline = out.get("latency_timeline")
    if not timeline:
        return None
    path = Path(args.out) / f"tracker_latency_{name}.png"
    try:
        plot_latency_timeline(timeline, (out.get("live_idle") or {}).get("latency_ms_p99"), path)
    except Exception as exc:
        warnings.append(f"tracker latency plot {path.name}: {type(exc).__name__}: {exc}")
        return None
    return str(path)


def _union_length(spans: list[tuple[float, float]]) -> float:
    """Total length covered by the ``(start, end)`` spans (overlaps counted once)."""
    total, cursor = 0.0, -math.inf
    for start, end in sorted(spans):
        start = max(start, cursor)
        if end > start:
            total += end - start
            cursor = end
    return total


def _busy_fraction(spans: list[tuple[int, int]], stamps: list[int]) -> float | None:
    if len(stamps) < 2:
        return None
    lo, hi = stamps[0], stamps[-1]
    covered, cursor = 0, lo
    for start, end in sorted(spans):
        start, end = max(start, cursor), min(end, hi)
        if end > start:
            covered += end - start
            cursor = end
    return covered / (hi - lo)


def _reasoning(calls: list[tuple]) -> dict[str, Any]:
    latencies = [c[1] for c in calls if c[2]]
    return {
        "calls": len(calls),
        "failed": sum(1 for c in calls if not c[2]),
        "latency_s_p50": percentile(latencies, 50),
        "latency_s_max": max(latencies) if latencies else None,
        "latency_s_mean": float(np.mean(latencies)) if latencies else None,
        "latencies_s": [round(x, 4) for x in latencies],
    }


def run_avs(bench: Bench, v: NodeProcess, bare, image_pub) -> dict[str, Any]:
    from .rosio import AudioStream

    args, io = bench.args, bench.io
    out: dict[str, Any] = {"model": args.avs_model}
    log = io.watch_avs(v.fqn)
    out["node_start_s"] = bench.wait_ready(v, [image_pub], f"{v.fqn}/score")
    out["rss_after_load_mb"] = (v.rss() or 0) / 2**20
    # Audio goes out AUDIO_LEAD_S ahead of the frames, so frame latency and throughput measure the node, not a
    # wait for the microphone (on a robot that adds up to one chunk, 32 ms, per frame). It comes from a process of
    # its own: as a thread of this process it fell up to 1.8 s behind the frames while the bare loop and the
    # closed loop ran here (see AudioStream).
    audio = AudioStream("/bench_avs/audio", lead=AUDIO_LEAD_S, chunk=args.audio_chunk)
    bench.audio = audio
    if not audio.wait_matched(args.node_timeout):
        raise TimeoutError(f"the bench audio stream found no subscriber in {args.node_timeout:.0f} s")
    scored = lambda: sum(1 for r in log.scores if not math.isnan(r[2]))  # noqa: E731
    stamps = bench.paced([image_pub], args.node_timeout, stop=lambda: scored() >= args.warmup)
    if scored() < args.warmup:
        raise TimeoutError(f"avs: fewer than {args.warmup} scored frames after {len(stamps)} sent")
    i0 = len(log.scores)

    def node_run(frames: int) -> dict[str, Any]:
        j0 = len(log.scores)
        result = bench.closed_loop(image_pub, lambda: log.scores[i0:], frames)
        with io.lock:
            result["no_audio"] = sum(1 for r in log.scores[j0:] if math.isnan(r[2]))
        return result

    out.update(compare_throughput(bench, bare, node_run))
    i0 = len(log.scores)
    before = bench.diag(v.fqn)
    stamps = bench.paced([image_pub], args.live_seconds)
    bench.drain(lambda: log.scores[i0:], stamps)
    rows = list(log.scores[i0:])
    live = live_stats(stamps, rows, margin_ns=bench.margin_ns)
    live["no_audio"] = sum(1 for r in rows if math.isnan(r[2]))
    live.update(_node_counts(before, bench.diag(v.fqn)))
    out["live"] = live
    out["audio"] = audio.stats()
    return out


def run_memory(bench: Bench, procs: dict[str, NodeProcess], image_pubs: list, instruction_pub) -> dict[str, Any]:
    """30 fps to the tracker (A) and AVS nodes, an instruction to A every period; RSS sampled every 2 s."""
    from std_msgs.msg import String

    args = bench.args
    seconds = args.memory_minutes * 60.0
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in procs}
    state = {"next_sample": 0.0, "next_instruction": 0.0, "k": 0}

    def sample(t: float) -> None:
        for name, proc in procs.items():
            rss = proc.rss()
            if rss is not None:
                samples[name].append((round(t, 2), rss / 2**20))

    def tick(t: float) -> None:
        if t >= state["next_sample"]:
            sample(t)
            state["next_sample"] += 2.0
        if instruction_pub is not None and t >= state["next_instruction"]:
            instruction_pub.publish(String(data=INSTRUCTIONS[state["k"] % len(INSTRUCTIONS)]))
            state["k"] += 1
            state["next_instruction"] += args.instruction_period

    sample(0.0)
    bench.paced(image_pubs, seconds, on_tick=tick)
    sample(seconds)
    out = {"minutes": args.memory_minutes, "instructions_sent": state["k"]}
    for name, points in samples.items():
        if len(points) < 2:
            out[name] = {"error": "the node process is gone"}
            continue
        start, end = points[0][1], points[-1][1]
        out[name] = {
            "rss_start_mb": start,
            "rss_end_mb": end,
            "rss_max_mb": max(p[1] for p in points),
            "growth_pct": (end - start) / start * 100.0,
            "samples": points,
        }
    return out


# ---------------------------------------------------------------------------------------------- report
def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    t, a, m = report.get("tracker") or {}, report.get("avs") or {}, report.get("memory") or {}
    rows = []

    def add(name, value, target, ok):
        rows.append({"name": name, "value": value, "target": target, "met": None if value is None else bool(ok(value))})

    add("tracker node throughput / bare loop", t.get("throughput_ratio"), ">= 0.8", lambda v: v >= 0.8)
    add("avs node throughput / bare loop", a.get("throughput_ratio"), ">= 0.8", lambda v: v >= 0.8)
    add("tracker p99 latency while reasoning / idle", t.get("latency_p99_ratio"), "<= 1.5", lambda v: v <= 1.5)
    for name, phase in (
        ("tracker (idle)", t.get("live_idle")),
        ("tracker (reasoning)", t.get("live_reasoning")),
        ("avs", a.get("live")),
    ):
        value = phase.get("queued_beyond_newest_max") if phase else None
        add(f"{name} live: frames queued beyond the newest", value, "== 0", lambda v: v == 0)
    for name in ("tracker", "avs"):
        value = (m.get(name) or {}).get("growth_pct")
        add(f"{name} node memory growth % over {m.get('minutes', '?')} min", value, "< 5", lambda v: v < 5.0)
    for mode, figures in (report.get("tracker_modes") or {}).items():
        runs = figures.get("runs", [])
        ratios = [r.get("latency_p99_ratio") for r in runs]
        worst = None if not ratios or any(v is None for v in ratios) else max(ratios)
        add(f"tracker p99 ratio, {mode} brain, worst of {len(runs)} runs", worst, "<= 1.5", lambda v: v <= 1.5)
    return rows


def _f(value, fmt="{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def table(report: dict[str, Any]) -> str:
    """A short text table of the headline figures and the targets."""
    t, a, m = report.get("tracker") or {}, report.get("avs") or {}, report.get("memory") or {}
    ti, tr, al = t.get("live_idle") or {}, t.get("live_reasoning") or {}, a.get("live") or {}
    rc = t.get("reasoning_calls") or {}
    fps = report["settings"]["fps"]

    def pair(x, y, fmt="{:.0f}") -> str:
        return f"{_f(x, fmt)}/{_f(y, fmt)}"

    def queued(*phases) -> str:
        values = [p.get("queued_beyond_newest_max") for p in phases if p]
        return str(max(values)) if values else "–"

    rows = [
        (
            "bare loop frames/s",
            _f((t.get("bare") or {}).get("fps"), "{:.1f}"),
            _f((a.get("bare") or {}).get("fps"), "{:.1f}"),
        ),
        (
            "node frames/s (closed loop)",
            _f((t.get("node") or {}).get("fps"), "{:.1f}"),
            _f((a.get("node") or {}).get("fps"), "{:.1f}"),
        ),
        ("node / bare (>= 0.8)", _f(t.get("throughput_ratio")), _f(a.get("throughput_ratio"))),
        ("node had a frame, fraction of the loop", _f((t.get("node") or {}).get("busy_fraction")), ""),
        (
            "latency p50/p99 ms, brain idle",
            pair(ti.get("latency_ms_p50"), ti.get("latency_ms_p99")),
            pair(al.get("latency_ms_p50"), al.get("latency_ms_p99")),
        ),
        ("latency p50/p99 ms, brain reasoning", pair(tr.get("latency_ms_p50"), tr.get("latency_ms_p99")), ""),
        ("p99 reasoning / idle (<= 1.5)", _f(t.get("latency_p99_ratio")), ""),
        (
            f"live {fps:g} fps: missed/published",
            pair(ti.get("missed"), ti.get("published"), "{}"),
            pair(al.get("missed"), al.get("published"), "{}"),
        ),
        ("queued beyond newest, max (== 0)", queued(ti, tr), queued(al)),
        (
            f"memory growth % over {m.get('minutes', '?')} min (< 5)",
            _f((m.get("tracker") or {}).get("growth_pct")),
            _f((m.get("avs") or {}).get("growth_pct")),
        ),
        (
            "brain call latency s p50/max",
            pair(rc.get("latency_s_p50"), rc.get("latency_s_max"), "{:.2f}") + f" ({rc.get('calls', 0)})",
            "",
        ),
    ]
    lines = [
        f"node benchmark on {report['machine']['device']} ({report['machine']['cpus']} CPUs): "
        f"tracker {t.get('model', '–')}, avs {a.get('model', '–')}",
        f"{'':40}{'tracker':>18}{'avs':>14}",
    ]
    lines += [f"{name:40}{x:>18}{y:>14}" for name, x, y in rows]
    for mode, figures in (report.get("tracker_modes") or {}).items():
        def rng(key, fmt="{:.2f}", figures=figures):
            v = figures.get(key)
            return "–" if not v else f"{fmt.format(v['median'])} [{fmt.format(v['min'])}-{fmt.format(v['max'])}]"

        lines.append(
            f"tracker, {mode} brain, {len(figures.get('runs', []))} runs (median [range]): p99 ratio "
            f"{rng('latency_p99_ratio')}, p99 idle/reasoning ms {rng('p99_idle_ms', '{:.0f}')} / "
            f"{rng('p99_reasoning_ms', '{:.0f}')}, node/bare {rng('throughput_ratio')}, node fps "
            f"{rng('node_fps', '{:.1f}')} (busy {rng('node_busy_fraction')}), brain call s "
            f"{rng('brain_latency_s_p50')}"
        )
        phases = [r["slow_frames_by_call_phase"] for r in figures.get("runs", []) if r.get("slow_frames_by_call_phase")]
        if phases:
            total = {kind: {name: sum(ph[kind][name] for ph in phases) for name in CALL_PHASES}
                     for kind in ("slow", "all")}
            said = ", ".join(f"{name} {total['slow'][name]} of {total['all'][name]}" for name in CALL_PHASES)
            lines.append(f"  frames slower than the idle p99 while reasoning, all runs: {said}")
    met = [x for x in report["targets"] if x["met"] is not None]
    unmeasured = len(report["targets"]) - len(met)
    lines.append(
        f"targets met: {sum(x['met'] for x in met)} of {len(met)} measured"
        + (f" ({unmeasured} not measured)" if unmeasured else "")
    )
    for x in report["targets"]:
        if x["met"] is False:
            lines.append(f"  NOT MET: {x['name']} = {_f(x['value'])} (target {x['target']})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def _brain_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("process", "thread")]
    if not modes or bad or len(set(modes)) != len(modes):
        raise argparse.ArgumentTypeError(f"brain modes are a comma list of process, thread; got {text!r}")
    return modes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perception-bench",
        description=__doc__ + "\n\n" + (sys.modules[__package__].__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="results folder (writes node_bench.json)")
    p.add_argument(
        "--full",
        action="store_true",
        help=f"time the full-size configurations ({FULL_MODELS['tracker']}, {FULL_MODELS['avs']})",
    )
    p.add_argument("--device", default="cpu", help="torch device of the bare loops and the nodes (cpu, cuda, cuda:N)")
    p.add_argument("--tracker-model", default=None, help=f"tracker model (default {DEFAULT_MODELS['tracker']})")
    p.add_argument("--avs-model", default=None, help=f"AVS model (default {DEFAULT_MODELS['avs']})")
    p.add_argument("--only", choices=("tracker", "avs"), default=None, help="measure one node kind only")
    p.add_argument("--frames", type=int, default=300,
                   help="frames timed in the bare and closed-loop runs (at 60, some 2 s, this machine's speed swings "
                        "moved node / bare by 0.2 from run to run)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    p.add_argument("--fps", type=float, default=30.0, help="live input rate")
    p.add_argument("--image-qos", default="auto", choices=("auto", "best_effort", "reliable"),
                   help="the nodes' image_qos_reliability (auto = their default: best effort in live mode)")
    p.add_argument(
        "--avs-threads",
        type=int,
        default=1,
        help="torch threads of the AVS node and its bare loop (0 = torch's default, all cores; on a "
        "loaded 2-core machine that is several times slower than 1)",
    )
    p.add_argument(
        "--closed-loop-spacing-ms",
        type=float,
        default=20.0,
        help="closed loop: least time between two frames sent while one is outstanding (lets the first reach the "
        "node before the second, so its keep-last-1 queue does not drop it)",
    )
    p.add_argument("--audio-chunk", type=int, default=512, help="samples per bench audio chunk (16 kHz)")
    p.add_argument("--live-seconds", type=float, default=10.0, help="live phase with the brain idle")
    p.add_argument("--reasoning-seconds", type=float, default=15.0, help="live phase while the brain reasons")
    p.add_argument("--latency-windows", type=int, default=3,
                   help="the two live phases alternate in this many windows each (a drifting machine biases neither)")
    p.add_argument("--throughput-windows", type=int, default=20,
                   help="the bare loop and the node's closed loop alternate in this many windows each (--frames "
                        "in all; a drifting machine biases neither; this VM's speed swings within a second or two, so "
                        "short windows: with 5 node / bare spread 0.74-0.94 over six runs of the same code, with 20 "
                        "0.84-0.88 over three)")
    p.add_argument("--memory-minutes", type=float, default=0.5, help="memory phase length (the target: 10)")
    p.add_argument("--instruction-period", type=float, default=10.0, help="memory phase: seconds between instructions")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument(
        "--queue-margin-ms",
        type=float,
        default=None,
        help="a newer frame counts as queued only once published this long before the older was taken",
    )
    p.add_argument("--node-timeout", type=float, default=600.0, help="seconds for a node to start / first answer")
    p.add_argument("--brain-modes", default="process", type=_brain_modes,
                   help="comma list of the tracker node's brain modes to measure: process (a separate brain "
                        "process, the default), thread (a thread in the node); the first is the headline")
    p.add_argument("--runs", type=int, default=1,
                   help="tracker measurements per brain mode: the p99 ratio is reported as their median and range")
    p.add_argument("--brain-cpus", default="auto",
                   help="tracker nodes' brain_cpus parameter, e.g. '1' ('' = all; auto: the last CPU where there are "
                        "two or more, so the brain and the frame path run on different cores)")
    p.add_argument("--frame-cpus", default="auto",
                   help="tracker nodes' frame_cpus parameter (their frame thread), e.g. '0' ('' = all; auto: CPU 0 "
                        "where there are two or more)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.brain_cpus, args.frame_cpus = resolve_cpus(args.brain_cpus, args.frame_cpus, os.cpu_count() or 1)
    models = FULL_MODELS if args.full else _shipped_models()
    args.tracker_model = args.tracker_model or models["tracker"]
    args.avs_model = args.avs_model or models["avs"]
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    default_threads = torch.get_num_threads()
    report = _new_report(args, default_threads)  # the settings as given
    # --avs-threads: the AVS node's `threads` parameter and torch.set_num_threads of the bare loop alike.
    args.avs_threads = args.avs_threads or default_threads
    t_start = time.monotonic()
    frame = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    # 1. the nodes, all started at once (they load in parallel), measured one after the other
    procs = _start_nodes(args)
    report["nodes"] = {
        name: {"node": p.fqn, "pid": p.pid, "command": p.cmd, "log": str(p.log_path)} for name, p in procs.items()
    }
    bench = None
    bares: dict[str, Any] = {}
    try:
        # 2. the bare loops' models, loaded while the nodes load theirs (loading is not timed)
        _load_bare_models(args, frame, report, bares)
        bench = Bench(args)
        report["dds"] = bench.io.dds[1]  # which Fast DDS profile the frames went out with
        _measure(bench, args, procs, bares, report)
    finally:
        for b in bares.values():
            b.close()
        if bench is not None and getattr(bench, "audio", None) is not None:
            bench.audio.stop()
        stop_all(list(procs.values()))
        if bench is not None:
            bench.io.close()
    report["seconds"] = round(time.monotonic() - t_start, 1)
    report["targets"] = targets(report)
    return _write_report(args.out / "node_bench.json", report)


def resolve_cpus(brain: str, frame: str, cpus: int) -> tuple[str, str]:
    """``auto`` CPU lists: the brain on the last CPU, the frame thread on CPU 0 (one CPU: both left free)."""
    if brain == "auto":
        brain = str(cpus - 1) if cpus >= 2 else ""
    if frame == "auto":
        frame = "0" if cpus >= 2 else ""
    return brain, frame


def _shipped_models() -> dict[str, str]:
    from avs.loading import shipped_folder as avs_shipped
    from trackgpt.loading import shipped_folder as trackgpt_shipped

    return {"tracker": str(trackgpt_shipped()), "avs": str(avs_shipped())}


def _wanted(args, kind: str) -> bool:
    return args.only in (None, kind)


def _new_report(args, default_threads: int) -> dict[str, Any]:
    import torch

    return {
        "version": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "device": args.device,
            "cpus": os.cpu_count(),
            "torch_threads": default_threads,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "tracker": None,
        "avs": None,
        "memory": None,
        "errors": [],
        "warnings": [],
    }


def _tracker_node(args, namespace: str, tau: float, mode: str, common: dict[str, Any]) -> NodeProcess:
    """A tracker node in ``namespace`` (its topics there) with the brain ``mode`` and the bench's settings."""
    params = {
        "model": args.tracker_model,
        "tau": tau,
        "image_topic": f"{namespace}/image",
        "instruction_topic": f"{namespace}/instruction",
        "brain_process": mode == "process",
        **({"brain_cpus": args.brain_cpus} if args.brain_cpus else {}),
        **({"frame_cpus": args.frame_cpus} if args.frame_cpus else {}),
        **common,
    }
    return NodeProcess("tracker_node", namespace, params, args.out / "node_logs")


def _start_nodes(args) -> dict[str, NodeProcess]:
    """Tracker A (tau 0: never rethinks) and B (tau 1: rethinks on every drop) and the AVS node V, as asked."""
    logs = args.out / "node_logs"
    procs: dict[str, NodeProcess] = {}
    # Frames go out reliable (camera_node's default); the nodes subscribe as --image-qos says (default auto: best
    # effort in live mode). Both sides load config/fastdds.xml (perception_nodes.dds): with Fast DDS's own 512 KB
    # shared-memory segment no best-effort 640x480 rgb8 frame arrived (perception-dds-check).
    common = {"device": args.device, "mode": "live", "image_qos_reliability": args.image_qos}
    if _wanted(args, "tracker"):
        for name, tau in (("a", 0.0), ("b", 1.0)):
            procs[name] = _tracker_node(args, f"/bench_tracker_{name}", tau, args.brain_modes[0], common)
    if _wanted(args, "avs"):
        params = {"model": args.avs_model, "image_topic": "/bench_avs/image", "audio_topic": "/bench_avs/audio",
                  "threads": args.avs_threads, **common}
        procs["v"] = NodeProcess("avs_node", "/bench_avs", params, logs)
    return procs


def _load_bare_models(args, frame: np.ndarray, report: dict[str, Any], bares: dict[str, Any]) -> None:
    """The bare loops (the models without ROS) for the kinds asked, into ``bares`` as each loads (so the caller
    closes those already loaded if the next one is interrupted); a failure is reported, not raised."""
    from . import bare as bare_loops

    for kind, make in (
        ("tracker", lambda: bare_loops.BareTracker(args.tracker_model, args.device, frame)),
        ("avs", lambda: bare_loops.BareAVS(args.avs_model, args.device, frame, threads=args.avs_threads)),
    ):
        if not _wanted(args, kind):
            continue
        print(f"perception-bench: bare {kind} model ({getattr(args, kind + '_model')})", flush=True)
        try:
            bares[kind] = make()
        except Exception as exc:
            report["errors"].append(f"bare {kind}: {type(exc).__name__}: {exc}")
            report[kind] = {"model": getattr(args, f"{kind}_model"), "bare": {"error": str(exc)}}


def _measure(bench: Bench, args, procs: dict[str, NodeProcess], bares: dict[str, Any], report: dict[str, Any]):
    """The tracker nodes, then the AVS node, then the memory run of tracker A and the AVS node together."""
    if "tracker" in bares:
        print(f"perception-bench: tracker nodes ({args.brain_modes[0]} brain)", flush=True)
        try:
            report["tracker"] = run_tracker(bench, procs["a"], procs["b"], bares["tracker"], report["warnings"])
            report["tracker"]["brain_mode"] = args.brain_modes[0]
            report["tracker"]["latency_plot"] = _plot_run(args, report["tracker"], f"{args.brain_modes[0]}_1",
                                                          report["warnings"])
        except Exception as exc:
            report["errors"].append(f"tracker nodes: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        if args.runs > 1 or len(args.brain_modes) > 1:
            report["tracker_modes"] = _repeat_tracker(bench, args, procs, bares["tracker"], report)
        bares.pop("tracker").close()
    if "b" in procs:
        procs.pop("b").stop()  # B is done; it would only hold memory and CPU
    if "avs" in bares:
        print("perception-bench: avs node", flush=True)
        try:
            report["avs"] = run_avs(bench, procs["v"], bares["avs"], bench.pub("image", "/bench_avs/image"))
        except Exception as exc:
            report["errors"].append(f"avs node: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        bares.pop("avs").close()
    mem_procs, image_pubs, instruction_pub = {}, [], None
    if (report.get("tracker") or {}).get("live_idle"):
        mem_procs["tracker"] = procs["a"]
        image_pubs.append(bench.pub("image", "/bench_tracker_a/image"))
        instruction_pub = bench.pub("string", "/bench_tracker_a/instruction")
    if (report.get("avs") or {}).get("live"):
        mem_procs["avs"] = procs["v"]
        image_pubs.append(bench.pub("image", "/bench_avs/image"))
    if mem_procs and args.memory_minutes > 0:
        print(f"perception-bench: memory over {args.memory_minutes} min", flush=True)
        report["memory"] = run_memory(bench, mem_procs, image_pubs, instruction_pub)


def _write_report(path: Path, report: dict[str, Any]) -> int:
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    for w in report["warnings"]:
        print(f"perception-bench: warning: {w}")
    for e in report["errors"]:
        print(f"perception-bench: error: {e}", file=sys.stderr)
    print(f"perception-bench: wrote {path} in {report['seconds']:.0f} s")
    return 1 if report["errors"] else 0
