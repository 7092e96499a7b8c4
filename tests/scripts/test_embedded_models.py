"""The shipped embedded models load and still reach their measured figures on a small held-out sample.

The sample is generated here with a fixed seed that no training run used (training: seed 0), so a broken or
replaced checkpoint fails. The figures are those of ``results/embedded/results.md`` on the same small sample
(written by the session that trained the models), minus a stated margin; the full held-out test split figures
come from ``scripts/eval_embedded.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import load_script

from perception_eval.worlds.audiovisual import generate_audiovisual_world

REPO = Path(__file__).resolve().parents[2]
AVS_DIR = REPO / "src/avs/avs/pretrained/embedded"
AVS_BASELINE_DIR = REPO / "src/avs/avs/pretrained/embedded-baseline"
TRACKGPT_DIR = REPO / "src/trackgpt/trackgpt/pretrained/embedded"

SAMPLE_SEED = 9001  # never used for training (the worlds the models were trained on use seed 0)
AVS_SAMPLE_CLIPS = 6  # test clips, each under positive, silence, noise, off-screen and mixed audio

# Measured on this very sample (seed 9001, 6 clips) with the shipped weights and gate threshold (0.2, chosen on VAL;
# at 0.5 the sample gives G-mIoU 0.813, G-FPR 0.005, mIoU 0.725); margin below.
AVS_MEASURED = {"G-mIoU": 0.809, "G-FPR": 0.006, "mIoU": 0.725}
AVS_BASELINE_MEASURED = {"mIoU": 0.643}  # its first 3 clips
MARGIN = 0.10  # absolute: G-mIoU / mIoU may be at most this much lower, G-FPR at most this much higher

# The shipped TrackGPT (its brain naming the target from a listing of the frame's objects, brain.naming "scene")
# scores J&F 0.726 on this sample of 3 instructions with its mask threshold -1 chosen on VAL (0.736 at 0), under the
# one J&F rule (every frame scored), naming all three targets; the brain before it, which named them itself, 0.321
# (0.311 when the first and last frames were left out); on the 167 of the test split see results/embedded. The sample
# is small and noisy (earlier checkpoints: 0.260, 0.190, 0.184 and 0.265 here, old rule), so it guards against a
# broken checkpoint, not small changes: one that does not localise its target scored 0.037.
TRACKGPT_MEASURED = {"J&F": 0.726}
TRACKGPT_MARGIN = 0.10


def _eval_module():
    return load_script("eval_embedded")


@pytest.fixture(scope="module")
def av_sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("av_sample") / "world"
    generate_audiovisual_world(
        root, seed=SAMPLE_SEED, clips={"train": 1, "val": 1, "test": AVS_SAMPLE_CLIPS}, workers=1, progress=False
    )
    return root


def test_avs_embedded_loads_and_reaches_measured_figures(av_sample):
    from avs import AVSModel

    torch.set_num_threads(2)
    model = AVSModel.from_pretrained(AVS_DIR)
    assert model.config.gate != "off"
    res = _eval_module().evaluate_avs(model, av_sample, "test")
    assert res["G-mIoU"] >= AVS_MEASURED["G-mIoU"] - MARGIN, res
    assert res["mIoU"] >= AVS_MEASURED["mIoU"] - MARGIN, res
    assert res["G-FPR"] <= AVS_MEASURED["G-FPR"] + MARGIN, res


def test_avs_bf16_frame_path_keeps_the_figures(av_sample):
    """The bf16 frame path (the nodes' default on CPUs with native bf16: the decoder in bf16) scores within 0.005
    G-mIoU and mIoU of the modules, with the same gate decisions to 0.005 G-FPR."""
    from avs import AVSModel

    torch.set_num_threads(2)
    model = AVSModel.from_pretrained(AVS_DIR)
    scores = {}
    for frame_precision in (None, "bf16"):
        model.set_frame_precision(frame_precision)
        scores[frame_precision] = _eval_module().evaluate_avs(model, av_sample, "test", max_clips=4)
    for key in ("G-mIoU", "mIoU", "G-FPR"):
        assert abs(scores["bf16"][key] - scores[None][key]) <= 0.005, (key, scores)


def test_avs_embedded_baseline_loads_and_segments(av_sample):
    from avs import AVSModel

    if not AVS_BASELINE_DIR.is_dir():
        pytest.skip("no un-gated baseline shipped")
    torch.set_num_threads(2)
    model = AVSModel.from_pretrained(AVS_BASELINE_DIR)
    assert model.config.gate == "off"
    res = _eval_module().evaluate_avs(model, av_sample, "test", max_clips=3)
    assert res["mIoU"] >= AVS_BASELINE_MEASURED["mIoU"] - MARGIN, res


def test_avs_node_default_model_is_the_shipped_one():
    from avs import AVSModel

    model = AVSModel.from_pretrained(AVS_DIR)
    frame = torch.zeros(224, 224, 3, dtype=torch.uint8).numpy()
    pred = model.predict(frame, torch.zeros(16000).numpy(), 16000)
    assert pred.mask.shape == (224, 224)


def test_shipped_weights_are_small():
    files = [p for d in (AVS_DIR, AVS_BASELINE_DIR, TRACKGPT_DIR) if d.is_dir() for p in d.rglob("*") if p.is_file()]
    # 75 MB: the AVS models 30, TrackGPT 44 (its namer's LoRA adapter 9.8 and object proposer and namer 8.6 of it)
    assert sum(p.stat().st_size for p in files) < 80 * 1024 * 1024


@pytest.fixture(scope="module")
def instruction_sample(tmp_path_factory):
    from perception_eval.worlds.instruction import generate_instruction_world

    root = tmp_path_factory.mktemp("instruction_sample") / "world"
    generate_instruction_world(root, seed=SAMPLE_SEED, videos={"train": 1, "val": 1, "test": 3}, progress=False)
    return root


def _evaluate_trackgpt(model, root, *, oracle_answer: bool) -> dict:
    """J&F on the sample's 3 test videos, one instruction each, 12 frames, rethinking on (the measured setting)."""
    return _eval_module().evaluate_trackgpt(model, root, "test", max_videos=3, max_expressions=1, max_frames=12,
                                            rethink_modes=(True,), propagation_off=False, oracle_answer=oracle_answer)


@pytest.mark.skipif(not TRACKGPT_DIR.is_dir(), reason="no embedded TrackGPT model is shipped (see results/embedded)")
def test_trackgpt_embedded_loads_and_reaches_measured_figures(instruction_sample):
    from trackgpt import TrackGPT

    torch.set_num_threads(2)
    model = TrackGPT.from_pretrained(TRACKGPT_DIR)
    res = _evaluate_trackgpt(model, instruction_sample, oracle_answer=True)
    score = res["rethink_on"]["overall"]["J&F"]
    assert 0.0 <= score <= 1.0, res
    # the shipped brain names its target ("Sure, I track the red cup."): the table reports how often it is right
    overall = res["rethink_on"]["overall"]
    assert overall["named"] is not None and 0.0 <= overall["named"] <= overall["category_named"] <= 1.0, res
    assert score >= TRACKGPT_MEASURED["J&F"] - TRACKGPT_MARGIN, res
    # the oracle pass teacher-forces the true name: its answers name every target, read back by the same parser
    oracle = res["oracle_answer"]["overall"]
    assert oracle["count"] == overall["count"] and oracle["named"] == oracle["category_named"] == 1.0, res
    assert 0.0 <= oracle["J&F"] <= 1.0, res


def test_naming_is_read_from_the_named_answer():
    from trackgpt.config import NAMED_ANSWER, PAPER_ANSWER

    names, named = _eval_module().answer_names_target, NAMED_ANSWER.strip()
    assert names("Sure, I track the red apple. <TK>, <PO>", named, "red", "apple") == (True, True)
    assert names("Sure, I track the brown book. ,", named, "orange", "book") == (False, True)
    # an orange (the fruit) is not named by "orange book": the category is the name's last word
    assert names("Sure, I track the orange book.", named, "orange", "orange") == (False, False)
    assert names("Sure, I track the object. <TK>, <PO>", PAPER_ANSWER, "red", "apple") is None  # the paper's answer
    assert names("Sure, I track the red apple.", named, None, None) is None  # a world that does not name its targets


@pytest.mark.skipif(not TRACKGPT_DIR.is_dir(), reason="no embedded TrackGPT model is shipped (see results/embedded)")
def test_trackgpt_bf16_frame_path_keeps_the_figures(instruction_sample):
    """The bf16 frame path (the nodes' default on CPUs with native bf16), traced or with its image encoder
    compiled (trackgpt-compile), scores within 0.005 J&F of the fp32 modules."""
    from trackgpt import TrackGPT

    torch.set_num_threads(2)
    model = TrackGPT.from_pretrained(TRACKGPT_DIR)
    scores = {}
    for path in (None, "bf16", "bf16-compiled"):
        model.perception.set_frame_precision(path and path.removesuffix("-compiled"))
        if path == "bf16-compiled":
            model.perception.compile_frame_path()
            assert model.perception.frame_compiled
        res = _evaluate_trackgpt(model, instruction_sample, oracle_answer=False)
        scores[path] = res["rethink_on"]["overall"]["J&F"]
    assert abs(scores["bf16"] - scores[None]) <= 0.005, scores
    assert abs(scores["bf16-compiled"] - scores[None]) <= 0.005, scores
