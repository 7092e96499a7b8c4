"""Run configs (training/configs/*.yaml) and the shared config / checkpoint / log helpers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from training.avs import train as avs_train
from training.common.checkpoint import find_checkpoint, save_checkpoint
from training.common.config import ConfigError, apply_overrides, load_config, read_yaml
from training.common.errors import SetupError
from training.common.logs import MetricsLog, plot_curves
from training.common.loop import lr_factor
from training.common.state import capture_rng, restore_rng
from training.common.toydata import write_all
from training.trackgpt import pretrain_sam, train_namer
from training.trackgpt import train as tg_train

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
EXPECTED = {
    "avs-tiny", "avs-embedded", "avs-embedded-baseline", "avs-resnet50",
    *(f"trackgpt-{size}-stage{s}" for size in ("tiny", "embedded", "llava7b") for s in (1, 2, 3)),
}  # fmt: skip


def _defaults(name: str):
    if name == "sam" or name.endswith("-proposer"):  # SAM pre-training (embedded/sam.yaml, an object proposer)
        return pretrain_sam.DEFAULTS
    if name.endswith("-namer"):  # naming from a listing (train_namer.py)
        return train_namer.DEFAULTS
    return avs_train.DEFAULTS if name.startswith("avs-") else tg_train.DEFAULTS


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, path + ".")
        else:
            yield path


def test_every_run_type_has_a_config():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_is_complete_and_valid(name):
    path = CONFIGS / f"{name}.yaml"
    defaults = _defaults(name)
    config = load_config(path, defaults)  # strict: an unknown key raises
    written = set(_leaves(read_yaml(path)))
    missing = [k for k in _leaves(defaults) if k not in written and not any(w.startswith(k + ".") for w in written)]
    assert not missing, f"{name} does not state {missing}"
    ds = config["accelerate"]["deepspeed_config"]
    if ds:
        assert json.loads((CONFIGS.parents[1] / ds).read_text())["zero_optimization"]["stage"] == 2
    if name.startswith("trackgpt-"):
        stage = config["stage"]
        assert name.endswith(f"stage{stage}")
        assert bool(config["model"]["init_from"]) == (stage > 1)
        assert config["data"]["frames_per_clip"] == (1 if stage == 1 else 3)
        assert config["loss"] == {"lambda_text": 1.0, "lambda_mask": 1.0, "lambda_po": 1.0, "bce_weight": 2.0,
                                  "dice_weight": 0.5, "lambda_objects": 0.0}  # fmt: skip
    else:
        assert config["data"]["negatives"]["proportion"] == 0.1
        assert (config["model"]["overrides"].get("gate") == "off") == name.endswith("baseline")


def test_tiny_configs_run_on_toy_data(tmp_path):
    toy = write_all(tmp_path / "toy")
    out = tmp_path / "avs"
    argv = ["--config", str(CONFIGS / "avs-tiny.yaml")]
    for item in (f"data.s4_root={toy / 'avs' / 's4'}", f"output_dir={out}", "train.steps=2", "progress=false"):
        argv += ["--set", item]
    assert avs_train.main(argv) == 0
    text = yaml.safe_load((out / "config.yaml").read_text())
    assert text["model"]["config"] == "tiny" and (out / "model" / "model.safetensors").is_file()

    config = read_yaml(CONFIGS / "trackgpt-tiny-stage1.yaml")
    datasets = yaml.safe_dump(config["data"]["datasets"]).replace("data/toy", str(toy))
    val = yaml.safe_dump(config["eval"]["datasets"]).replace("data/toy", str(toy))
    out = tmp_path / "tg"
    argv = ["--config", str(CONFIGS / "trackgpt-tiny-stage1.yaml")]
    for item in (f"data.datasets={datasets}", f"eval.datasets={val}", f"output_dir={out}", "train.steps=2",
                 "eval.max_items=2", "progress=false"):  # fmt: skip
        argv += ["--set", item]
    assert tg_train.main(argv) == 0
    assert (out / "model" / "brain_adapter" / "adapter_config.json").is_file()


# ----------------------------------------------------------------------------- shared helpers
def test_overrides_parse_yaml_and_refuse_unknown_keys():
    defaults = {"a": {"b": 1, "free": {}}, "items": [{"root": "x"}, {"root": "y"}]}
    out = apply_overrides(defaults, ["a.b=1e-4", "a.free.anything=[1, 2]", "items.1.root=/data", "a.free={k: v}"])
    assert out["a"]["b"] == 1e-4 and out["a"]["free"] == {"anything": [1, 2], "k": "v"}
    assert out["items"][1]["root"] == "/data" and defaults["items"][1]["root"] == "y"
    with pytest.raises(ConfigError, match="a.c"):
        apply_overrides(defaults, ["a.c=2"])
    with pytest.raises(ConfigError, match="index"):
        apply_overrides(defaults, ["items.5.root=z"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(defaults, ["a.b"])


def test_lr_schedule_shapes():
    kw = dict(total=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, name="linear", **kw) == pytest.approx(0.1)
    assert lr_factor(9, name="cosine", **kw) == pytest.approx(1.0)
    assert lr_factor(100, name="linear", **kw) == pytest.approx(0.1)
    assert lr_factor(55, name="cosine", **kw) == pytest.approx(0.55)
    assert lr_factor(50, name="constant", **kw) == 1.0
    with pytest.raises(ConfigError):
        lr_factor(50, name="step", **kw)


def test_rng_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    save_checkpoint(tmp_path, {"step": 7, "rng": state}, {"seed": 0})
    loaded = torch.load(find_checkpoint(tmp_path) / "training_state.pt", weights_only=True)
    restore_rng(loaded["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[0] == again[0] and expected[1] == again[1] and torch.equal(expected[2], again[2])
    assert find_checkpoint(tmp_path).name == "step_000007"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetupError, match="no checkpoint"):
        find_checkpoint(tmp_path / "empty")
    with pytest.raises(SetupError, match="no such folder"):
        find_checkpoint(tmp_path / "absent")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_an_unreadable_training_checkpoint_is_a_setup_error(tmp_path, content):
    from training.common.checkpoint import STATE_NAME, load_checkpoint

    (tmp_path / STATE_NAME).write_bytes(content)
    with pytest.raises(SetupError, match="cannot be read"):
        load_checkpoint(tmp_path)


def test_checkpoints_keep_the_last_ones(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, {"step": step}, {}, keep_last=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last", "step_000002", "step_000003"]


def test_metrics_log_drops_rows_after_the_resumed_step_and_plots(tmp_path):
    log = MetricsLog(tmp_path / "train_log.csv")
    for step in range(1, 6):
        log.append({"step": step, "loss": 1.0 / step, "lr": 0.1})
    log.append({"step": 6, "loss": 0.1, "lr": 0.1, "loss_new": 2.0})  # a new column rewrites the header
    resumed = MetricsLog(tmp_path / "train_log.csv", keep_until=3)
    assert [int(r["step"]) for r in resumed.rows] == [1, 2, 3]
    assert "loss_new" in (tmp_path / "train_log.csv").read_text().splitlines()[0]
    png = plot_curves(tmp_path / "train_log.csv", None, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


EMBEDDED = sorted((CONFIGS / "embedded").glob("*.yaml"))


@pytest.mark.parametrize("path", EMBEDDED, ids=[p.stem for p in EMBEDDED])
def test_embedded_recipe_configs_load_strictly(path):
    """The shipped models' recipes (scripts/train_embedded.sh runs them) are valid for their trainers."""
    config = load_config(path, _defaults(path.stem))  # strict: an unknown key raises
    assert config["train"]["steps"] > 0 and config["output_dir"].startswith("data/runs/")
    assert path.stem in (CONFIGS.parents[1] / "scripts" / "train_embedded.sh").read_text()


