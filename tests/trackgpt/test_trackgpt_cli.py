"""trackgpt-track and trackgpt-bench command lines (tiny configuration)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from perception_common.video import FrameSource, VideoWriter
from trackgpt import TrackGPT, aot, bench, cli

N_FRAMES = 5


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (45, 61, 3), dtype=np.uint8) for _ in range(N_FRAMES)]


@pytest.fixture(scope="module")
def frame_dir(frames, tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f[:, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    TrackGPT.from_config("tiny").save_pretrained(folder)
    return folder


def _check_outputs(out, n, size):
    summary = json.loads((out / "track.json").read_text())
    assert len(summary["frames"]) == n
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == n
    for entry, path in zip(summary["frames"], masks):
        assert entry["mask"] == f"masks/{path.name}"
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == size and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        if entry["state"] in ("idle", "reasoning"):
            assert entry["purport_score"] is None and not mask.any()
        else:
            assert 0.0 <= entry["purport_score"] <= 1.0
            assert (entry["state"] == "tracking") == bool(mask.any())
    assert summary["rethinks"] == sum(f["rethinking"] for f in summary["frames"])
    assert len(FrameSource(out / "overlay.mp4")) == n
    return summary


def test_track_frame_folder_with_a_checkpoint(frame_dir, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["--video", str(frame_dir), "--instruction", "the red car", "--model", str(model_dir),
                   "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = _check_outputs(out, N_FRAMES, (45, 61))
    # offline mode waits for the brain: frame 0 reasons, every later frame has a decoded result
    assert summary["frames"][0]["state"] == "reasoning"
    assert all(f["state"] in ("tracking", "lost") for f in summary["frames"][1:])
    assert summary["answers"] and summary["answers"][0]["frame"] == 1
    assert summary["mask_threshold"] == TrackGPT.from_pretrained(model_dir).perception.mask_threshold
    # the threshold is the one given: above every logit every decoded mask is empty, below every logit full
    for value, full in (("1e9", False), ("-1e9", True)):
        out = tmp_path / f"t{value}"
        rc = cli.main(["--video", str(frame_dir), "--instruction", "the red car", "--model", str(model_dir),
                       "--out", str(out), f"--mask-threshold={value}", "--max-frames", "3"])
        assert rc == 0, capsys.readouterr().err
        summary = json.loads((out / "track.json").read_text())
        assert summary["mask_threshold"] == float(value)
        masks = [cv2.imread(str(out / f["mask"]), cv2.IMREAD_GRAYSCALE) > 0 for f in summary["frames"][1:]]
        assert len(masks) == 2 and all(m.all() if full else not m.any() for m in masks)
    rc = cli.main(["--video", str(frame_dir), "--instruction", "x", "--model", str(model_dir),
                   "--out", str(tmp_path / "bad"), "--mask-threshold", "inf"])
    assert rc == 2 and "--mask-threshold must be finite" in capsys.readouterr().err


def test_track_video_file_with_a_config(frames, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    with VideoWriter(video, 10.0) as writer:
        for f in frames:
            writer.write(f[:44, :60])  # mp4v needs even sizes
    out = tmp_path / "out"
    rc = cli.main(["--video", str(video), "--instruction", "the dog", "--config", "tiny", "--out", str(out),
                   "--max-frames", "3", "--tau", "0.9", "--frame-precision", "fp32"])
    assert rc == 0, capsys.readouterr().err
    summary = _check_outputs(out, 3, (44, 60))
    assert summary["tau"] == 0.9 and summary["fps"] == pytest.approx(10.0)
    assert summary["frame_precision"] == "fp32"  # as tracker_node's frame_precision
    assert summary["frame_compile"].startswith("traced (no compiled encoder")  # random weights: never built


@pytest.mark.parametrize(
    "args, message",
    [
        (["--video", "missing.mp4", "--instruction", "x"], "does not exist"),
        (["--instruction", "   "], "empty or whitespace"),
        (["--tau", "2"], "--tau"),
    ],
)
def test_track_errors_are_one_line(frame_dir, tmp_path, capsys, args, message):
    base = {"--video": str(frame_dir), "--instruction": "the cat", "--config": "tiny", "--out": str(tmp_path / "o")}
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    argv = [item for pair in base.items() for item in pair]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_track_bad_checkpoint_folder(frame_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = cli.main(["--video", str(frame_dir), "--instruction", "the cat", "--model", str(tmp_path / "empty"),
                   "--out", str(tmp_path / "o")])
    assert rc == 2 and "no config.json" in capsys.readouterr().err


@pytest.mark.parametrize("module", [cli, bench, aot])
def test_help(module, capsys):
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_bench_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--out", str(out), "--configs", "tiny", "llava-7b-sam-vit-h", "--frames", "3",
                       "--warmup", "1", "--size", "64x48"]) == 0
    report = json.loads(out.read_text())
    assert report["frame_size"] == {"width": 64, "height": 48}
    tiny, full = report["results"]
    assert tiny["config"] == "tiny" and tiny["frames"] == 3
    for key in ("fps", "p50_ms", "p99_ms", "mean_ms"):
        assert isinstance(tiny[key], float) and tiny[key] > 0
    assert tiny["p50_ms"] <= tiny["p99_ms"]
    assert full["config"] == "llava-7b-sam-vit-h" and "--full" in full["skipped"]
    # every frame path, with the work per frame and the rate reached against this machine's matrix product rate
    assert set(tiny["frame_paths"]) == {"module", "fp32", "bf16"} and tiny["gflop_per_frame"] > 0
    assert report["matmul_gflops"]["fp32"] > 0 and report["matmul_gflops"]["bf16"] > 0
    for path in tiny["frame_paths"].values():
        assert path["frames"] == 3 and path["gflops"] > 0 and 0 < path["of_matmul_rate"] < 1
        assert path["rounds"] == 3  # the default 5, at most one per frame: the paths took turns frame by frame
    paths = tiny["frame_paths"]
    assert paths["module"]["speedup"] == 1.0
    assert paths["bf16"]["speedup"] == pytest.approx(paths["bf16"]["fps"] / paths["module"]["fps"])


def test_bench_times_the_compiled_encoder(tmp_path, monkeypatch):
    """fp32-compiled: the image encoder as an AOTInductor package, built on first use into the cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PERCEPTION_COMPILED_CACHE", str(cache))
    out = tmp_path / "bench.json"
    assert bench.main(["--out", str(out), "--configs", "tiny", "--frames", "2", "--warmup", "1", "--size", "64x48",
                       "--frame-paths", "fp32,fp32-compiled"]) == 0
    paths = json.loads(out.read_text())["results"][0]["frame_paths"]
    assert set(paths) == {"fp32", "fp32-compiled"} and paths["fp32-compiled"]["frames"] == 2
    assert paths["fp32-compiled"]["speedup"] == pytest.approx(paths["fp32-compiled"]["fps"] / paths["fp32"]["fps"])
    assert len(list(cache.glob("FastImageEncoder-*.pt2"))) == 1


