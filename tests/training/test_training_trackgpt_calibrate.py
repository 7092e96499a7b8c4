"""TrackGPT mask-threshold calibration: the offline sweep scores what the tracker outputs; --write stores it."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from perception_eval.metrics import summarize_davis
from perception_eval.tracking import evaluate_video
from perception_eval.worlds.instruction import InstructionWorldConfig, generate_instruction_world
from trackgpt import TrackGPT
from training.common.config import float_grid
from training.trackgpt import calibrate
from training.trackgpt import train as tg_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tg_cal")
    cfg = InstructionWorldConfig(width=96, height=72, frames_min=4, frames_max=5)
    generate_instruction_world(root / "world", seed=5, videos={"train": 2, "val": 2}, config=cfg, progress=False)
    data = [{"name": "w", "type": "instrack", "root": str(root / "world"), "split": "train"}]
    argv = []
    for item in (
        f"output_dir={root / 'run'}",
        "progress=false",
        "train.batch_size=2",
        "train.steps=2",
        f"data.datasets={data!r}",
        "data.frames_per_clip=2",
    ):
        argv += ["--set", item]
    assert tg_train.main(argv) == 0
    return root / "world", root / "run" / "model"


def test_sweep_matches_the_tracker_at_each_threshold(trained):
    world, folder = trained
    model = TrackGPT.from_pretrained(folder)
    pairs = calibrate.instruction_pairs(world, "val", max_expressions=1)
    assert len(pairs) == 2
    records = calibrate.track_records(model, pairs)
    assert all(r.logits.shape == r.gts.shape and r.logits.dtype == np.float32 for r in records)
    lo, hi = float(min(r.logits.min() for r in records)), float(max(r.logits.max() for r in records))
    thresholds = [lo - 1.0, (lo + hi) / 2, hi + 1.0]
    table = calibrate.jf_by_threshold(records, thresholds)
    assert set(table[thresholds[0]]) >= {"overall"}
    for t in thresholds:  # the tracker run with the model's threshold set to t gives the same J&F
        model.perception.mask_threshold = t
        objs = [evaluate_video(model, video, expression)[0] for video, expression in pairs]
        assert table[t]["overall"] == pytest.approx(summarize_davis(objs).overall["J&F-Mean"], abs=1e-3)


def test_propagation_ablation_decodes_every_frame_with_the_referring_query(trained, monkeypatch):
    world, folder = trained
    model = TrackGPT.from_pretrained(folder)
    video, expression = calibrate.instruction_pairs(world, "val", max_expressions=1)[0]
    seen: list[tuple] = []
    decode = model.decode

    def spy(features, *, referring_query, online_query, purport_query):
        seen.append((referring_query.clone(), online_query.clone()))
        return decode(features, referring_query=referring_query, online_query=online_query, purport_query=purport_query)

    monkeypatch.setattr(model, "decode", spy)
    for propagate in (True, False):
        seen.clear()
        evaluate_video(model, video, expression, rethink=False, propagate=propagate)
        assert len(seen) == len(video) >= 3
        same = [bool(np.allclose(q_r.numpy(), q_t.numpy())) for q_r, q_t in seen]
        assert same[0]  # frame 0 decodes with Q_t = Q_R either way
        assert all(same[1:]) if not propagate else not any(same[1:])


def test_cli_writes_the_best_threshold_only(trained, tmp_path, capsys):
    world, folder = trained
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    before = json.loads((copy / "config.json").read_text())
    weights = (copy / "model.safetensors").read_bytes()
    argv = [str(copy), "--data", str(world), "--thresholds=-1,0,1", "--no-progress", "--threads", "1"]
    assert calibrate.main([*argv, "--write", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    best_line = next(ln for ln in out.splitlines() if ln.endswith("<- best"))
    rows = {float(ln.split()[0]): float(ln.split()[1]) for ln in out.splitlines() if re.match(r"\s*-?\d+\.\d\d ", ln)}
    assert sorted(rows) == [-1.0, 0.0, 1.0]
    after = json.loads((copy / "config.json").read_text())
    chosen = after["config"]["sam"]["mask_threshold"]
    assert float(best_line.split()[0]) == chosen and rows[chosen] == max(rows.values())
    after["config"]["sam"]["mask_threshold"] = before["config"]["sam"]["mask_threshold"]
    assert after == before and (copy / "model.safetensors").read_bytes() == weights  # nothing else changed
    assert TrackGPT.from_pretrained(copy).perception.mask_threshold == chosen
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_cli_names_a_missing_model_and_an_empty_split(trained, tmp_path, capsys):
    world, folder = trained
    assert calibrate.main([str(tmp_path / "nowhere"), "--data", str(world), "--no-progress"]) == 2
    assert "calibrate: error:" in capsys.readouterr().err
    assert calibrate.main([str(folder), "--data", str(world), "--split", "test", "--no-progress"]) == 2
    assert "calibrate: error:" in capsys.readouterr().err


def test_float_grid():
    import argparse

    assert float_grid("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert float_grid("0.05:0.95:0.05")[-1] == 0.95 and len(float_grid("0.05:0.95:0.05")) == 19
    assert float_grid("0:1:0.35") == [0.0, 0.35, 0.7]  # never past stop
    assert float_grid("-1,0.5") == [-1.0, 0.5]
    for bad in ("1:0:0.5", "", "0:inf:1", "0:1:0", "a,b", "1,nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            float_grid(bad)
