"""``brain.vision_source = "objects"``: one visual token per object of the frame (:mod:`trackgpt.objects`): the
descriptors (masked crop, pooled embedding, box; left to right), the object encoder standing in for the vision tower,
SAM's "segment everything" proposer, the model's save / load and brain process, and refused configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackgpt.brain_process import ProcessBrain
from trackgpt.config import SAM_SIZES, get_config
from trackgpt.errors import BrainError, ConfigError
from trackgpt.loading import load_model
from trackgpt.model import TrackGPT
from trackgpt.objects import CROP, GEOMETRY, ObjectProposer, ObjectTokens, describe_objects, index_mask_objects

WIDTH = SAM_SIZES["tiny"].prompt_embed_dim
OBJECT_BRAIN = {"vision_source": "objects", "train_vision_projector": True, "train_vision_tower": True, "vision": {
    "hidden_size": WIDTH, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
    "image_size": 32, "patch_size": 16}}  # 2 x 2 = 4 slots


def _scene():
    """A 48 x 64 frame with a red box on the right, a green one on the left and a tiny blue one, and its index
    mask (1 red, 2 green, 3 blue, 255 void)."""
    frame = np.full((48, 64, 3), 128, np.uint8)
    ids = np.zeros((48, 64), np.uint8)
    frame[10:30, 40:60] = (255, 0, 0)
    ids[10:30, 40:60] = 1
    frame[5:15, 4:14] = (0, 255, 0)
    ids[5:15, 4:14] = 2
    frame[40:43, 30:33] = (0, 0, 255)
    ids[40:43, 30:33] = 3
    ids[0, :] = 255
    return frame, ids


FRAME, IDS = _scene()


def test_index_mask_objects_keep_the_objects_large_enough():
    objects = index_mask_objects(IDS, min_pixels=30)
    assert [int(m.sum()) for m in objects] == [400, 100]  # the 9-pixel blue one and void are left out


def test_descriptors_go_left_to_right_with_crop_embedding_and_box():
    masks = index_mask_objects(IDS, min_pixels=1)
    emb = torch.zeros(1, WIDTH, 4, 4)
    emb[0, 0, :, 3] = 1.0  # channel 0 is 1 in the rightmost column of 16-pixel cells (x 48..63)
    out = describe_objects(FRAME, masks, emb, (48, 64), img_size=64, slots=4)
    assert out.shape == (4, 4 * CROP * CROP + WIDTH + GEOMETRY)
    geometry = out[:, -GEOMETRY:]
    assert geometry[:3, -1].tolist() == [1.0, 1.0, 1.0] and not out[3].any()  # three objects, one empty slot
    xs = geometry[:3, 0].tolist()
    assert xs == sorted(xs) and xs[0] == pytest.approx(8.5 / 64)  # green (left) first
    torch.testing.assert_close(geometry[2, :4], torch.tensor([49.5 / 64, 19.5 / 48, 20 / 64, 20 / 48]))
    crops = out[:, : 4 * CROP * CROP].reshape(4, 4, CROP, CROP)
    red = crops[2]
    inside = red[3] > 0.99  # cells wholly inside the mask (the edge ones blend with the background)
    assert inside.any() and (~inside).any()
    assert (red[0][inside] > 1.5).all() and (red[1][inside] < -1.5).all()  # red in, normalised
    assert (red[:3, ~(red[3] > 0)] == 0).all()  # the grey background is blanked
    pooled = out[:, 4 * CROP * CROP : 4 * CROP * CROP + WIDTH]
    # the red box (x 40..59) has 12 of its 20 columns in that cell; the green one none
    assert pooled[2, 0] == pytest.approx(0.6) and pooled[0, 0] == pytest.approx(0.0)


def test_more_objects_than_slots_keep_the_largest():
    masks = index_mask_objects(IDS, min_pixels=1)
    out = describe_objects(FRAME, masks, torch.zeros(1, WIDTH, 4, 4), (48, 64), img_size=64, slots=2)
    areas = (out[:, -2] ** 2 * 48 * 64).round().tolist()
    assert areas == [100.0, 400.0]  # green and red, left to right; the 9-pixel blue box dropped


def test_object_tokens_give_one_token_per_slot_and_a_learned_empty_one():
    tokens = ObjectTokens(slots=4, channels=WIDTH, hidden=8)
    with torch.no_grad():
        tokens.empty.fill_(0.5)
    masks = index_mask_objects(IDS, min_pixels=1)
    x = describe_objects(FRAME, masks, torch.randn(1, WIDTH, 4, 4), (48, 64), img_size=64, slots=4)[None]
    hidden = tokens(x).hidden_states[-1]
    assert hidden.shape == (1, 5, 8) and not hidden[0, 0].any()  # zero class token first
    torch.testing.assert_close(hidden[0, 4], torch.full((8,), 0.5))  # the empty slot
    assert not torch.allclose(hidden[0, 1], hidden[0, 2])
    with pytest.raises(ValueError, match="B x 4 x"):
        tokens(x[:, :3])


def test_the_proposer_keeps_separate_objects_of_the_allowed_size_best_first():
    """SAM's "segment everything" filter: each of the 16 point prompts' masks (set here through a stand-in decoder
    that returns the prompt's number as its logits, and a postprocess that maps the number to a mask) is kept when
    its IoU estimate passes min_iou, it is neither tiny nor most of the frame, and no better kept mask overlaps it."""
    from trackgpt.decoder import DecoderOutput

    red, green = IDS == 1, IDS == 2
    shifted = np.roll(red, 2, axis=1)  # overlaps red by IoU 0.82
    other = np.zeros_like(red)
    other[30:40, 10:20] = True
    tiny = IDS == 3
    huge = np.ones_like(red)
    # (mask, SAM's IoU estimate) per prompt
    table = [(red, 0.9), (shifted, 0.8), (green, 0.75), (tiny, 0.95), (huge, 0.99), (other, 0.5)]
    table += [(shifted, 0.71)] * (16 - len(table))

    class Decoder(torch.nn.Module):
        iou_token = torch.nn.Embedding(1, WIDTH)

        def forward(self, *, image_embeddings, **kwargs):
            n = image_embeddings.shape[0]
            number = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
            iou = torch.tensor([[v] for _, v in table], dtype=torch.float32)
            return DecoderOutput(number, iou, torch.zeros(n, WIDTH))

    def postprocess(logits, input_size, original_size):
        masks = np.stack([table[int(v)][0] for v in logits[:, 0, 0, 0]])
        return torch.from_numpy(np.where(masks, 1.0, -1.0))[:, None]

    proposer = ObjectProposer(SAM_SIZES["tiny"], grid=4, min_iou=0.7, min_pixels=30, max_share=0.4, overlap=0.5)
    proposer.mask_decoder = Decoder()
    emb = torch.zeros(1, WIDTH, 4, 4)
    masks = proposer(emb, (48, 64), (48, 64), postprocess)
    assert len(masks) == 2 and np.array_equal(masks[0], red) and np.array_equal(masks[1], green)
    proposer.min_iou = 0.95  # only the tiny and the huge mask pass, and neither is an object
    assert proposer(emb, (48, 64), (48, 64), postprocess) == []


@pytest.fixture(scope="module")
def model():
    return TrackGPT.from_config("tiny", brain=OBJECT_BRAIN)


def test_the_brain_reads_the_given_or_the_proposed_objects(model):
    seen = []
    tower = model.brain.submodule("vision_tower")
    handle = tower.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    try:
        answer = model.reason(FRAME, "track the red box")
    finally:
        handle.remove()
    assert isinstance(tower, ObjectTokens) and tower.slots == model.brain.num_image_tokens == 4
    assert seen and seen[0].shape == (1, 4, 4 * CROP * CROP + WIDTH + GEOMETRY)
    assert answer.referring_query.shape == (1, WIDTH)
    given = model.brain.preprocess_image(FRAME, objects=IDS)
    assert given[0, :, -1].tolist() == [1.0, 1.0, 0.0, 0.0]  # the two objects of 30 pixels or more
    proposed = model.brain.preprocess_image(FRAME)
    assert proposed.shape == given.shape


def test_save_load_and_the_brain_process_keep_the_object_encoder_and_the_proposer(model, tmp_path):
    with torch.no_grad():  # weights unlike a fresh model's, so the round trip has something to keep
        for p in [*model.brain.submodule("vision_tower").parameters(), *model.perception.object_proposer.parameters()]:
            p.add_(0.03)
    model.save_pretrained(tmp_path / "model")
    loaded = load_model(str(tmp_path / "model"))
    for a, b in zip(loaded.perception.object_proposer.parameters(), model.perception.object_proposer.parameters(),
                    strict=True):
        torch.testing.assert_close(a, b)
    here = model.reason(FRAME, "track the red box")
    again = loaded.reason(FRAME, "track the red box")
    assert again.answer == here.answer
    torch.testing.assert_close(again.referring_query, here.referring_query)
    with ProcessBrain(str(tmp_path / "model"), threads=1) as brain:  # the child keeps the encoder and the proposer
        there = brain.reason(FRAME, "track the red box")
    assert there.answer == here.answer
    torch.testing.assert_close(there.referring_query, here.referring_query, atol=1e-5, rtol=1e-5)


def test_a_tower_eyed_model_switched_to_objects_starts_with_a_fresh_proposer(tmp_path):
    tower = TrackGPT.from_config("tiny", brain={"train_vision_projector": True, "train_vision_tower": True})
    tower.save_pretrained(tmp_path / "tower")
    switched = load_model(str(tmp_path / "tower"), **OBJECT_BRAIN)
    fresh = TrackGPT.from_config("tiny", brain=OBJECT_BRAIN)
    for a, b in zip(switched.perception.object_proposer.parameters(), fresh.perception.object_proposer.parameters(),
                    strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(switched.perception.sam.parameters(), tower.perception.sam.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_brain_without_its_object_reader_says_so(model):
    brain = model.brain
    reader, brain._object_reader = brain._object_reader, None
    try:
        with pytest.raises(BrainError, match="vision_source 'objects'.*none is attached"):
            brain.preprocess_image(FRAME)
    finally:
        brain._object_reader = reader


@pytest.mark.parametrize(
    "brain, message",
    [
        ({**OBJECT_BRAIN, "vision": {**OBJECT_BRAIN["vision"], "hidden_size": WIDTH * 2}}, "must be the SAM embedding"),
        ({**OBJECT_BRAIN, "train_vision_tower": False}, "trains its object encoder"),
    ],
)
def test_object_configurations_that_cannot_work_are_refused(brain, message):
    with pytest.raises(ConfigError, match=message):
        get_config("tiny", brain=brain)


def test_objects_given_replaces_the_proposed_objects_while_open(model):
    seen = []
    original = model.brain._object_reader
    model.brain.attach_object_reader(lambda frame, objects=None: seen.append(original(frame, objects)) or seen[-1])
    try:
        with model.objects_given(IDS):
            model.reason(FRAME, "track the red box")
        model.reason(FRAME, "track the red box")
    finally:
        model.brain.attach_object_reader(original)
    torch.testing.assert_close(seen[0], model.brain.preprocess_image(FRAME, objects=IDS).float())
    assert not torch.equal(seen[0], seen[-1])  # after the block: the proposer's objects again
    with pytest.raises(BrainError, match="neither sees nor names"), TrackGPT.from_config("tiny").objects_given(IDS):
        pass