def test_compile_command_refuses_a_bad_model_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert aot.main(["--model", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trackgpt-compile: error:") and "no config.json" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        aot.main(["--frame-precision", "half"])
    assert info.value.code == 2


def test_bench_refuses_an_unknown_frame_path(tmp_path, capsys):
    assert bench.main(["--out", str(tmp_path / "b.json"), "--configs", "tiny", "--frame-paths", "fp16"]) == 2
    assert "--frame-paths" in capsys.readouterr().err


def test_unreadable_frame_is_skipped_and_outputs_stay_aligned(frames, model_dir, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f[:, :, ::-1])
    (folder / "0002.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    rc = cli.main(["--video", str(folder), "--instruction", "the red car", "--model", str(model_dir),
                   "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "skipping unreadable frame" in captured.err and "0002.png" in captured.err
    assert "1 unreadable skipped" in captured.out
    summary = _check_outputs(out, N_FRAMES - 1, (45, 61))
    assert [f["index"] for f in summary["frames"]] == [0, 1, 3, 4]
    assert [p.name for p in sorted((out / "masks").glob("*.png"))] == [f"{i:06d}.png" for i in (0, 1, 3, 4)]
    assert summary["complete"] and summary["error"] is None
    assert [s["file"] for s in summary["skipped"]] == [str(folder / "0002.png")]


def test_a_failure_mid_video_keeps_the_frames_done(frame_dir, model_dir, tmp_path, capsys, monkeypatch):
    real_step = cli.OnlineTracker.step
    calls = []

    def failing_step(self, frame):
        calls.append(1)
        if len(calls) == 4:
            raise cli.TrackGPTError("decoder exploded")
        return real_step(self, frame)

    monkeypatch.setattr(cli.OnlineTracker, "step", failing_step)
    out = tmp_path / "out"
    rc = cli.main(["--video", str(frame_dir), "--instruction", "the red car", "--model", str(model_dir),
                   "--out", str(out)])
    assert rc == 2 and "decoder exploded" in capsys.readouterr().err
    summary = json.loads((out / "track.json").read_text())
    assert not summary["complete"] and "decoder exploded" in summary["error"]
    assert [f["index"] for f in summary["frames"]] == [0, 1, 2]
    assert all((out / f["mask"]).is_file() for f in summary["frames"])


def test_a_frame_compile_that_fails_is_one_warning_and_the_trace_runs():
    """tracker_node, trackgpt-track and replay-eval --direct share this: `on` with a package that cannot be built
    is one warning line and the traced encoder; `auto` without one names the command that builds it."""
    from types import SimpleNamespace

    from perception_common.compiled import CompileError

    def cannot_build(build, threads):
        raise CompileError("no C++ compiler (g++) on PATH")

    model = SimpleNamespace(perception=SimpleNamespace(compile_frame_path=cannot_build))
    lines: list[str] = []
    assert aot.use_frame_compile(model, "on", "cpu", spec="m", frame_precision="bf16", threads=2,
                                 warn=lines.append) == "traced"
    assert lines == ["frame compile on: no C++ compiler (g++) on PATH; the traced encoder runs"]
    model.perception.compile_frame_path = lambda build, threads: None
    said = aot.use_frame_compile(model, "auto", "cpu", spec="", frame_precision="auto", threads=1, warn=lines.append)
    assert "`trackgpt-compile` builds one" in said and len(lines) == 1
    assert aot.compile_command("m", "bf16", 2) == "trackgpt-compile --model m --frame-precision bf16 --threads 2"
