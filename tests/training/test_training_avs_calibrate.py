"""AVS calibration: the gate threshold and mask offset are chosen on VAL by the stated rule, and shipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from avs import AVSModel, build_model
from training.avs import calibrate
from training.avs.calibrate import RobustPrediction, choose_offset, choose_threshold, robust_figures
from training.common.toydata import write_avsbench

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pred(name, condition, score, *, inside=4.0, size=16):
    ref = np.zeros((1, size, size), bool)
    ref[0, 4:12, 4:12] = True
    logits = torch.where(torch.from_numpy(ref[0]), inside, -4.0)[None].float()
    return RobustPrediction(name, condition, logits, np.array([score], np.float32), ref)


def _world():
    """Positives that the gate scores 0.6 (2 clips) and 0.3 (4), negatives 0.4 (silence) and 0.2 (off-screen)."""
    preds = []
    for i in range(6):
        name = f"c{i}"
        preds.append(_pred(name, "positive", 0.6 if i < 2 else 0.3))
        preds.append(_pred(name, "silence", 0.4))
        preds.append(_pred(name, "offscreen", 0.2))
    return preds


def test_threshold_rule_is_best_g_miou_under_the_fpr_limit():
    preds = _world()
    thresholds = [0.1, 0.25, 0.35, 0.5, 0.7]
    chosen, table = choose_threshold(preds, thresholds, max_fpr=1.0)
    # 0.25 publishes every positive and the silences but no off-screen; 0.35 loses four positives
    assert table[0.25]["mIoU"] > table[0.35]["mIoU"] > table[0.7]["mIoU"] == 0.0
    assert table[0.1]["mIoU_N"] > table[0.25]["mIoU_N"] > table[0.5]["mIoU_N"] == 0.0
    # G-mIoU = 2 mIoU (1 - mIoU_N) / (mIoU + 1 - mIoU_N): 0.25 gives 2 x 1 x 0.5 / 1.5, 0.5 gives 2 x 1/3 x 1 / (4/3)
    assert table[0.25]["G-mIoU"] == pytest.approx(2 / 3) and table[0.5]["G-mIoU"] == pytest.approx(0.5)
    assert chosen == 0.25
    # a tight FPR limit leaves only the thresholds above every negative score
    strict, table = choose_threshold(preds, thresholds, max_fpr=0.0)
    assert strict == 0.5 and table[0.35]["G-FPR"] > 0.0 and table[0.5]["G-FPR"] == 0.0
    assert choose_threshold(preds, [0.1], max_fpr=0.0)[0] is None  # nothing qualifies: the caller keeps its own
    # gate accuracy counts what should pass (positive) and what should not
    assert robust_figures(preds, threshold=0.5)["gate_acc"] == pytest.approx((2 + 12) / 18)
    assert robust_figures(preds, threshold=None)["gate_acc"] is None


def test_offset_rule_picks_the_best_positive_miou():
    preds = [_pred(f"c{i}", "positive", 1.0, inside=-1.0) for i in range(3)]  # under-confident inside the object
    best, scores = choose_offset(preds, [0.0, 2.0, 6.0])
    assert scores[0.0] == 0.0 and best == 2.0 and scores[2.0] == pytest.approx(1.0)  # +6 floods the background
    with pytest.raises(ValueError, match="no positive samples"):
        choose_offset([_pred("c", "silence", 0.1)], [0.0])


def test_no_gate_no_threshold():
    ungated = [RobustPrediction("c", "positive", torch.zeros(1, 4, 4), None, np.ones((1, 4, 4), bool))]
    with pytest.raises(ValueError, match="no gate"):
        choose_threshold(ungated, [0.5])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("avs_cal") / "s4"
    write_avsbench(root, subset="s4", clips={"train": 1, "val": 3})
    return root


def test_cli_ships_the_chosen_threshold_and_fp16_weights(toy, tmp_path, capsys):
    torch.manual_seed(0)
    src = tmp_path / "model"
    build_model("tiny", gate="scaled_cosine").save_pretrained(src)
    out, plot = tmp_path / "shipped", tmp_path / "gate.png"
    argv = [str(src), str(out), "--data", str(toy), "--offsets", "0,1", "--gate-threshold"]
    assert calibrate.main([*argv, "--thresholds", "0.2:0.8:0.3", "--max-fpr", "1", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    shipped = AVSModel.from_pretrained(out)
    assert f"gate threshold {shipped.config.threshold}" in text and shipped.config.threshold in (0.2, 0.5, 0.8)
    assert json.loads((out / "config.json").read_text())["threshold"] == shipped.config.threshold
    assert all(
        v.dtype == torch.float16 for v in load_file(str(out / "model.safetensors")).values() if v.is_floating_point()
    )
    offset = float(text.split("logit offset ")[1].split()[0])
    before = AVSModel.from_pretrained(src).decoder.head_out.bias
    assert torch.allclose(shipped.decoder.head_out.bias.float(), before + offset, atol=1e-2)
    assert plot.stat().st_size > 1000
    # the same model re-scored by hand gives the table's figures at the chosen threshold
    preds = calibrate.predict_robust(shipped, toy, "val")
    assert {p.condition for p in preds} >= {"positive", "silence", "noise", "offscreen"}
    row = next(ln for ln in text.splitlines() if ln.endswith("<- chosen")).split()
    ours = robust_figures(preds, threshold=shipped.config.threshold)
    assert float(row[1]) == pytest.approx(ours["G-mIoU"], abs=2e-3)  # fp16 weights vs the fp32 it chose with


def test_cli_refuses_a_model_without_gate_and_a_missing_folder(toy, tmp_path, capsys):
    src = tmp_path / "baseline"
    build_model("tiny", gate="off").save_pretrained(src)
    assert calibrate.main([str(src), str(tmp_path / "o"), "--data", str(toy), "--gate-threshold"]) == 2
    assert "gate is off" in capsys.readouterr().err
    assert calibrate.main([str(tmp_path / "nowhere"), str(tmp_path / "o"), "--data", str(toy)]) == 2
    assert "calibrate: error:" in capsys.readouterr().err and not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exc:
        calibrate.main([str(src), str(tmp_path / "o"), "--data", str(toy), "--offsets", "a:b"])
    assert exc.value.code == 2 and "expected start:stop:step" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a gate threshold is a probability: refused before anything runs
        calibrate.main([str(src), str(tmp_path / "o"), "--data", str(toy), "--thresholds", "0.5,1"])
    assert exc.value.code == 2 and "must lie in (0, 1)" in capsys.readouterr().err
