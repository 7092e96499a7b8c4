"""``make demo``: the whole graph on generated sample clips, with an instruction, as a robot would run it.

1. Generates a small instruction clip (instruction world, held-out test split) and an audio-visual stream
   (one clip under the four audio conditions: positive, silence, noise, off-screen, 5 s each).
2. Starts the graph with ``perception-run`` (camera_node x2, microphone_node, tracker_node, avs_node; same
   YAML as ``ros2 launch`` would use), sends the instruction on ``/instruction`` (as ``instruction-pub`` does).
3. Records what the nodes publish and writes, under ``--out``: ``tracking.mp4`` and ``tracking.png``
   (frames with the tracked mask), ``avs.png`` (a frame per audio condition, mask only when published),
   ``summary.json`` / ``summary.md`` (frames, masks, reasoning latency, rethinks, dropped frames, J&F against
   the generated ground truth, AVS scores and false positives per condition), ``graph.yaml`` and ``graph.log``.

Models: the shipped embedded models by default; when they are not present (not trained yet) the demo uses
the embedded configurations with random weights and says so loudly: the graph runs, the masks mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from perception_common.stamps import header_ns
from perception_nodes.processes import ManagedProcess, stop_all
from perception_nodes.recorder import RecorderNode

CONDITIONS = ("positive", "silence", "noise", "offscreen")
LEAD_IN = 2  # frames of the audio-visual stream before the conditions start


def _model_param(explicit: str | None, shipped: Path, fallback: str) -> tuple[str, str]:
    """(parameter value, human description) for a node's ``model``."""
    if explicit:
        return explicit, explicit
    if shipped.is_dir():
        return "", f"shipped embedded model ({shipped}; figures vs targets: README, 'Shipped embedded models')"
    return f"config:{fallback}", f"UNTRAINED config:{fallback} (no shipped model at {shipped}: masks are random)"


def _prepare_data(out: Path, seed: int) -> dict:
    import cv2
    import soundfile as sf
    import torch
    import torchaudio

    from perception_eval.datasets import AVSBenchRobust, InsTrack
    from perception_eval.worlds.audiovisual import generate_audiovisual_world
    from perception_eval.worlds.instruction import generate_instruction_world

    iw, av = out / "data" / "instruction", out / "data" / "audiovisual"
    if not (iw / "world.json").is_file():
        generate_instruction_world(iw, seed=seed, videos={"train": 0, "val": 0, "test": 4}, overwrite=True,
                                   progress=False)
    if not (av / "world.json").is_file():
        generate_audiovisual_world(av, seed=seed, clips={"train": 0, "val": 0, "test": 2}, overwrite=True,
                                   progress=False)
    # Tracking: the first implicit instruction of the test split (else the first one).
    pairs = list(InsTrack(iw, "test").iter_instructions())
    video, expr = next(((v, e) for v, e in pairs if e.kind == "implicit"), pairs[0])
    track = {"frames": str(video.frame_paths[0].parent), "instruction": expr.text, "kind": expr.kind,
             "video": video.name, "n": len(video), "gt": video.target_masks(expr)}
    # Audio-visual stream: one clip, its 5 frames repeated under each condition, audio at 16 kHz.
    samples = {s.condition: s for s in AVSBenchRobust(av, "test") if s.name == "test_00000"}
    clip = samples["positive"].clip
    stream = out / "data" / "av_stream"
    stream.mkdir(parents=True, exist_ok=True)
    frames = clip.load_frames()
    # Two lead-in frames and one second of leading silence: the camera and the microphone start within a
    # fraction of a second of each other, and each frame k of a condition is paired with that condition's
    # second k (the window ending at the frame's stamp).
    for k in range(LEAD_IN):
        cv2.imwrite(str(stream / f"{k:05d}.png"), frames[0][:, :, ::-1])
    audio, conditions = [np.zeros(16000, np.float32)], []
    k = LEAD_IN
    for cond in CONDITIONS:
        wav, rate = samples[cond].load_audio()
        wav = wav.mean(axis=1) if wav.ndim == 2 else wav
        wav = torchaudio.functional.resample(torch.from_numpy(wav.astype(np.float32)), rate, 16000).numpy()
        audio.append(np.pad(wav, (0, max(0, 80000 - len(wav))))[:80000])
        for f in frames:
            cv2.imwrite(str(stream / f"{k:05d}.png"), f[:, :, ::-1])
            conditions.append(cond)
            k += 1
    audio.append(np.zeros(16000, np.float32))  # a second of tail, so the last frame's window is covered
    sf.write(stream / "stream.wav", np.concatenate(audio), 16000, subtype="FLOAT")
    return {"track": track, "av": {"frames": str(stream), "wav": str(stream / "stream.wav"),
                                   "conditions": conditions, "gt": clip.load_masks(), "name": clip.name,
                                   "category": clip.category}}