EXPERIMENTS = sorted((CONFIGS / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_configs_load_strictly_and_name_a_valid_model(path):
    """Stages not (yet) in the recipe: valid for their trainer, and their model overrides make a valid model."""
    from trackgpt.config import SAM_SIZES, get_config

    config = load_config(path, _defaults(path.stem))  # strict: an unknown key raises
    assert config["train"]["steps"] > 0 and config["output_dir"].startswith("data/runs/")
    model = config["model"]
    if "size" in model:  # a SAM pre-training run
        assert model["size"] in SAM_SIZES
        return
    if path.stem.endswith("-namer"):  # starts from a trained model folder
        assert model["init_from"] and model["object_proposer_from"]
        return
    get_config(model["config"], **dict(model.get("overrides") or {}))  # raises ConfigError if it cannot work


def test_embedded_recipe_has_its_configs():
    assert {p.stem for p in EMBEDDED} == {
        "avs-gated", "avs-baseline", "avs-gated-more", "avs-baseline-more", "avs-gated-category",
        "avs-baseline-category", "avs-gated-category-strong", "avs-baseline-category-strong",
        "avs-gated-category-lr3", "avs-baseline-category-lr3", "avs-gated-category-lr3-more",
        "avs-baseline-category-lr3-more",
        "sam", "trackgpt-sam", "trackgpt-reader", "trackgpt-encoder",
        "trackgpt-vision", "trackgpt-vision-more", "trackgpt-vision-reader", "trackgpt-colour-reader",
        "trackgpt-proposer", "trackgpt-namer", "trackgpt-object-namer",
    }  # fmt: skip


def test_every_toy_path_the_tiny_configs_name_exists_after_toydata(tmp_path):
    """The tiny configs' headers and data sections name data/toy/... paths; `python -m training.common.toydata`
    (default --out data/toy) must write each of them, or a newcomer's smoke run fails on a missing file."""
    write_all(tmp_path / "toy")
    paths = set()
    for cfg in sorted(CONFIGS.glob("*-tiny*.yaml")):
        paths |= set(re.findall(r"data/toy/[\w./-]*\w", cfg.read_text()))
    assert "data/toy/avs/s4" in paths  # the AVS config documents the toy stand-in for the world
    missing = [p for p in sorted(paths) if not (tmp_path / "toy" / p.removeprefix("data/toy/")).exists()]
    assert not missing, f"toydata does not write {missing}"
