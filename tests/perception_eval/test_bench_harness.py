"""Node-level performance harness: its statistics by hand, and one very short run whose JSON must be complete
and sane. Speeds are never asserted (they depend on the machine); structure and consistency are."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from perception_eval.bench.harness import (
    brain_intervals,
    live_stats,
    may_publish,
    overlaps,
    resolve_cpus,
    taken_at,
    targets,
)

MS = 1_000_000


def test_live_stats_latency_missed_and_frames_queued_beyond_the_newest():
    stamps = [0, 33 * MS, 66 * MS, 100 * MS, 133 * MS]  # published (= stamped) every 33 ms
    rows = [  # (stamp, received), in the order they arrive
        (0, 20 * MS),  # taken at once: 20 ms
        (33 * MS, 60 * MS),  # the worker was free at 20 ms and took it when it came: 27 ms
        (100 * MS, 150 * MS),  # taken at 100 ms when it came (66 had been replaced): 50 ms
        (66 * MS, 190 * MS),  # taken at 150 ms although 100 and 133 had been published: 2 newer frames waited
    ]
    s = live_stats(stamps, rows, margin_ns=5 * MS)
    assert (s["published"], s["processed"], s["missed"]) == (5, 4, 1)
    assert s["latency_ms_p50"] == pytest.approx(38.5) and s["latency_ms_max"] == pytest.approx(124.0)
    assert s["queued_beyond_newest_max"] == 2 and s["frames_taken_while_newer_waited"] == 1
    assert s["out_of_order"] == 1 and s["input_fps"] == pytest.approx(1 / 0.033)  # the median gap
    # a phase in two windows with a pause between them: the rate is still the windows' own
    windowed = [0, 33 * MS, 66 * MS, 2000 * MS, 2033 * MS, 2066 * MS]
    assert live_stats(windowed, [], margin_ns=5 * MS)["input_fps"] == pytest.approx(1 / 0.033)
    assert s["queued_examples"] == [{"frame": 2, "newest_published": 4, "newest_waited_ms": 17.0, "latency_ms": 124.0}]
    # frame 20 is taken at 30 ms (the worker's previous answer): frame 27 came 3 ms before -- inside a 5 ms
    # margin (still in transit), outside a 1 ms one
    stamps, rows = [0, 20 * MS, 27 * MS], [(0, 30 * MS), (20 * MS, 60 * MS)]
    assert live_stats(stamps, rows, margin_ns=5 * MS)["queued_beyond_newest_max"] == 0
    assert live_stats(stamps, rows, margin_ns=1 * MS)["queued_beyond_newest_max"] == 1
    stamps, rows = [0, 33 * MS, 66 * MS, 100 * MS, 133 * MS], [(0, 20 * MS), (33 * MS, 60 * MS), (66 * MS, 90 * MS)]
    kept = live_stats(stamps, rows, margin_ns=5 * MS, keep=lambda r: r[0] != 66 * MS)
    assert kept["latency_frames"] == 2 and kept["processed"] == 3 and kept["latency_ms_max"] == pytest.approx(27)


def test_brain_intervals_from_reasoning_and_pending_rethinks():
    # (stamp, received, state, rethinking, processing_time s); a frame is taken when it came or when the
    # previous output went out, whichever is later
    rows = [(0, 50 * MS, 1, False, 0.01), (100 * MS, 200 * MS, 2, True, 0.1), (120 * MS, 400 * MS, 2, True, 0.3)]
    assert taken_at(rows) == {0: 0, 100 * MS: 100 * MS, 120 * MS: 200 * MS}
    reasoning = [(0, 0.5, True, 0)]  # the initial call on frame 0 took 0.5 s; the rethinks are unanswered
    spans = brain_intervals(rows, reasoning, end_ns=10_000 * MS)
    assert spans == [(0, 500 * MS), (100 * MS, 10_000 * MS), (200 * MS, 10_000 * MS)]
    assert overlaps((450 * MS, 520 * MS), spans[:1]) and not overlaps((600 * MS, 620 * MS), spans[:1])


def test_closed_loop_spaces_frames_so_the_idle_node_takes_the_first():
    ms = 1_000_000
    assert may_publish([], 0, 2, 20 * ms)  # nothing outstanding: go
    assert not may_publish([100 * ms], 110 * ms, 2, 20 * ms)  # the first may not have reached the node yet
    assert may_publish([100 * ms], 120 * ms, 2, 20 * ms)
    assert not may_publish([100 * ms, 130 * ms], 500 * ms, 2, 20 * ms)  # in_flight reached
    assert may_publish([100 * ms, 130 * ms], 500 * ms, 3, 20 * ms)
    assert may_publish([100 * ms], 100 * ms, 2, 0)  # spacing 0: back to back (the old behaviour)


def test_audio_chunks_are_contiguous_and_due_when_captured():
    from perception_eval.bench.rosio import NS, audio_chunk_schedule

    t0 = 1_700_000_000 * NS
    starts = [audio_chunk_schedule(t0, k, 512, 16000, 0.0)[0] for k in range(2000)]
    assert starts[0] == t0 and starts[1000] == t0 + 32 * NS  # 1000 chunks of 32 ms, no drift
    for k in (0, 1, 999):
        start, due = audio_chunk_schedule(t0, k, 512, 16000, 0.0)
        assert due == starts[k + 1]  # due once its last sample is captured
        assert audio_chunk_schedule(t0, k, 512, 16000, 1.0) == (start, due - NS)


def test_auto_cpus_put_the_brain_and_the_frame_path_on_different_cores():
    assert resolve_cpus("auto", "auto", 2) == ("1", "0") and resolve_cpus("auto", "auto", 8) == ("7", "0")
    assert resolve_cpus("auto", "auto", 1) == ("", "")  # one core: nothing to separate
    assert resolve_cpus("", "2-3", 8) == ("", "2-3")  # what is given stays


def test_throughput_windows_share_the_frames_evenly_with_two_or_more_each():
    from perception_common.timing import split_evenly

    assert split_evenly(300, 5, least=2) == [60] * 5 and split_evenly(8, 3, least=2) == [3, 3, 2]
    assert split_evenly(5, 4, least=2) == [3, 2] and split_evenly(3, 1, least=2) == [3]
    assert split_evenly(2, 9, least=2) == [2] and split_evenly(3, 5) == [1, 1, 1]  # rounds: one frame each at least
    for frames, windows in ((301, 7), (17, 5), (1000, 3)):
        sizes = split_evenly(frames, windows, least=2)
        assert sum(sizes) == frames and min(sizes) >= 2 and max(sizes) - min(sizes) <= 1


def test_targets_are_undecided_without_a_value():
    rows = targets({"tracker": {"throughput_ratio": 0.9, "latency_p99_ratio": None}, "memory": {"minutes": 1}})
    by_name = {r["name"]: r for r in rows}
    assert by_name["tracker node throughput / bare loop"]["met"] is True
    assert by_name["tracker p99 latency while reasoning / idle"]["met"] is None
    assert len(rows) == 8


@pytest.mark.ros
def test_short_run_writes_complete_sane_json(tmp_path, ros_available):
    from avs.model import build_model
    from perception_eval.bench import harness

    avs_folder = tmp_path / "avs_tiny"
    build_model("tiny").save_pretrained(avs_folder)
    out = tmp_path / "results"
    code = harness.main(
        [
            "--out",
            str(out),
            "--tracker-model",
            "config:tiny",
            "--avs-model",
            str(avs_folder),
            "--frames",
            "8",
            "--warmup",
            "3",
            "--live-seconds",
            "1.5",
            "--reasoning-seconds",
            "1.5",
            "--memory-minutes",
            "0.05",
            "--instruction-period",
            "1",
            "--node-timeout",
            "120",
        ]
    )
    report = json.loads((out / "node_bench.json").read_text())
    assert code == 0, report["errors"]
    assert report["errors"] == [] and report["machine"]["cpus"] >= 1

    def positive(x):
        return isinstance(x, float) and math.isfinite(x) and x > 0

    t, a, m = report["tracker"], report["avs"], report["memory"]
    for part in (t, a):
        assert positive(part["bare"]["fps"]) and positive(part["node"]["fps"])
        assert part["throughput_ratio"] == pytest.approx(part["node"]["fps"] / part["bare"]["fps"])
        assert part["node"]["answered"] + part["node"]["lost"] == part["node"]["frames"] == 8
        assert part["node"]["windows"] == len(part["node"]["window_fps"]) == len(part["bare"]["window_fps"]) - 1
    assert a["node"]["no_audio"] >= 0 and a["audio"]["chunks_sent"] > 0 and a["audio"]["late_ms_max"] >= 0
    # the time the tracker node had a frame (from its results' processing times): at most the whole closed loop
    assert 0 < t["node"]["busy_fraction"] <= 1.0
    for phase in (t["live_idle"], t["live_reasoning"], a["live"]):
        assert phase["published"] >= 30 and phase["missed"] == phase["published"] - phase["processed"] >= 0
        assert isinstance(phase["queued_beyond_newest_max"], int) and phase["queued_beyond_newest_max"] >= 0
        if phase["latency_frames"]:
            assert 0 < phase["latency_ms_p50"] <= phase["latency_ms_p99"] <= phase["latency_ms_max"]
    assert t["live_idle"]["latency_frames"] > 0 and a["live"]["latency_frames"] > 0
    assert t["live_reasoning"]["brain_calls"] >= 1  # tau = 1: the brain is asked again and again
    assert t["live_idle"]["windows"] == t["live_reasoning"]["windows"] == 3  # the phases alternated
    calls = t["reasoning_calls"]
    assert calls["calls"] >= 2 and calls["failed"] == 0 and 0 < calls["latency_s_p50"] <= calls["latency_s_max"]
    if t["latency_p99_ratio"] is not None:
        assert t["latency_p99_ratio"] == pytest.approx(
            t["live_reasoning"]["latency_ms_p99"] / t["live_idle"]["latency_ms_p99"]
        )
    for name in ("tracker", "avs"):
        mem = m[name]
        assert mem["rss_start_mb"] > 50 and mem["rss_end_mb"] > 50 and mem["rss_end_mb"] <= mem["rss_max_mb"]
        assert mem["growth_pct"] == pytest.approx((mem["rss_end_mb"] - mem["rss_start_mb"]) / mem["rss_start_mb"] * 100)
    assert m["instructions_sent"] >= 2
    assert len(report["targets"]) == 8 and all(x["met"] in (True, False, None) for x in report["targets"])
    assert {x["name"] for x in report["targets"] if x["met"] is None} <= {"tracker p99 latency while reasoning / idle"}
    logs = sorted(p.name for p in (out / "node_logs").iterdir())
    assert logs == ["bench_avs_avs_node.log", "bench_tracker_a_tracker_node.log", "bench_tracker_b_tracker_node.log"]
    for node in report["nodes"].values():  # every node process was stopped
        assert not os.path.exists(f"/proc/{node['pid']}"), node


@pytest.mark.ros
def test_brain_modes_and_runs_are_measured_on_fresh_nodes_and_summarised(tmp_path, ros_available):
    """--brain-modes process,thread --runs 2 on the tiny model: every mode twice, the median and range of each
    figure, a target row per mode, and every node (and brain process) gone afterwards."""
    from perception_eval.bench import harness

    out = tmp_path / "results"
    code = harness.main(["--out", str(out), "--only", "tracker", "--tracker-model", "config:tiny",
                         "--frames", "6", "--warmup", "2", "--live-seconds", "1.0", "--reasoning-seconds", "1.0",
                         "--memory-minutes", "0", "--node-timeout", "120",
                         "--brain-modes", "process,thread", "--runs", "2"])
    report = json.loads((out / "node_bench.json").read_text())
    assert code == 0, report["errors"]
    modes = report["tracker_modes"]
    assert set(modes) == {"process", "thread"} and report["tracker"]["brain_mode"] == "process"
    for figures in modes.values():
        assert len(figures["runs"]) == 2 and all("error" not in r for r in figures["runs"])
        fps = figures["node_fps"]
        assert fps["min"] <= fps["median"] <= fps["max"] and fps["min"] > 0
        for run in figures["runs"]:  # a latency plot per run, and where its slow frames sat in the brain calls
            assert (out / Path(run["latency_plot"]).name).stat().st_size > 0
            phases = run["slow_frames_by_call_phase"]
            assert all(phases["slow"][k] <= phases["all"][k] for k in phases["all"]), phases
    assert sorted(p.name for p in out.glob("tracker_latency_*.png")) == [
        f"tracker_latency_{m}_{k}.png" for m in ("process", "thread") for k in (1, 2)]
    rows = {r["name"] for r in report["targets"]}
    assert {f"tracker p99 ratio, {m} brain, worst of 2 runs" for m in ("process", "thread")} <= rows
    logs = "".join(p.read_text() for p in (out / "node_logs").glob("*process*"))
    assert "brain process" in logs and "ready" in logs
    with pytest.raises(SystemExit):
        harness.build_parser().parse_args(["--out", "x", "--brain-modes", "process,fork"])


def test_union_length_counts_overlaps_once():
    from perception_eval.bench.harness import _union_length

    assert _union_length([(3.0, 4.0), (0.0, 1.0), (0.5, 2.0), (1.5, 1.8)]) == pytest.approx(3.0)
    assert _union_length([]) == 0.0


def test_slow_frames_are_placed_at_the_start_end_or_middle_of_the_brain_call_they_overlap():
    from perception_eval.bench.harness import call_phase, slow_frames_by_call_phase

    spans = [(1000 * MS, 3000 * MS)]  # one brain call from 1 s to 3 s
    edge = 70 * MS
    rows = [
        (900 * MS, 1020 * MS, 2, False, 0.0),   # in flight as the call began: call start, slow (120 ms)
        (1050 * MS, 1080 * MS, 2, False, 0.0),  # published 50 ms into the call: still its start
        (2000 * MS, 2030 * MS, 2, False, 0.0),  # mid-call, fast
        (2500 * MS, 2600 * MS, 2, False, 0.0),  # mid-call, slow (100 ms)
        (2980 * MS, 3090 * MS, 2, False, 0.0),  # in flight as the answer came: call end, slow (110 ms)
        (3200 * MS, 3230 * MS, 2, False, 0.0),  # after the call: no phase
    ]
    assert [call_phase(r, spans, edge) for r in rows] == [
        "call start", "call start", "mid-call", "mid-call", "call end", None]
    out = slow_frames_by_call_phase(rows, spans, threshold_ms=60.0, edge_ns=edge)
    assert out["all"] == {"call start": 2, "call end": 1, "mid-call": 2}
    assert out["slow"] == {"call start": 1, "call end": 1, "mid-call": 1}
    assert out["threshold_ms"] == 60.0 and out["edge_ms"] == pytest.approx(70.0)
    assert slow_frames_by_call_phase(rows, spans, None, edge)["slow"] == {"call start": 0, "call end": 0, "mid-call": 0}


def test_the_latency_timeline_is_plotted_with_the_brain_calls(tmp_path):
    from perception_eval.bench.harness import latency_timeline, plot_latency_timeline

    t0 = 10_000 * MS
    idle = [(t0 + k * 33 * MS, t0 + k * 33 * MS + 30 * MS, 2, False, 0.0) for k in range(10)]
    busy = [(t0 + 1000 * MS, t0 + 1045 * MS, 2, False, 0.0)]
    timeline = latency_timeline(t0, idle, busy, [(t0 + 900 * MS, t0 + 2900 * MS)])
    assert timeline["idle"][1] == [0.033, 30.0] and timeline["reasoning"] == [[1.0, 45.0]]
    assert timeline["brain_calls"] == [[0.9, 2.9]]
    path = tmp_path / "tracker_latency.png"
    plot_latency_timeline(timeline, 30.0, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
