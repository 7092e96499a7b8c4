"""``training.trackgpt.train_namer``: the namer of a trained TrackGPT (``brain.naming: scene``) learns, the rest of
the model stays as it was, the export loads with its proposer, bad paths fail before training, the listings."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch

from perception_eval.worlds.instruction import InstructionWorldConfig, generate_instruction_world
from trackgpt import TrackGPT
from trackgpt.loading import load_model
from training.trackgpt import train_namer
from training.trackgpt.data import target_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A tiny world, a tiny trained-looking TrackGPT (with its LoRA) and a SAM state dict for its proposer."""
    root = tmp_path_factory.mktemp("namer")
    cfg = InstructionWorldConfig(width=96, height=72, frames_min=2, frames_max=3)
    generate_instruction_world(root / "world", seed=4, videos={"train": 6, "val": 2}, config=cfg, progress=False)
    model = TrackGPT.from_config("tiny", brain={"answer_template": "Sure, I track the {target}. <TK>, <PO>"})
    model.brain.add_lora()
    model.save_pretrained(root / "model")
    sam = {k: v.clone() + 0.01 for k, v in model.perception.sam.state_dict().items()}
    torch.save(sam, root / "sam.pth")
    return root


def _argv(out, start, *extra):
    items = [
        f"output_dir={out}", f"data.root={start / 'world'}", f"model.init_from={start / 'model'}",
        f"model.object_proposer_from={start / 'sam.pth'}", "progress=false", "train.batch_size=4",
        "train.log_every=1", "optim.lr=0.01", "schedule.warmup_steps=0", "data.min_pixels=4", "eval.max_items=3",
        *extra,
    ]  # fmt: skip
    return [arg for item in items for arg in ("--set", item)]


def test_the_namer_learns_and_the_rest_of_the_model_stays(start, tmp_path):
    out = tmp_path / "run"
    assert train_namer.main(_argv(out, start, "train.steps=12")) == 0
    with open(out / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    text = [float(r["loss_text"]) for r in rows]
    names = [float(r["loss_colour"]) + float(r["loss_category"]) for r in rows]
    assert np.mean(text[-3:]) < np.mean(text[:3]) and np.mean(names[-3:]) < np.mean(names[:3]), (text, names)
    with open(out / "eval_log.csv") as handle:
        row = list(csv.DictReader(handle))[-1]
    assert all(0.0 <= float(row[k]) <= 1.0 for k in ("named", "named_labels", "colour_acc", "category_acc"))

    trained, before = load_model(str(out / "model")), load_model(str(start / "model"))
    assert trained.config.brain.naming == "scene" and trained.brain.has_namer
    assert "red" in trained.config.brain.namer_colours or "blue" in trained.config.brain.namer_colours
    sam = torch.load(start / "sam.pth", weights_only=True)
    for name, p in trained.perception.object_proposer.state_dict().items():
        torch.testing.assert_close(p, sam[name].to(p.dtype))  # the proposer is the given SAM's decoder
    for (name, a), b in zip(trained.perception.sam.state_dict().items(), before.perception.sam.state_dict().values(),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, msg=name)  # the perception, phi and the brain's LoRA are untouched
    for a, b in zip(trained.projection.parameters(), before.projection.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    mine = dict(before.brain.model.named_parameters())
    lora_b = [p for name, p in trained.brain.model.named_parameters() if ".lora_B.namer." in name]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # LoRA's B starts at zero: the namer learnt
    for name, p in trained.brain.model.named_parameters():
        if ".default." in name:
            torch.testing.assert_close(p, mine[name])
    frame = np.zeros((72, 96, 3), np.uint8)
    assert trained.reason(frame, "track the red ball").answer.startswith("Sure, I track the ")


def test_listings_drop_only_other_objects_and_samples_carry_labelled_crops(start):
    world = train_namer.NamerWorld(start / "world", "train", options={**train_namer.DEFAULTS["data"], "min_pixels": 4,
                                                                      "drop_prob": 1.0}, seed=0)  # fmt: skip
    for index, (frame_index, expression) in enumerate(world.items):
        full = world.listing(index, None)
        alone = world.listing(index, np.random.default_rng(0))  # every other object dropped
        name = target_name(expression.extra["colour"], expression.extra["category"])
        assert alone == "\n".join(f"{head}: {name}." for head in ("Left to right", "Top to bottom", "Largest first"))
        assert len(full.split("\n")[0].split(",")) == len(world.frames[frame_index].objects)
    sample = world[0]
    colours, categories = world.vocabulary()
    assert len(sample.crops) == len(sample.colours) == len(sample.categories) > 0
    assert set(sample.colours) <= set(colours) and set(sample.categories) <= set(categories)
    assert sample.name.split()[-1] in categories


def test_a_second_stage_trains_the_object_namer_alone(start, tmp_path):
    first = tmp_path / "first"
    assert train_namer.main(_argv(first, start, "train.steps=2", "loss.lambda_names=0.0")) == 0
    before = load_model(str(first / "model"))
    second = tmp_path / "second"
    argv = _argv(second, start, "train.steps=4", "loss.lambda_text=0.0", f"model.init_from={first / 'model'}")
    assert train_namer.main(argv) == 0
    after = load_model(str(second / "model"))
    mine = dict(before.brain.model.named_parameters())
    adapter = [(name, p) for name, p in after.brain.model.named_parameters() if ".namer." in name]
    assert adapter
    for name, p in adapter:  # the namer adapter went on unchanged
        torch.testing.assert_close(p, mine[name])
    changed = [not torch.equal(a, b) for a, b in zip(after.object_namer.parameters(), before.object_namer.parameters(),
                                                    strict=True)]  # fmt: skip
    assert any(changed)
    with open(second / "train_log.csv") as handle:
        assert "loss_text" not in next(csv.DictReader(handle))
    assert train_namer.main(_argv(tmp_path / "none", start, "loss.lambda_text=0.0", "loss.lambda_names=0.0")) == 2


def test_scrambled_crops_keep_the_shape_and_change_the_colours():
    crops = np.zeros((2, 4, 16, 16), np.float32)
    crops[:, 3, 4:12, 4:12] = 1.0
    crops[:, 0, 4:12, 4:12], crops[:, 1, 4:12, 4:12], crops[:, 2, 4:12, 4:12] = 1.0, -1.0, 0.5
    out = train_namer.scramble_colours(crops, np.random.default_rng(3))
    assert np.array_equal(out[:, 3], crops[:, 3]) and not out[:, :3, crops[0, 3] == 0].any()
    for k in range(2):
        inside, was = out[k, :3, 8, 8], crops[k, :3, 8, 8]
        assert not np.allclose(inside, was)  # a new colour
        # each channel is one of the old ones times a gain in [0.6, 1.4], each old one used once
        assert any(all(0.6 <= inside[c] / was[j] <= 1.4 for c, j in enumerate(order))
                   for order in itertools.permutations(range(3)))  # fmt: skip
    assert np.array_equal(crops[0, 0, 8, 8], 1.0)  # the input is left alone


@pytest.mark.parametrize("key", ["model.init_from", "model.object_proposer_from", "data.root"])
def test_missing_paths_fail_before_training(start, tmp_path, capsys, key):
    argv = [*_argv(tmp_path / "run", start, "train.steps=1"), "--set", f"{key}={tmp_path / 'missing'}"]
    assert train_namer.main(argv) == 2
    assert "missing" in capsys.readouterr().err