def _graph(data: dict, tracker_model: str, avs_model: str, path: Path) -> Path:
    n = data["track"]["n"]
    graph = {
        "/track/camera_node": {"ros__parameters": {
            "source": data["track"]["frames"], "rate": 8.0, "loop": True, "max_frames": 2 * n,
            "wait_for_subscribers": 2}},  # the tracker and the demo's recorder
        "/tracker/tracker_node": {"ros__parameters": {
            "model": tracker_model, "device": "auto", "mode": "live", "image_topic": "/track/image_raw",
            "instruction_topic": "/instruction"}},
        "/av/camera_node": {"ros__parameters": {
            "source": data["av"]["frames"], "rate": 1.0, "loop": False, "wait_for_subscribers": 2}},
        "/av/microphone_node": {"ros__parameters": {
            "source": data["av"]["wav"], "chunk_size": 512, "wait_for_subscribers": 2}},
        "/avs/avs_node": {"ros__parameters": {
            "model": avs_model, "device": "auto", "mode": "replay", "image_topic": "/av/image_raw",
            "audio_topic": "/av/audio"}},
    }
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


class Recorder(RecorderNode):
    """What the demo records of the running graph: tracker results and reasoning, AVS scores and masks, the
    frames the cameras published and the audio chunks (:class:`perception_nodes.recorder.RecorderNode`)."""

    def __init__(self):
        from perception_msgs.msg import AudioChunk, Reasoning, SoundingMask, TrackResult
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from perception_nodes.runtime import reliable_qos, sensor_qos

        super().__init__("demo_recorder")
        self.results, self.reasoning, self.scores, self.sounding = [], [], [], []
        self.track_frames, self.av_frames = {}, {}
        self.audio_chunks = 0
        self.subscribe(TrackResult, "/tracker/tracker_node/result", self.results.append, reliable_qos(100))
        self.subscribe(Reasoning, "/tracker/tracker_node/reasoning", self.reasoning.append, reliable_qos(10))
        self.subscribe(SoundingMask, "/avs/avs_node/score", self.scores.append, reliable_qos(100))
        self.subscribe(SoundingMask, "/avs/avs_node/sounding", self.sounding.append, reliable_qos(100))
        self.subscribe(Image, "/track/image_raw", lambda m: self.track_frames.setdefault(header_ns(m), m),
                       sensor_qos(100))
        self.subscribe(Image, "/av/image_raw", lambda m: self.av_frames.setdefault(header_ns(m), m), sensor_qos(100))
        self.subscribe(AudioChunk, "/av/audio", self._count_audio, sensor_qos(200, "reliable"))
        self.instruction_pub = self.publisher(String, "/instruction", 10)

    def _count_audio(self, msg) -> None:
        self.audio_chunks += 1


def _decode_mask(img) -> np.ndarray | None:
    if img.width == 0:
        return None
    return np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.step)[:, : img.width] > 0


