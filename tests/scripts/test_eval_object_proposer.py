"""``scripts/eval_object_proposer.py``: recall, precision and proposals per frame of a model's object proposer on a
generated world, scored against the world's own objects; a model without a proposer is refused with exit 2."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import load_script

from perception_eval.datasets import InsTrack
from perception_eval.worlds.instruction import InstructionWorldConfig, generate_instruction_world
from trackgpt.config import SAM_SIZES
from trackgpt.model import TrackGPT
from trackgpt.objects import index_mask_objects
from trackgpt.sam import build_sam

WIDTH = SAM_SIZES["tiny"].prompt_embed_dim
OBJECT_BRAIN = {"vision_source": "objects", "train_vision_projector": True, "train_vision_tower": True, "vision": {
    "hidden_size": WIDTH, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
    "image_size": 32, "patch_size": 16}}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("proposer") / "world"
    generate_instruction_world(root, seed=4, videos={"train": 1, "val": 3, "test": 1},
                               config=InstructionWorldConfig(frames_min=2, frames_max=2), workers=1, progress=False)
    return root


class Oracle:
    """A perception whose proposer returns the world's objects of the frame and one junk mask."""

    def __init__(self, world):
        self.truth = {}
        for video in InsTrack(world, "val", require_masks=True):
            self.truth[video.load_frame(0).tobytes()] = index_mask_objects(video.load_mask(0), min_pixels=30)
        self.transform = SimpleNamespace(postprocess=None)
        self.object_proposer = self.propose

    def encode_frame(self, frame):
        return SimpleNamespace(embeddings=frame, input_size=frame.shape[:2], original_size=frame.shape[:2])

    def propose(self, frame, input_size, original_size, postprocess):
        junk = np.zeros(frame.shape[:2], bool)
        junk[:3, :3] = True
        return [*self.truth[frame.tobytes()], junk]


def test_a_proposer_that_finds_every_object_scores_full_recall(world):
    module = load_script("eval_object_proposer")
    oracle = Oracle(world)
    res = module.evaluate_proposer(SimpleNamespace(perception=oracle), world, "val")
    objects = sum(len(v) for v in oracle.truth.values())
    assert res["frames"] == 3 and res["objects"] == objects > 0
    assert res["recall@0.5"] == res["recall@0.75"] == res["mean_best_iou"] == 1.0
    assert res["precision@0.5"] == pytest.approx(objects / (objects + 3))  # one junk proposal per frame
    assert res["proposals_per_frame"] == pytest.approx((objects + 3) / 3)


def test_the_script_scores_a_saved_model_or_a_sam_state_dict_and_refuses_a_model_without_a_proposer(world, tmp_path,
                                                                                                    capsys):
    module = load_script("eval_object_proposer")
    TrackGPT.from_config("tiny", brain=OBJECT_BRAIN).save_pretrained(tmp_path / "objects")
    TrackGPT.from_config("tiny").save_pretrained(tmp_path / "tower")
    torch.save(build_sam(SAM_SIZES["tiny"]).state_dict(), tmp_path / "sam.pth")
    common = ["--world", str(world), "--no-progress", "--threads", "1"]
    assert module.main([str(tmp_path / "objects"), *common, "--json", str(tmp_path / "a.json")]) == 0
    res = json.loads((tmp_path / "a.json").read_text())
    assert res["frames"] == 3 and 0.0 <= res["recall@0.5"] <= 1.0 and res["ms_per_frame"] > 0
    assert module.main([str(tmp_path / "tower"), *common, "--from-sam", str(tmp_path / "sam.pth"), "--grid", "2",
                        "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["grid"] == 2
    capsys.readouterr()
    assert module.main([str(tmp_path / "tower"), *common]) == 2
    assert "vision_source is not 'objects'" in capsys.readouterr().err
