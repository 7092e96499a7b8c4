"""``scripts/figure_embedded.py`` renders its figure and reports the AVS gate's decision consistently.

Like ``tests/scripts/test_embedded_models.py``, the held-out sample is generated here by the seeded world generators
(seed 9001, never used for training), so the test runs without ``data/worlds`` (CI generates nothing).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SEED = 9001  # as tests/scripts/test_embedded_models.py: not a training seed
MODEL_DIRS = (
    REPO / "src/avs/avs/pretrained/embedded",
    REPO / "src/avs/avs/pretrained/embedded-baseline",
    REPO / "src/trackgpt/trackgpt/pretrained/embedded",
)

pytestmark = pytest.mark.skipif(
    not all(d.is_dir() for d in MODEL_DIRS),
    reason="the shipped embedded models (AVS gated + baseline, TrackGPT) are not all present",
)


@pytest.fixture(scope="module")
def fig_module():
    spec = importlib.util.spec_from_file_location("figure_embedded", REPO / "scripts" / "figure_embedded.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    from perception_eval.worlds.audiovisual import generate_audiovisual_world
    from perception_eval.worlds.instruction import generate_instruction_world

    root = tmp_path_factory.mktemp("figure_worlds")
    generate_audiovisual_world(
        root / "avs", seed=SAMPLE_SEED, clips={"train": 1, "val": 1, "test": 2}, workers=1, progress=False
    )
    generate_instruction_world(
        root / "instruction", seed=SAMPLE_SEED, videos={"train": 1, "val": 1, "test": 2}, progress=False
    )
    return root


def test_gate_decision_follows_the_threshold(fig_module):
    assert fig_module.gate_decision(0.2, 0.5) == (0.2, False)
    assert fig_module.gate_decision(0.5, 0.5) == (0.5, False)  # the model publishes when score > threshold
    assert fig_module.gate_decision(0.8, 0.5) == (0.8, True)
    assert fig_module.gate_decision(None, 0.5) == (None, True)  # gate off: always published


def test_avs_panels_report_the_gate_decision(fig_module, worlds):
    from avs import AVSModel
    from perception_eval.datasets import AVSBenchRobust

    torch.set_num_threads(1)
    robust = AVSBenchRobust(worlds / "avs", "test", subset="s4", avs_root=worlds / "avs")
    _, samples = fig_module.robust_samples(robust, seed=0)
    gated = fig_module.avs_panels(AVSModel.from_pretrained(MODEL_DIRS[0]), samples)
    assert [p.condition for p in gated] == ["positive", "silence", "noise", "offscreen"]
    for p in gated:
        assert p.score is not None and 0.0 <= p.score <= 1.0
        assert p.published == (p.score > p.threshold), p
        assert p.published or not p.published_mask.any()  # suppressed: nothing is published
        assert np.array_equal(p.published_mask, p.raw_mask & p.published)
        assert p.correct == (p.published == (p.condition == "positive"))
    baseline = fig_module.avs_panels(AVSModel.from_pretrained(MODEL_DIRS[1]), samples)
    assert all(p.score is None and p.published for p in baseline)


def test_main_writes_a_png(fig_module, worlds, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "figure.png"
    rc = fig_module.main(["--worlds", str(worlds), "--out", str(out), "--max-frames", "8"])
    assert rc == 0
    assert str(out) in capsys.readouterr().out
    assert out.is_file() and out.stat().st_size > 50_000
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.verify()
    assert width >= 1000 and height >= 1200, (width, height)


def test_main_reports_a_missing_world(fig_module, tmp_path, capsys):
    assert fig_module.main(["--worlds", str(tmp_path / "none"), "--out", str(tmp_path / "f.png")]) == 2
    assert "no instruction world" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()
