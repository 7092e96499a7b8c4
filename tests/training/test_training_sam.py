"""SAM pre-training: the loss drops, the output is an official-format state dict TrackGPT starts from, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from perception_eval.worlds.instruction import InstructionWorldConfig, generate_instruction_world
from trackgpt import TrackGPT, get_config
from trackgpt.config import SAM_SIZES
from trackgpt.sam import SamParts, SamTransform, load_sam_checkpoint
from training.trackgpt import pretrain_sam
from training.trackgpt import train as tg_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam_world") / "world"
    cfg = InstructionWorldConfig(width=96, height=72, frames_min=4, frames_max=6)
    generate_instruction_world(root, seed=5, videos={"train": 4, "val": 2}, config=cfg, progress=False)
    return root


def _argv(out, root, *extra):
    items = [
        f"output_dir={out}",
        f"data.root={root}",
        "model.size=tiny",
        "progress=false",
        "train.batch_size=4",
        "train.log_every=1",
        "optim.lr=0.003",
        "schedule.warmup_steps=2",
        "data.min_area=4",
        "eval.max_items=4",
        *extra,
    ]
    return [arg for item in items for arg in ("--set", item)]


def _losses(out):
    with open(out / "train_log.csv") as handle:
        return [float(r["loss"]) for r in csv.DictReader(handle)]


def test_pretraining_lowers_the_loss_and_trackgpt_starts_from_its_state_dict(world, tmp_path):
    out = tmp_path / "sam"
    assert pretrain_sam.main(_argv(out, world, "train.steps=30")) == 0
    losses = _losses(out)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    with open(out / "eval_log.csv") as handle:
        row = list(csv.DictReader(handle))[-1]
    assert 0.0 <= float(row["mIoU_box"]) <= 1.0 and 0.0 <= float(row["mIoU_point"]) <= 1.0

    path = out / "model" / "sam.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert {k.split(".")[0] for k in state} == {"image_encoder", "prompt_encoder", "mask_decoder"}
    sam = SamParts(config=SAM_SIZES["tiny"])
    load_sam_checkpoint(sam, path)  # strict, like an official sam_vit_*.pth
    assert json.loads((out / "model" / "sam_config.json").read_text())["img_size"] == SAM_SIZES["tiny"].img_size

    # TrackGPT starts from it (sam.checkpoint); a trained encoder is saved in its folder, which references no file
    model = TrackGPT.from_config(get_config("tiny", sam={"checkpoint": str(path)}))
    key = "image_encoder.patch_embed.proj.weight"
    torch.testing.assert_close(model.perception.sam.state_dict()[key], state[key])
    ytvos = [{"name": "w", "type": "instrack", "root": str(world), "split": "train"}]
    tg = tmp_path / "tg"
    argv = [
        f"output_dir={tg}",
        "progress=false",
        "train.steps=2",
        "train.batch_size=2",
        f"data.datasets={ytvos!r}",
        "data.frames_per_clip=2",
        f"model.overrides={{sam: {{checkpoint: '{path}'}}}}",
        "model.train_image_encoder=true",
        "model.image_encoder_lr_scale=0.1",
    ]
    assert tg_train.main([arg for item in argv for arg in ("--set", item)]) == 0
    meta = json.loads((tg / "model" / "config.json").read_text())
    assert meta["image_encoder_saved"] is True and meta["config"]["sam"]["checkpoint"] is None
    saved = load_file(str(tg / "model" / "model.safetensors"))
    assert f"perception.sam.{key}" in saved
    assert not torch.equal(saved[f"perception.sam.{key}"].float(), state[key])  # the encoder was trained
    TrackGPT.from_pretrained(tg / "model")


def test_image_encoder_learning_rate_is_scaled(world):
    cfg = tg_train.DEFAULTS | {}
    cfg = {**cfg, "model": {**cfg["model"], "config": "tiny", "train_image_encoder": True}}
    cfg["model"]["image_encoder_lr_scale"] = 0.25
    cfg["data"] = {**cfg["data"], "datasets": [{"name": "w", "type": "instrack", "root": str(world), "split": "val"}]}
    task = tg_train.TrackGPTTask(cfg)
    task.setup()
    module = task.build_module()
    groups = task.param_groups(module)
    scaled = [g for g in groups if g.get("lr_scale") == 0.25]
    assert len(scaled) == 1
    encoder = {id(p) for p in module.model.perception.sam.image_encoder.parameters()}
    assert {id(p) for p in scaled[0]["params"]} == encoder


def test_prompts_come_from_the_mask(world):
    frames = pretrain_sam.ObjectFrames(
        world, "train", transform=SamTransform(config=SAM_SIZES["tiny"]), options=pretrain_sam.DEFAULTS["data"], seed=0
    )
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:40] = True
    valid = np.ones_like(mask)
    rng = np.random.default_rng(0)
    for _ in range(50):
        box, points, labels = frames.prompts(mask, valid, rng, noisy=False)
        np.testing.assert_array_equal(box, [20, 10, 40, 30])
        inside = mask[points[:, 1].astype(int), points[:, 0].astype(int)]
        assert labels[0] == 1
        np.testing.assert_array_equal(inside, labels == 1)
        noisy, _, _ = frames.prompts(mask, valid, rng, noisy=True)
        assert np.all(noisy >= 0) and np.all(noisy <= 64) and np.all(noisy[2:] > noisy[:2])
    sample = frames[7]
    assert sample.image.shape == (3, 64, 64) and sample.mask.any() and sample.mask[sample.valid].any()
    assert frames[7].box.tolist() == sample.box.tolist()  # a function of the sample number


def test_bad_paths_and_corrupt_init_fail_before_training(world, tmp_path, capsys):
    assert pretrain_sam.main(_argv(tmp_path / "a", tmp_path / "nowhere", "train.steps=1")) == 2
    assert "nowhere" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert pretrain_sam.main(_argv(tmp_path / "b", world, "train.steps=1", f"model.init_from={bad}")) == 2
    assert "bad.pth" in capsys.readouterr().err
    assert pretrain_sam.main(_argv(tmp_path / "c", world, "train.steps=1", "model.size=huge")) == 2
    assert "huge" in capsys.readouterr().err


def test_a_frozen_image_encoder_stays_as_it_started_while_the_decoder_learns(world, tmp_path):
    start = tmp_path / "start.pth"
    torch.manual_seed(2)
    torch.save(SamParts(config=SAM_SIZES["tiny"]).state_dict(), start)
    out = tmp_path / "proposer"
    argv = _argv(out, world, "train.steps=3", f"model.init_from={start}", "model.train_image_encoder=false")
    assert pretrain_sam.main(argv) == 0
    before = torch.load(start, map_location="cpu", weights_only=True)
    after = torch.load(out / "model" / "sam.pth", map_location="cpu", weights_only=True)
    encoder = [k for k in before if k.startswith("image_encoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("mask_decoder."))
