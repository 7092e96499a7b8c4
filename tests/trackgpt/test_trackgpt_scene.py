"""``brain.naming = "scene"`` (:mod:`trackgpt.scene`): the listing of the frame's objects, the object namer, the
namer's own LoRA adapter beside the brain's, the answer teacher-forced with the chosen name, save / load and the
brain process, and refused configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackgpt.brain_process import ProcessBrain
from trackgpt.config import get_config
from trackgpt.errors import BrainError, ConfigError
from trackgpt.loading import load_model
from trackgpt.model import TrackGPT
from trackgpt.objects import CROP, index_mask_objects, object_crop
from trackgpt.scene import ObjectNamer, SceneObject, colour_statistics, namer_prompt, scene_objects, scene_text

COLOURS, CATEGORIES = ("red", "green", "blue"), ("box", "ball")
SCENE_BRAIN = {"naming": "scene", "answer_template": "Sure, I track the {target}. <TK>, <PO>",
               "namer_colours": COLOURS, "namer_categories": CATEGORIES, "namer_lora_r": 2}  # fmt: skip


def _frame():
    """A 48 x 64 frame: a big red box on the right, a green one top left, a small blue one at the bottom; its index
    mask (1 red, 2 green, 3 blue)."""
    frame = np.full((48, 64, 3), 128, np.uint8)
    ids = np.zeros((48, 64), np.uint8)
    for i, (y0, y1, x0, x1, rgb) in enumerate([(10, 30, 40, 60, (255, 0, 0)), (2, 12, 4, 14, (0, 255, 0)),
                                               (38, 46, 24, 32, (0, 0, 255))], 1):  # fmt: skip
        frame[y0:y1, x0:x1] = rgb
        ids[y0:y1, x0:x1] = i
    return frame, ids


FRAME, IDS = _frame()


def test_the_listing_orders_the_objects_three_ways():
    objects = scene_objects(index_mask_objects(IDS, min_pixels=1), [("red", "box"), ("green", "box"), ("blue", "box")])
    assert objects[0] == SceneObject("red", "box", 49.5 / 64, 19.5 / 48, 400 / (48 * 64))
    assert scene_text(objects).split("\n") == [
        "Left to right: green box, blue box, red box.",
        "Top to bottom: green box, red box, blue box.",
        "Largest first: red box, green box, blue box.",
    ]
    assert scene_text([]) == "No objects."
    with pytest.raises(ValueError, match="2 masks but 1 names"):
        scene_objects([IDS == 1, IDS == 2], [("red", "box")])
    prompt = namer_prompt("Left to right: red box.", "the box")
    assert "Left to right: red box.\nInstruction: the box\n" in prompt and prompt.endswith("assistant\n")


def test_colour_statistics_read_the_colours_under_the_mask_whatever_the_shape():
    square, bar = np.zeros((48, 64), bool), np.zeros((48, 64), bool)
    square[10:20, 10:20], bar[30:35, 20:40] = True, True  # 100 pixels each
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[square], frame[bar] = (200, 40, 40), (200, 40, 40)
    stats = colour_statistics(torch.from_numpy(np.stack([object_crop(frame, square), object_crop(frame, bar)])))
    assert stats.shape == (2, 15)
    red = (200 / 255 - 0.5) / 0.25
    # the crops' mask edges blend with the blanked background, so the medians, not the means, are the colour
    torch.testing.assert_close(stats[:, 6 + 3 : 6 + 6], torch.tensor([[red, -1.373, -1.373]] * 2), atol=0.01, rtol=0)
    assert (stats[:, 9] > stats[:, 0] - 1e-6).all()  # the median of red is at least its mean (edges pull it down)


def test_the_object_namer_learns_colours_from_the_crops():
    torch.manual_seed(0)
    namer = ObjectNamer(COLOURS, CATEGORIES, width=8)
    masks = index_mask_objects(IDS, min_pixels=1)
    crops = torch.from_numpy(np.stack([object_crop(FRAME, m) for m in masks]))
    assert crops.shape == (3, 4, CROP, CROP)
    want = torch.tensor([0, 1, 2])  # red, green, blue
    optimizer = torch.optim.Adam(namer.parameters(), lr=0.01)
    for _ in range(40):
        colour, _category = namer(crops)
        loss = torch.nn.functional.cross_entropy(colour, want)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    namer.eval()
    assert [name[0] for name in namer.name(FRAME, masks)] == ["red", "green", "blue"]
    assert all(name[1] in CATEGORIES for name in namer.name(FRAME, masks))
    assert namer.name(FRAME, []) == []
    with pytest.raises(ValueError, match="empty"):
        object_crop(FRAME, np.zeros((48, 64), bool))


@pytest.fixture(scope="module")
def model():
    model = TrackGPT.from_config("tiny", brain=SCENE_BRAIN)
    model.brain.add_lora()
    model.brain.add_namer()
    with torch.no_grad():  # a namer unlike the brain's own LoRA, and unlike a fresh one
        for name, p in model.brain.model.named_parameters():
            if ".namer." in name:
                p.add_(0.05 * torch.randn_like(p))
    return model


def test_the_answer_is_teacher_forced_with_the_name_the_namer_chose(model):
    name = model.name_target(FRAME, "track the red box")  # a random tiny brain's words
    here = model.reason(FRAME, "track the red box")
    forced = model.reason(FRAME, "track the red box", target=name)
    assert here.answer == forced.answer and here.answer.startswith("Sure, I track the ")
    torch.testing.assert_close(here.referring_query, forced.referring_query)
    torch.testing.assert_close(here.purport_query, forced.purport_query)
    other = model.reason(FRAME, "track the red box", target="name nobody chose")
    assert not torch.equal(other.referring_query, here.referring_query)


def test_the_namer_runs_its_own_adapter_and_puts_the_brains_back(model):
    brain = model.brain
    flags = {n: p.requires_grad for n, p in brain.model.named_parameters()}
    listing = model.scene(FRAME)
    name = brain.name_target(listing, "track the red box")
    assert {n: p.requires_grad for n, p in brain.model.named_parameters()} == flags
    assert brain.model.active_adapter == "default"
    ids = torch.tensor([brain.namer_example(listing, "track the red box", "red box")[0]])
    with torch.no_grad():
        plain = brain.model(input_ids=ids).logits
        with brain.namer_active():
            named = brain.model(input_ids=ids).logits
    assert not torch.allclose(plain, named)  # the namer's adapter changes what the language model says
    assert isinstance(name, str)


def test_given_objects_make_the_listing(model):
    with model.objects_given(IDS):
        listing = model.scene(FRAME)
    lines = listing.split("\n")
    assert len(lines) == 3 and all(line.count(",") == 2 for line in lines)  # the three objects of 30 pixels or more
    words = {w.strip(".,") for line in lines for w in line.split(":")[1].split()}
    assert words <= set(COLOURS) | set(CATEGORIES)


def test_save_load_and_the_brain_process_keep_the_namer(model, tmp_path):
    with torch.no_grad():
        for p in model.object_namer.parameters():
            p.add_(0.03)
    model.save_pretrained(tmp_path / "model")
    loaded = load_model(str(tmp_path / "model"))
    assert loaded.config.brain.naming == "scene" and loaded.brain.has_namer
    for a, b in zip(loaded.object_namer.parameters(), model.object_namer.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    mine = dict(model.brain.model.named_parameters())
    for name, p in loaded.brain.model.named_parameters():
        if ".namer." in name:
            torch.testing.assert_close(p, mine[name])
    perception = load_model(str(tmp_path / "model"), with_brain=False)  # what the node's parent process loads
    assert perception.brain is None and perception.object_namer is None
    for a, b in zip(perception.perception.parameters(), model.perception.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    here = model.reason(FRAME, "track the red box")
    again = loaded.reason(FRAME, "track the red box")
    assert again.answer == here.answer
    torch.testing.assert_close(again.referring_query, here.referring_query)
    with ProcessBrain(str(tmp_path / "model"), threads=1) as brain:
        there = brain.reason(FRAME, "track the red box")
    assert there.answer == here.answer
    torch.testing.assert_close(there.referring_query, here.referring_query, atol=1e-5, rtol=1e-5)


def test_a_model_switched_to_scene_naming_has_no_namer_until_trained(tmp_path):
    plain = TrackGPT.from_config("tiny")
    plain.brain.add_lora()
    plain.save_pretrained(tmp_path / "plain")
    switched = load_model(str(tmp_path / "plain"), **SCENE_BRAIN)
    assert switched.object_namer is not None and switched.perception.object_proposer is not None
    with pytest.raises(BrainError, match="needs a trained namer"):
        switched.reason(FRAME, "track the red box")
    bare = TrackGPT.from_config("tiny", brain=SCENE_BRAIN)
    with pytest.raises(BrainError, match="beside the brain's LoRA"):
        bare.brain.add_namer()
    with pytest.raises(BrainError, match="no object namer"):
        plain.scene(FRAME)


@pytest.mark.parametrize(
    "brain, message",
    [
        ({**SCENE_BRAIN, "answer_template": "Sure. <TK>, <PO>"}, "answer_template with '{target}'"),
        ({**SCENE_BRAIN, "namer_colours": ()}, "needs namer_colours and namer_categories"),
        ({**SCENE_BRAIN, "naming": "guess"}, "brain.naming 'guess' is not one of"),
    ],
)
def test_scene_configurations_that_cannot_work_are_refused(brain, message):
    with pytest.raises(ConfigError, match=message):
        get_config("tiny", brain=brain)