def _write_outputs(out: Path, data: dict, rec: Recorder, models: dict, wall: float) -> dict:
    """``tracking.mp4``, ``tracking.png``, ``avs.png``, ``summary.json`` and ``summary.md``; returns the summary."""
    tracking = _tracking_outputs(out, data, rec)
    per_cond = _avs_outputs(out, data, rec)
    summary = {
        "wall_seconds": round(wall, 1),
        "models": models,
        "tracking": tracking,
        "avs": {"clip": data["av"]["name"], "sounding_category": data["av"]["category"],
                "frames_published": len(rec.av_frames), "audio_chunks": rec.audio_chunks, "scores": len(rec.scores),
                "per_condition": per_cond},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(_summary_markdown(summary))
    return summary


def _tracking_outputs(out: Path, data: dict, rec: Recorder) -> dict:
    """The tracked video and contact sheet, and the tracking part of the summary (J&F by the one rule)."""
    import cv2
    from perception_msgs.msg import TrackResult

    from perception_common.images import overlay
    from perception_common.video import VideoWriter
    from perception_eval.metrics.davis import score_track
    from perception_nodes.image_msgs import imgmsg_to_rgb8

    states = {TrackResult.STATE_IDLE: "idle", TrackResult.STATE_REASONING: "reasoning",
              TrackResult.STATE_TRACKING: "tracking", TrackResult.STATE_LOST: "lost"}
    results = sorted(rec.results, key=header_ns)
    frame_order = sorted(rec.track_frames)
    index = {s: i for i, s in enumerate(frame_order)}
    gt = data["track"]["gt"]
    truths, preds, sheet = [], [], []
    with VideoWriter(out / "tracking.mp4", fps=8.0) as video:
        for r in results:
            frame_msg = rec.track_frames.get(header_ns(r))
            if frame_msg is None:
                continue
            frame = imgmsg_to_rgb8(frame_msg)
            mask = _decode_mask(r.mask)
            shown = overlay(frame, mask) if mask is not None else frame.copy()
            cv2.putText(shown, states[r.state], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            video.write(shown)
            if len(sheet) < 8 and index[header_ns(r)] % 6 == 0:
                sheet.append(shown)
            truth = gt[index[header_ns(r)] % len(gt)]
            truths.append(truth)
            preds.append(mask if mask is not None else np.zeros_like(truth))
    if sheet:
        cv2.imwrite(str(out / "tracking.png"), np.concatenate(sheet, axis=1)[:, :, ::-1])
    # the one J&F rule (every frame that got a result scored; the live timing: frames while the brain reasoned
    # have no mask and count as misses)
    score = score_track(truths, preds, sequence=data["track"]["video"]) if truths else None
    latencies = [r.latency for r in rec.reasoning if r.success]
    return {
        "video": data["track"]["video"], "instruction": data["track"]["instruction"],
        "instruction_kind": data["track"]["kind"],
        "frames_published": len(rec.track_frames), "results": len(results),
        "states": {name: sum(r.state == code for r in results) for code, name in states.items()},
        "masks": sum(r.mask.width > 0 for r in results),
        "answers": [r.answer for r in rec.reasoning if r.success],
        "reasoning_latency_s": [round(x, 3) for x in latencies],
        "rethinks": max((r.rethink_count for r in results), default=0),
        "J_mean": score.j_mean if score else None, "F_mean": score.f_mean if score else None,
        "JF_mean": score.jf_mean if score else None,
    }


def _avs_outputs(out: Path, data: dict, rec: Recorder) -> dict[str, dict]:
    """``avs.png`` (a frame per audio condition, mask only where published) and the per-condition figures."""
    import cv2

    from perception_common.images import overlay
    from perception_nodes.image_msgs import imgmsg_to_rgb8

    cond_of = {}
    av_order = sorted(rec.av_frames)
    for i, s in enumerate(av_order):
        conditions = data["av"]["conditions"]
        cond_of[s] = "lead-in" if i < LEAD_IN else conditions[(i - LEAD_IN) % len(conditions)]
    sounding = {header_ns(m): m for m in rec.sounding}
    per_cond: dict[str, dict] = {}
    candidates: dict[str, list] = {}
    for m in sorted(rec.scores, key=header_ns):
        cond = cond_of.get(header_ns(m), "unknown")
        c = per_cond.setdefault(cond, {"frames": 0, "masks_published": 0, "scores": [], "no_audio": 0,
                                       "foreground_fraction": []})
        c["frames"] += 1
        if np.isnan(m.score):
            c["no_audio"] += 1
        else:
            c["scores"].append(float(m.score))
        s = sounding.get(header_ns(m))
        mask = _decode_mask(s.mask) if s is not None else None
        c["masks_published"] += s is not None
        c["foreground_fraction"].append(0.0 if mask is None else float(mask.mean()))
        if cond in CONDITIONS and header_ns(m) in rec.av_frames:
            candidates.setdefault(cond, []).append((m, mask))
    # one tile per condition: its middle frame, whose audio window lies inside the condition (the first one's
    # window still holds the previous condition's sound: the camera and microphone are not aligned)
    tiles = []
    for cond in CONDITIONS:
        if cond not in candidates:
            continue
        m, mask = candidates[cond][len(candidates[cond]) // 2]
        frame = imgmsg_to_rgb8(rec.av_frames[header_ns(m)])
        shown = overlay(frame, mask) if mask is not None else frame.copy()
        label = f"{cond}: {'mask' if mask is not None else 'no mask'} s={m.score:.2f}"
        cv2.putText(shown, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        tiles.append(shown)
    if tiles:
        cv2.imwrite(str(out / "avs.png"), np.concatenate(tiles, axis=1)[:, :, ::-1])
    for c in per_cond.values():
        c["mean_score"] = float(np.mean(c["scores"])) if c["scores"] else None
        c["fpr_mean"] = float(np.mean(c["foreground_fraction"]))
        del c["scores"], c["foreground_fraction"]
    return per_cond


def _summary_markdown(summary: dict) -> str:
    t, models, per_cond = summary["tracking"], summary["models"], summary["avs"]["per_condition"]
    jf = "-" if t["JF_mean"] is None else f"{t['JF_mean']:.3f}"
    lines = [
        "# Demo summary", "",
        f"Models: tracker {models['tracker']}; AVS {models['avs']}.", "",
        "## Instruction tracking", "",
        f"Instruction ({t['instruction_kind']}): *{t['instruction']}* on `{t['video']}`", "",
        "| frames published | results | reasoning | tracking | lost | masks | rethinks | reasoning latency (s) | J&F |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {t['frames_published']} | {t['results']} | {t['states']['reasoning']} | {t['states']['tracking']} | "
        f"{t['states']['lost']} | {t['masks']} | {t['rethinks']} | "
        f"{', '.join(f'{x:.2f}' for x in t['reasoning_latency_s']) or '-'} | "
        f"{jf} |", "",
        f"Answer: {t['answers'][0] if t['answers'] else '(none)'}", "",
        "## Audio-visual segmentation", "",
        f"Clip `{summary['avs']['clip']}`, sounding object: {summary['avs']['sounding_category']}.", "",
        "| condition | frames | masks published | mean score | no audio | mean predicted foreground |",
        "|---|---|---|---|---|---|",
    ]
    for cond, c in per_cond.items():
        score = "-" if c["mean_score"] is None else f"{c['mean_score']:.3f}"
        lines.append(f"| {cond} | {c['frames']} | {c['masks_published']} | {score} | {c['no_audio']} | "
                     f"{c['fpr_mean']:.3f} |")
    lines += ["", "Files: tracking.mp4, tracking.png, avs.png, graph.yaml, graph.log, graph-camera.log, summary.json."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perception-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the generated sample clips")
    parser.add_argument("--tracker-model", default=None, help="tracker_node model (default: the shipped one)")
    parser.add_argument("--avs-model", default=None, help="avs_node model (default: the shipped one)")
    parser.add_argument("--timeout", type=float, default=240.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    from avs.loading import shipped_folder as avs_shipped
    from trackgpt.loading import shipped_folder as trackgpt_shipped

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t_model, t_desc = _model_param(args.tracker_model, trackgpt_shipped(), "embedded")
    a_model, a_desc = _model_param(args.avs_model, avs_shipped(), "embedded")
    for d in (t_desc, a_desc):
        if d.startswith("UNTRAINED"):
            print(f"demo: WARNING: {d}", flush=True)
    print("demo: generating the sample clips", flush=True)
    data = _prepare_data(out, args.seed)
    graph = _graph(data, t_model, a_model, out / "graph.yaml")
    rec = Recorder()
    print(f"demo: starting the graph (perception-run {graph}); node output in {out / 'graph.log'}", flush=True)
    t0 = time.monotonic()
    others = ",".join(k for k in yaml.safe_load(graph.read_text()) if k != "/track/camera_node")
    proc = camera = None
    try:
        proc = ManagedProcess(["perception-run", str(graph), "--only", others], name="perception-run",
                              log_path=out / "graph.log")
        n_track, n_av = 2 * data["track"]["n"], LEAD_IN + len(data["av"]["conditions"])
        ok = rec.poll_until(lambda: proc.poll() is not None or rec.instruction_pub.get_subscription_count() > 0, 120)
        if not ok or proc.poll() is not None:
            print(f"demo: the tracker did not come up; see {out / 'graph.log'}", file=sys.stderr)
            return 1
        # As `instruction-pub TEXT` or `ros2 topic pub --once /instruction std_msgs/msg/String ...` would.
        from std_msgs.msg import String

        rec.instruction_pub.publish(String(data=data["track"]["instruction"]))
        print(f"demo: sent the instruction {data['track']['instruction']!r} on /instruction", flush=True)
        # The tracking camera starts once the instruction is out, so the clip is tracked from its first frames.
        camera = ManagedProcess(["perception-run", str(graph), "--only", "/track/camera_node"],
                                name="perception-run (tracking camera)", log_path=out / "graph-camera.log")
        done = rec.wait_for(lambda: len(rec.track_frames) >= n_track and len(rec.av_frames) >= n_av
                            and len(rec.scores) >= n_av, timeout=args.timeout)
        time.sleep(1.0)  # the last results
        if not done:
            print(f"demo: timed out after {args.timeout:.0f} s; writing what arrived", file=sys.stderr)
    finally:
        stop_all([camera, proc], grace=30.0)
        rec.close()  # nothing is recorded after this: the outputs below read settled lists
    wall = time.monotonic() - t0
    summary = _write_outputs(out, data, rec, {"tracker": t_desc, "avs": a_desc}, wall)
    print((out / "summary.md").read_text())
    ok = summary["tracking"]["results"] > 0 and summary["avs"]["scores"] > 0
    print(f"demo: {'done' if ok else 'FAILED: no results'}; outputs in {out}/", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
