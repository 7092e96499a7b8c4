"""The shared scorer (hand-computed cases), library runs on bags, and replay-eval through the running nodes,
which must agree with the library runs on the same bag (same frames, same masks)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_bags import write_instrack, write_s4

from avs.loading import load_model as load_avs
from perception_eval import bags, scoring
from perception_eval.bags import NS, read_episode
from perception_eval.datasets import AVSBenchRobust, AVSBenchS4, InsTrack
from perception_eval.scoring import (
    AVSFrameOutput,
    AVSGroundTruth,
    TrackingFrameOutput,
    TrackingGroundTruth,
    score_avs,
    score_tracking,
)
from trackgpt.loading import load_model as load_tracker


def _mask(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


# ------------------------------------------------------------------------------------------ scorer by hand
def test_tracking_scorer_counts_every_frame_and_missing_outputs_fail():
    shape = (10, 10)
    target = _mask(shape, slice(2, 6), slice(2, 6))  # 16 px
    half = _mask(shape, slice(2, 6), slice(2, 4))  # 8 px inside the target
    empty = np.zeros(shape, bool)
    stamps = [100, 200, 300, 400, 500, 600]
    gt = TrackingGroundTruth(
        "ep",
        stamps,
        ["a", "b", "c", "d", "e", "f"],
        {200: target, 300: target, 400: target, 500: empty, 600: empty},  # frame 100: before the instruction
    )
    preds = {
        100: TrackingFrameOutput(None, state="reasoning"),  # not scored (no ground truth yet)
        200: TrackingFrameOutput(None, state="reasoning"),  # an output without mask: empty prediction, J = 0
        300: TrackingFrameOutput(half, purport_score=0.8, purport_threshold=0.4),  # J = 8 / 16
        # 400: no output at all -> failure, J = 0
        500: TrackingFrameOutput(empty, state="lost", rethinking=True),  # empty on empty: J = 1
        # 600: no output on an empty ground truth -> still a failure: J = F = 0
    }
    result = score_tracking(preds, gt)
    j = [f["J"] for f in result["frames"]]
    assert j == [None, 0.0, 0.5, 0.0, 1.0, 0.0]
    assert [f["scored"] for f in result["frames"]] == [False, True, True, True, True, True]
    assert [f["output"] for f in result["frames"]] == [True, True, True, False, True, False]
    s = result["summary"]
    assert (s["frames"], s["scored"], s["missing"], s["rethinks"], s["reasoning_frames"]) == (6, 5, 2, 1, 2)
    assert s["J-Mean"] == pytest.approx(1.5 / 5)
    assert s["J-Recall"] == pytest.approx(1 / 5)  # only J = 1 is > 0.5 (0.5 is not)
    assert s["F-Mean"] == pytest.approx(np.mean([f["F"] for f in result["frames"][1:]]))
    assert result["frames"][5]["F"] == 0.0 and result["frames"][4]["F"] == 1.0
    # a plain mask is accepted as the prediction; a mask of the wrong size is invalid and fails
    plain = score_tracking({300: half, 200: np.zeros((3, 3), bool)}, gt)
    assert plain["frames"][2]["J"] == 0.5 and plain["frames"][1]["J"] == 0.0
    assert plain["summary"]["invalid_masks"] == 1


def test_avs_scorer_negative_and_positive_episodes():
    shape = (4, 5)  # 20 px
    ref = _mask(shape, slice(0, 2), slice(0, 2))  # 4 px
    stamps = [10, 20, 30, 40]
    negative = AVSGroundTruth("n", stamps, list("abcd"), {s: ref for s in stamps}, "silence", True, shape)
    preds = {
        10: AVSFrameOutput(0.2, False),  # gate closed: empty -> FPR 0, IoU (empty expected) 1
        20: AVSFrameOutput(0.9, True, _mask(shape, slice(0, 1), slice(0, 5))),  # 5 px published: FPR 0.25
        30: AVSFrameOutput(math.nan, False),  # not enough audio: an output, no mask
        # 40: no output: a failure, scored as the full frame (FPR 1), never as the correct empty answer
    }
    r = score_avs(preds, negative)
    assert [f["FPR"] for f in r["frames"]] == [0.0, 0.25, 0.0, 1.0]
    assert [f["IoU"] for f in r["frames"]] == pytest.approx([1.0, 0.75, 1.0, 0.0])
    s = r["summary"]
    assert (s["missing"], s["no_audio"], s["sounding_frames"]) == (1, 1, 1)
    assert s["FPR"] == pytest.approx(1.25 / 4)
    assert s["mean_score"] == pytest.approx(0.55)  # NaN scores are left out of the mean
    assert s["mIoU"] == pytest.approx(2.75 / 4)
    assert s["F"] == 0.0  # all expected masks empty: the AVSBench F of the clip is 0
    # mIoU against the original ground truth (AVSBench-Robust's mIoU_N): frame 20 overlaps 2 of 7 px
    assert s["mIoU_vs_reference"] == pytest.approx((0 + 2 / 7 + 0 + 4 / 20) / 4, abs=1e-6)

    positive = AVSGroundTruth("p", stamps[:2], ["a", "b"], {10: ref}, "positive", False, shape)
    r = score_avs({10: AVSFrameOutput(0.9, True, ref), 20: AVSFrameOutput(0.9, True, ref)}, positive)
    assert r["summary"]["mIoU"] == pytest.approx(1.0) and r["summary"]["F"] == pytest.approx(1.0)
    assert r["summary"]["with_ground_truth"] == 1  # frame 20 has no annotation: only FPR counts it
    assert r["frames"][1]["IoU"] is None and r["frames"][1]["FPR"] == 0.2
    r = score_avs({}, positive)  # nothing at all: every frame fails
    assert r["summary"]["mIoU"] == 0.0 and r["summary"]["missing"] == 2


def test_summary_report_and_plots(tmp_path):
    shape = (6, 6)
    gt = TrackingGroundTruth("t", [1, 2], ["a", "b"], {1: np.ones(shape, bool), 2: np.ones(shape, bool)})
    t = score_tracking({1: np.ones(shape, bool), 2: TrackingFrameOutput(None, state="reasoning")}, gt)
    ref = np.ones(shape, bool)
    pos = score_avs({1: AVSFrameOutput(0.9, True, ref)}, AVSGroundTruth("p", [1], ["a"], {1: ref}, "positive", False))
    neg = score_avs({1: AVSFrameOutput(0.1, False)}, AVSGroundTruth("n", [1], ["a"], {1: ref}, "noise", True))
    episodes = [t, pos, neg]
    overall = scoring.summarize(episodes)
    assert overall["tracking"]["J-Mean"] == pytest.approx(0.5) and overall["tracking"]["missing"] == 0
    assert overall["avs"]["per_condition"]["noise"]["FPR"] == 0.0
    robust = overall["avs"]["robust"]
    assert robust["positive"]["mIoU"] == pytest.approx(1.0)
    assert robust["per_condition"]["noise"]["mIoU_N"] == pytest.approx(0.0)
    assert robust["per_condition"]["noise"]["G-mIoU"] == pytest.approx(1.0)
    paths = scoring.write_report(tmp_path, {"path": "library", "episodes": episodes, "overall": overall})
    report = json.loads(paths["json"].read_text())
    assert report["episodes"][0]["frames"][1]["J"] == 0.0
    md = paths["markdown"].read_text()
    assert "| t | 2 | 2 | 0 | 0.500 |" in md and "| noise | 0.000 |" in md
    assert paths["plot:t"].stat().st_size > 1000 and paths["plot:avs"].stat().st_size > 1000


# ------------------------------------------------------------------------------------------ library runs
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from avs.model import build_model

    folder = tmp_path_factory.mktemp("avs_tiny")
    build_model("tiny").save_pretrained(folder)
    return {"tracker": "config:tiny", "avs": str(folder)}


@pytest.fixture(scope="module")
def episode_bags(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bags")
    ins = write_instrack(tmp / "instrack", frames=8)
    tracking = bags.tracking_episode_bag(tmp / "track", InsTrack(ins)["vid0"], [("0", 0.0), ("1", 0.6)], fps=6)
    s4 = write_s4(tmp / "s4")
    clip = AVSBenchS4(s4, "test")["clip0"]
    noise = AVSBenchRobust(s4, "test").by_condition("noise")[0]
    avs = [
        bags.avs_episode_bag(tmp / "avs_pos", clip, storage="sqlite3"),
        bags.avs_episode_bag(tmp / "avs_noise", clip, audio=noise.load_audio(), condition="noise"),
    ]
    return {"tracking": tracking, "avs": avs}


def test_library_runs_are_scored_frame_by_frame(episode_bags, tiny_models):
    episode = read_episode(episode_bags["tracking"])
    model = load_tracker(tiny_models["tracker"])
    first = scoring.run_tracker_library(episode, model)
    assert sorted(first) == episode.stamps  # an output for every frame
    # the first frame of each instruction goes to the brain (no mask yet), the next ones are decoded
    states = [first[s].state for s in episode.stamps]
    assert states[0] == "reasoning" and states[1] in ("tracking", "lost")
    switch = next(i for i, s in enumerate(episode.stamps) if s >= episode.instructions[1].stamp_ns)
    assert states[switch] == "reasoning"
    again = scoring.run_tracker_library(episode, model)  # brain-synchronous runs are deterministic
    for s in episode.stamps:
        a, b = first[s].mask, again[s].mask
        assert (a is None and b is None) or np.array_equal(a, b)
    result = scoring.score_episode(episode, first)
    assert result["summary"]["scored"] == len(episode.stamps) and result["summary"]["missing"] == 0

    avs_model = load_avs(tiny_models["avs"])
    for path in episode_bags["avs"]:
        ep = read_episode(path)
        out = scoring.run_avs_library(ep, avs_model)
        assert sorted(out) == ep.stamps and all(not math.isnan(o.score) for o in out.values())
        assert all((o.mask is not None) == o.sounding for o in out.values())
        assert scoring.score_episode(ep, out)["summary"]["frames"] == 5


def test_avs_library_run_reports_frames_without_enough_audio(tmp_path, tiny_models):
    frames = [np.zeros((40, 40, 3), np.uint8)] * 3
    audio = (np.zeros(int(1.5 * 16000), np.float32), 16000)  # 1.5 s: frames at 0.5, 1.5, 2.5 s
    path = bags.write_episode_bag(
        tmp_path / "b", task="avs", frames=frames, fps=1, start_ns=10 * NS, first_frame_delay_s=0.5, audio=audio
    )
    out = scoring.run_avs_library(read_episode(path), load_avs(tiny_models["avs"]))
    scores = [out[s].score for s in sorted(out)]
    assert math.isnan(scores[0]) and not math.isnan(scores[1]) and math.isnan(scores[2])


def _corrupted(episode, spoil):
    """``episode`` whose messages pass through ``spoil(role, msg)`` (True: re-serialised as changed), as a bag
    recorded from a faulty driver would hold them (the bag writer refuses such input)."""
    store, read = episode._typestore, episode.raw_messages

    def raw_messages(roles):
        for role, stamp, msgtype, raw in read(roles):
            msg = store.deserialize_cdr(raw, msgtype)
            yield role, stamp, msgtype, (store.serialize_cdr(msg, msgtype) if spoil(role, msg) else raw)

    episode.raw_messages = raw_messages
    return episode


def _spoil(role, msg):
    if role == "audio" and msg.sequence == 20:  # a chunk of NaN audio after the first frame's window
        msg.samples = np.full_like(msg.samples, np.nan)
        return True
    if role == "image" and msg.header.stamp.sec == 12:  # frames at 11, 12, 13 s: the second has no rows
        msg.height = 0
        return True
    return False


def test_library_runs_skip_bad_input_with_a_warning_as_the_nodes_do(tmp_path, tiny_models):
    frames = [np.zeros((40, 40, 3), np.uint8)] * 3
    audio = (np.zeros(int(3.5 * 16000), np.float32), 16000)
    path = bags.write_episode_bag(
        tmp_path / "a", task="avs", frames=frames, fps=1, start_ns=10 * NS, first_frame_delay_s=1.0, audio=audio
    )
    episode = _corrupted(read_episode(path), _spoil)
    warnings: list[str] = []
    out = scoring.run_avs_library(episode, load_avs(tiny_models["avs"]), warnings=warnings)
    assert any("NaN" in w for w in warnings), warnings
    assert any("skipped" in w for w in warnings), warnings
    s0, s1, s2 = episode.stamps
    assert s1 not in out and not math.isnan(out[s0].score) and not math.isnan(out[s2].score)

    path = bags.write_episode_bag(
        tmp_path / "t", task="tracking", frames=frames, fps=1, start_ns=10 * NS, first_frame_delay_s=1.0,
        instructions=[(0.0, "   ", {}), (0.0, "the red ball", {})],
    )  # fmt: skip
    episode = _corrupted(read_episode(path), _spoil)
    warnings = []
    out = scoring.run_tracker_library(episode, load_tracker(tiny_models["tracker"]), warnings=warnings)
    assert any("instruction ignored" in w for w in warnings), warnings
    assert any("skipped" in w for w in warnings), warnings
    s0, s1, s2 = episode.stamps
    assert s1 not in out and out[s0].instruction_id == out[s2].instruction_id > 0


# ------------------------------------------------------------------------------------------ through the nodes
def _graph(tmp_path, tiny_models, **params) -> str:
    import yaml

    graph = {
        "/tracker/tracker_node": {
            "ros__parameters": {"model": tiny_models["tracker"], "device": "cpu", "mode": "live", **params}
        },
        "/avs/avs_node": {"ros__parameters": {"model": tiny_models["avs"], "device": "cpu", "mode": "live"}},
    }
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    return str(path)


def _frames(out_dir):
    report = json.loads((out_dir / "replay_eval.json").read_text())
    return report, [e["frames"] for e in report["episodes"]]


KEYS = {
    "tracking": ["state", "mask_sha1", "rethinking", "purport_score", "J", "F"],
    "avs": ["score", "sounding", "mask_sha1", "IoU", "FPR"],
}


def _assert_same_outputs(nodes_dir, library_dir):
    nodes, node_frames = _frames(nodes_dir)
    library, library_frames = _frames(library_dir)
    assert nodes["path"] == "nodes" and library["path"] == "library"
    assert [e["name"] for e in nodes["episodes"]] == [e["name"] for e in library["episodes"]]
    for episode, episode_n, episode_l in zip(nodes["episodes"], node_frames, library_frames):
        assert [f["stamp_ns"] for f in episode_n] == [f["stamp_ns"] for f in episode_l]
        for fn, fl in zip(episode_n, episode_l):
            assert fn["output"], f"{episode['name']}: frame {fn['index']} got no output from the node"
            for key in KEYS[episode["task"]]:
                if isinstance(fl[key], float):
                    assert fn[key] == pytest.approx(fl[key], rel=1e-6, abs=1e-6), (episode["name"], key, fn["index"])
                else:
                    assert fn[key] == fl[key], (episode["name"], key, fn["index"])
    return nodes, library


@pytest.mark.ros
def test_replay_through_the_nodes_equals_the_library_run(tmp_path, episode_bags, tiny_models, ros_available):
    """A tracking bag and two AVS bags (same stamps) through tracker_node and avs_node started from a graph,
    brain-synchronous lockstep: every frame's output equals the direct library run's (same masks, states,
    rethinks, scores), and so do the figures."""
    from perception_eval import replay

    bags_ = [str(episode_bags["tracking"]), *(str(p) for p in episode_bags["avs"])]
    nodes_dir, library_dir = tmp_path / "nodes", tmp_path / "library"
    # tau close to 1: the tiny model's purport score wobbles enough to trigger rethinks, which must agree too
    graph = _graph(tmp_path, tiny_models, tau=0.99)
    code = replay.main(
        [*bags_, "--graph", graph, "--out", str(nodes_dir), "--brain-sync", "--rate", "0", "--brain-wait", "1.5"]
    )
    assert code == 0
    code = replay.main(
        [
            *bags_,
            "--direct",
            "--tracker-model",
            tiny_models["tracker"],
            "--tau",
            "0.99",
            "--avs-model",
            tiny_models["avs"],
            "--out",
            str(library_dir),
            "--no-plots",
        ]
    )
    assert code == 0
    nodes, library = _assert_same_outputs(nodes_dir, library_dir)
    assert nodes["settings"]["nodes"]["modes"] == {"/tracker/tracker_node": "replay", "/avs/avs_node": "replay"}
    assert nodes["warnings"] == [] or all("brain-sync" in w for w in nodes["warnings"])
    tracking = nodes["episodes"][0]
    assert tracking["play"]["instruction_not_applied"] == 0
    assert nodes["overall"]["tracking"]["rethinks"] >= 1
    assert tracking["reasoning_summary"]["calls"] == 2 + nodes["overall"]["tracking"]["rethinks"]
    for key in ("J-Mean", "F-Mean", "J&F-Mean", "scored", "missing"):
        assert nodes["overall"]["tracking"][key] == pytest.approx(library["overall"]["tracking"][key])
    assert nodes["overall"]["avs"] == library["overall"]["avs"]
    for episode in nodes["episodes"]:  # nothing of one bag was taken for another's
        assert episode["play"]["foreign_outputs"] == 0 and episode["play"]["duplicate_outputs"] == 0
    assert (nodes_dir / "tracking_vid0.png").stat().st_size > 1000
    assert (nodes_dir / "avs_scores.png").stat().st_size > 1000
    assert "| clip0.noise | noise | 5 | 0 |" in (nodes_dir / "replay_eval.md").read_text()


@pytest.mark.ros
def test_replay_attaches_to_a_running_node_paced(tmp_path, episode_bags, tiny_models, processes, ros_available):
    from perception_eval import replay

    processes.start(
        [
            "avs_node",
            "--ros-args",
            "-r",
            "__ns:=/a2",
            "-p",
            f"model:={tiny_models['avs']}",
            "-p",
            "device:=cpu",
            "-p",
            "mode:=replay",
            "-p",
            "image_qos_reliability:=reliable",
        ]
    )
    out = tmp_path / "out"
    bag = str(episode_bags["avs"][0])
    assert (
        replay.main([bag, "--avs-node", "/a2/avs_node", "--rate", "4", "--out", str(out), "--no-plots", "--save-masks"])
        == 0
    )
    report, (frames,) = _frames(out)
    assert report["settings"]["nodes"]["modes"] == {"/a2/avs_node": "replay"} and report["warnings"] == []
    assert [f["output"] for f in frames] == [True] * 5 and report["episodes"][0]["summary"]["missing"] == 0
    played = report["episodes"][0]["play"]
    assert played["frames_published"] == 5 and 1.0 <= played["play_seconds"] < 15  # 5 s of bag at 4x
    saved = sorted((out / "masks").rglob("*.png"))
    assert len(saved) == sum(f["sounding"] for f in frames)


@pytest.mark.ros
def test_replay_without_nodes_says_what_is_missing(tmp_path, episode_bags, capsys, ros_available):
    from perception_eval import replay

    code = replay.main(
        [
            str(episode_bags["avs"][0]),
            "--avs-node",
            "/nobody/avs_node",
            "--wait-nodes",
            "1",
            "--image-topic",
            "/nobody/image",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "nothing subscribes to /nobody/image" in capsys.readouterr().err
