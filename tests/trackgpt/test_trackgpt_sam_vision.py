"""``brain.vision_source = "sam"``: the brain sees the frame through the perception's SAM image encoder (its
embedding pooled to the brain's token grid, through the LLaVA projector), in process, after a save and load, and in
the brain process; configurations that cannot work are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trackgpt.brain_process import ProcessBrain
from trackgpt.config import SAM_SIZES, get_config
from trackgpt.errors import BrainError, ConfigError
from trackgpt.loading import load_model
from trackgpt.model import TrackGPT

WIDTH = SAM_SIZES["tiny"].prompt_embed_dim
SAM_BRAIN = {"vision_source": "sam", "train_vision_projector": True, "vision": {
    "hidden_size": WIDTH, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
    "image_size": 32, "patch_size": 16}}  # a 2 x 2 token grid
FRAME = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    return TrackGPT.from_config("tiny", brain=SAM_BRAIN)


def _projector(model):
    return model.brain.submodule("multi_modal_projector")


def test_the_brain_reads_the_pooled_sam_embedding(model):
    seen = []
    handle = _projector(model).register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    try:
        answer = model.reason(FRAME, "track the red ball")
    finally:
        handle.remove()
    emb = model.encode_frame(FRAME).embeddings
    expected = F.adaptive_avg_pool2d(emb, 2).flatten(2).transpose(1, 2)  # 1 x 4 x C
    assert model.brain.num_image_tokens == 4 and seen
    torch.testing.assert_close(seen[0], expected.to(seen[0].dtype))
    assert answer.referring_query.shape == (1, WIDTH)
    assert not any("vision_tower" in name for name, _ in model.brain.named_parameters())  # no CLIP tower left


def test_the_brain_follows_the_encoder_it_shares_with_the_perception(model):
    before = model.reason(FRAME, "track the red ball").referring_query
    neck = model.perception.sam.image_encoder.neck[0].weight
    saved = neck.detach().clone()
    try:
        with torch.no_grad():
            neck.mul_(-1.5)
        after = model.reason(FRAME, "track the red ball").referring_query
    finally:
        with torch.no_grad():
            neck.copy_(saved)
    assert not torch.allclose(before, after)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    with torch.no_grad():  # a projector unlike a fresh one, so the round trip has something to keep
        for p in _projector(model).parameters():
            p.add_(0.05)
    folder = tmp_path_factory.mktemp("sam_brain") / "model"
    model.save_pretrained(folder)
    return folder


def test_save_load_and_the_brain_process_give_the_same_queries(model, saved):
    here = model.reason(FRAME, "track the red ball")
    loaded = load_model(str(saved)).reason(FRAME, "track the red ball")
    assert loaded.answer == here.answer
    torch.testing.assert_close(loaded.referring_query, here.referring_query)
    with ProcessBrain(str(saved), threads=1) as brain:  # the child keeps the SAM encoder the brain looks through
        there = brain.reason(FRAME, "track the red ball")
    assert there.answer == here.answer
    torch.testing.assert_close(there.referring_query, here.referring_query, atol=1e-5, rtol=1e-5)


def test_a_trained_model_switched_to_sam_vision_keeps_all_but_its_eyes(tmp_path):
    """Loading a tower-eyed folder with vision_source 'sam' (how a trained model starts learning to see through its
    SAM encoder): perception, phi and LoRA as saved, the projector fresh (the saved one reads another width)."""
    tower = TrackGPT.from_config("tiny", brain={"train_vision_projector": True, "train_vision_tower": True})
    with torch.no_grad():
        for p in [*tower.projection.parameters(), *tower.perception.parameters()]:
            p.add_(0.01)
    tower.save_pretrained(tmp_path / "tower")
    switched = load_model(str(tmp_path / "tower"), **{**SAM_BRAIN, "train_vision_tower": False})
    fresh = TrackGPT.from_config("tiny", brain=SAM_BRAIN)
    for a, b in zip([*switched.projection.parameters(), *switched.perception.parameters()],
                    [*tower.projection.parameters(), *tower.perception.parameters()], strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(_projector(switched).parameters(), _projector(fresh).parameters(), strict=True):
        torch.testing.assert_close(a, b)  # seeded start, not the saved 32-wide tower's projector
    assert switched.reason(FRAME, "track the red ball").referring_query.shape == (1, WIDTH)


def test_a_brain_without_its_encoder_says_so(model):
    alone = model.brain
    encoder, alone._image_encoder = alone._image_encoder, None
    try:
        with pytest.raises(BrainError, match="vision_source 'sam'.*none is attached"):
            alone.preprocess_image(FRAME)
    finally:
        alone._image_encoder = encoder


@pytest.mark.parametrize(
    "brain, message",
    [
        ({**SAM_BRAIN, "vision": {**SAM_BRAIN["vision"], "hidden_size": WIDTH * 2}}, "must be the SAM embedding"),
        ({**SAM_BRAIN, "train_vision_tower": True}, "no vision tower to train"),
        ({"vision_source": "clip"}, "vision_source 'clip' is not one of"),
    ],
)
def test_configurations_that_cannot_work_are_refused(brain, message):
    with pytest.raises(ConfigError, match=message):
        get_config("tiny", brain=brain)
