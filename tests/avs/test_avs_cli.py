"""avs-segment and avs-bench command lines (tiny model, a few frames)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import soundfile
import torch

from avs import bench, cli
from avs.audio import WINDOW_SAMPLES
from avs.model import build_model


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("avs_cli")
    torch.manual_seed(0)
    build_model("tiny").save_pretrained(root / "model")
    video = root / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(12):
        frame = np.full((48, 64, 3), 20 * i, np.uint8)
        cv2.rectangle(frame, (10 + i, 10), (30 + i, 30), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    t = np.arange(int(22050 * 1.5)) / 22050
    tone = 0.4 * np.sin(2 * np.pi * 1000 * t)
    soundfile.write(str(root / "clip.wav"), np.stack([tone, tone], axis=1), 22050, subtype="PCM_16")
    return root


def test_segment_writes_masks_json_and_overlay(workspace, capsys):
    out = workspace / "out"
    code = cli.main(["--video", str(workspace / "clip.mp4"), "--audio", str(workspace / "clip.wav"),
                     "--model", str(workspace / "model"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    frames = results["frames"]
    assert results["num_frames"] == len(frames) == 12
    assert results["audio_sample_rate"] == 22050 and results["audio_channels"] == 2 and results["fps"] == 10.0
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 12
    for rec, path in zip(frames, masks, strict=True):
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
        assert int((mask > 0).sum()) == rec["mask_pixels"]
        assert isinstance(rec["sounding"], bool) and rec["sounding"] == (rec["score"] > results["threshold"])
        if not rec["sounding"]:
            assert rec["mask_pixels"] == 0
    # frame i ends its window at i / 10 s: padding shrinks by 1600 samples per frame until 0.975 s is available
    assert [r["audio_padded_samples"] for r in frames[:3]] == [WINDOW_SAMPLES, WINDOW_SAMPLES - 1600,
                                                              WINDOW_SAMPLES - 3200]
    assert frames[10]["audio_padded_samples"] == 0
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()


def test_threshold_option_refuses_everything(workspace):
    out = workspace / "out_refused"
    code = cli.main(["--video", str(workspace / "clip.mp4"), "--audio", str(workspace / "clip.wav"),
                     "--model", str(workspace / "model"), "--out", str(out), "--threshold", "0.99",
                     "--max-frames", "3", "--no-overlay"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_frames"] == 3 and not any(r["sounding"] for r in results["frames"])
    assert not (out / "overlay.mp4").exists()


def test_audio_from_video_without_ffmpeg_says_what_is_needed(workspace, monkeypatch, capsys):
    monkeypatch.setattr(cli, "find_ffmpeg", lambda: None)
    code = cli.main(["--video", str(workspace / "clip.mp4"), "--audio-from-video",
                     "--model", str(workspace / "model"), "--out", str(workspace / "o2")])
    assert code == 2
    assert "imageio-ffmpeg" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--video": "missing.mp4"}, "does not exist"),
        ({"--audio": "missing.wav"}, "does not exist"),
        ({"--model": "no_model"}, "does not exist"),
    ],
)
def test_bad_paths_give_clear_errors(workspace, capsys, change, message):
    args = {"--video": "clip.mp4", "--audio": "clip.wav", "--model": "model", "--out": "o3"}
    args.update(change)
    argv = [x for k, v in args.items() for x in (k, str(workspace / v))]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "avs-segment: error:" in err and message in err


@pytest.mark.parametrize("fps", ["nan", "-5", "0"])
def test_a_bad_frame_rate_is_refused(workspace, capsys, fps):
    argv = ["--video", str(workspace / "clip.mp4"), "--audio", str(workspace / "clip.wav"),
            "--model", str(workspace / "model"), "--out", str(workspace / "o4"), "--fps", fps]  # fmt: skip
    assert cli.main(argv) == 2
    assert "--fps must be a positive number" in capsys.readouterr().err
    assert not (workspace / "o4").exists()


def test_help_and_usage_errors(capsys):
    for main in (cli.main, bench.main):
        with pytest.raises(SystemExit) as exc:
            main(["--help"])
        assert exc.value.code == 0
        assert "usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["--video", "v.mp4", "--model", "m", "--out", "o"])  # no audio source
    assert exc.value.code == 2


def test_bench_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--configs", "tiny", "--frames", "3", "--warmup", "1", "--width", "80", "--height", "60",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert row["config"] == "tiny" and row["frames"] == 3 and row["frame_size"] == [60, 80]
    assert row["parameters"] == build_model("tiny").num_parameters()
    assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] and row["fps"] > 0
    # the work per frame and the rate reached against this machine's matrix product rate
    assert row["gflop_per_frame"] > 0 and report["matmul_gflops"]["fp32"] > 0
    assert row["gflops"] > 0 and 0 < row["of_matmul_rate"] < 1
    # every frame path, in turns (at most one round per frame), the first (the modules) at the top level
    paths = row["frame_paths"]
    assert set(paths) == {"module", "fp32", "bf16"} and paths["module"]["fps"] == row["fps"]
    assert all(p["frames"] == 3 and p["rounds"] == 3 for p in paths.values())
    assert paths["module"]["speedup"] == 1.0
    assert paths["bf16"]["speedup"] == pytest.approx(paths["bf16"]["fps"] / paths["module"]["fps"])
    assert bench.main(["--configs", "tiny", "--frames", "0", "--out", str(out)]) == 2
    assert bench.main(["--configs", "tiny", "--frame-paths", "compiled", "--out", str(out)]) == 2


def test_bench_times_a_model_folder(tmp_path, capsys):
    folder = build_model("tiny", image_size=48).save_pretrained(tmp_path / "m")
    out = tmp_path / "bench.json"
    assert bench.main(["--configs", "--models", str(folder), "--frames", "2", "--warmup", "0", "--width", "80",
                       "--height", "60", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["config"] == "folder:m" and row["model_folder"] == str(folder)
    assert row["image_size"] == 48  # the folder's own configuration, not the registered one
    assert bench.main(["--configs", "--models", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "avs-bench: error:" in capsys.readouterr().err


def _frame_folder(root, n=6):
    folder = root / "frames"
    folder.mkdir()
    for i in range(n):
        frame = np.full((48, 64, 3), 20 * i, np.uint8)
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
    return folder


def test_unreadable_frame_is_skipped_and_timing_follows_the_source(workspace, tmp_path, capsys):
    folder = _frame_folder(tmp_path)
    (folder / "0003.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    code = cli.main(["--video", str(folder), "--audio", str(workspace / "clip.wav"), "--fps", "10",
                     "--model", str(workspace / "model"), "--out", str(out), "--no-overlay"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skipping unreadable frame" in captured.err and "0003.png" in captured.err
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and results["num_frames"] == 5
    assert [r["index"] for r in results["frames"]] == [0, 1, 2, 4, 5]
    assert [r["time_s"] for r in results["frames"]] == [0.0, 0.1, 0.2, 0.4, 0.5]
    assert [s["file"] for s in results["skipped"]] == [str(folder / "0003.png")]
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == [f"{i:06d}.png" for i in (0, 1, 2, 4, 5)]


def test_a_failure_mid_video_keeps_the_frames_done(workspace, tmp_path, capsys, monkeypatch):
    from avs.errors import AVSError
    from avs.model import AVSModel

    real_predict = AVSModel.predict
    calls = []

    def failing_predict(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise AVSError("backbone exploded")
        return real_predict(self, *args, **kwargs)

    monkeypatch.setattr(AVSModel, "predict", failing_predict)
    out = tmp_path / "out"
    code = cli.main(["--video", str(_frame_folder(tmp_path)), "--audio", str(workspace / "clip.wav"),
                     "--model", str(workspace / "model"), "--out", str(out), "--no-overlay"])
    assert code == 2 and "backbone exploded" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert not results["complete"] and "backbone exploded" in results["error"]
    assert results["num_frames"] == 2 and [r["index"] for r in results["frames"]] == [0, 1]
