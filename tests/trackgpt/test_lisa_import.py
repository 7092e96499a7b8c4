"""The LISA importer reproduces LISA's own chat.py run (fixture written by upstream's code, see
tests/trackgpt/fixtures/lisa/README.md): tokenizer ids, greedy answer ids, the [SEG] state and the mask logits."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from trackgpt.errors import BrainError, CheckpointError
from trackgpt.lisa import import_lisa
from trackgpt.lisa_tokenizer import LisaTokenizer
from trackgpt.loading import load_model

FIXTURE = Path(__file__).parent / "fixtures" / "lisa"
INSTRUCTION = "Can you segment the thing I could cut bread with?"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def io():
    return load_file(str(FIXTURE / "io.safetensors"))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    dst = tmp_path_factory.mktemp("lisa") / "model"
    import_lisa(FIXTURE / "lisa_tiny", FIXTURE / "clip_tiny", dst, precision="fp32")
    return dst


def test_tokenizer_reproduces_transformers_4_31():
    ref = json.loads((FIXTURE / "tokenizer_reference.json").read_text())
    tok = LisaTokenizer.from_folder(FIXTURE / "lisa_tiny")
    assert len(tok) == ref["vocab"]["len(tokenizer)"]
    for entry in ref["strings"]:
        assert tok(entry["text"]).input_ids == entry["ids"], entry["text"]
        assert tok(entry["text"], add_special_tokens=False).input_ids == entry["ids_no_special"], entry["text"]
        assert tok.decode(entry["ids"]) == entry["decode"], entry["text"]
        assert tok.decode(entry["ids"], skip_special_tokens=True) == entry["decode_skip_special"], entry["text"]
    answer = ref["chat_answer"]
    assert tok.decode(answer["generated_ids"]) == answer["decode_generated"]
    # the prompt with <image>: LLaVA's tokenizer_image_token (the sentinel -200 is a real token id here)
    tok.add_tokens(["<image>"])
    image_id = tok.convert_tokens_to_ids("<image>")
    want = [image_id if i == -200 else i for i in ref["chat_prompt"]["ids"]]
    assert tok(ref["chat_prompt"]["text"]).input_ids == want


def test_import_reproduces_lisas_answer_state_and_mask(imported, io):
    model = load_model(str(imported))
    brain = model.brain
    assert model.config.brain.style == "lisa" and model.config.purport_source == "iou"
    image = io["image"].numpy()
    # the prompt ids (image token expanded to its 256 features' positions)
    ids = brain.prompt_ids(INSTRUCTION)
    prompt = io["prompt_ids"].tolist()
    at = prompt.index(-200)
    assert ids[:at] == prompt[:at] and ids[at + brain.num_image_tokens:] == prompt[at + 1:]
    # CLIP input
    pixels = brain.preprocess_image(image)
    assert (pixels[0] - io["images_clip"]).abs().max() < 1e-5
    # greedy answer: the same ids, the same text as chat.py prints it
    answer = brain.answer(image, INSTRUCTION)
    generated = io["output_ids"][len(prompt):].tolist()
    assert answer.token_ids == generated
    assert answer.answer == "Sure, it is [SEG] ."
    # the state before the first [SEG] and what phi makes of it
    assert (answer.track_state[0] - io["seg_hidden"]).abs().max() < TOLERANCE
    reasoning = model.reason(image, INSTRUCTION)
    assert (reasoning.referring_query[0] - io["seg_embedding"]).abs().max() < TOLERANCE
    # SAM: input, then the mask logits at the image's size
    x, input_size = model.perception.transform.preprocess(image)
    assert input_size == tuple(io["resize_hw"].tolist())
    assert (x[0] - io["images_sam"]).abs().max() < 1e-4
    features = model.encode_frame(image)
    decoded = model.decode(features, referring_query=reasoning.referring_query,
                           online_query=reasoning.referring_query, purport_query=reasoning.purport_query)
    assert decoded.mask_logits.shape[-2:] == io["mask_logits"].shape[-2:]
    assert (decoded.mask_logits[0, 0] - io["mask_logits"][0]).abs().max() < TOLERANCE
    assert np.array_equal(decoded.mask, (io["mask_logits"][0] > 0).numpy())
    assert decoded.iou_score == pytest.approx(float(io["iou_predictions"].flatten()[0]), abs=TOLERANCE)
    assert decoded.purport_score == pytest.approx(min(1.0, max(0.0, decoded.iou_score)))


def test_the_tracker_runs_an_imported_lisa_with_rethinking(imported, io):
    from trackgpt.tracker import OnlineTracker, TrackState

    model = load_model(str(imported))
    image = io["image"].numpy()
    with OnlineTracker(perception=model, synchronous=True) as tracker:
        tracker.set_instruction(INSTRUCTION)
        steps = [tracker.step(image) for _ in range(3)]
    assert all(s.state == TrackState.TRACKING for s in steps)
    assert steps[0].answer == "Sure, it is [SEG] ."
    expected = (io["mask_logits"][0] > 0).numpy()
    assert all(np.array_equal(s.mask, expected) for s in steps)  # Q_R alone every frame: no propagation
    assert steps[0].purport_score == pytest.approx(steps[2].purport_score)


def test_an_answer_without_seg_names_no_target(imported, io):
    model = load_model(str(imported))
    brain = model.brain
    # three tokens end the answer before its [SEG] (the 6th): LISA's answer then carries no mask
    brain.config = dataclasses.replace(brain.config, max_new_tokens=3)
    with pytest.raises(BrainError, match=r"names no target \(no \[SEG\]\): 'Sure, i'"):
        brain.answer(io["image"].numpy(), INSTRUCTION)
    with pytest.raises(Exception, match="reserved token"):
        brain.prompt_ids("track the [SEG] please")


def test_what_the_import_refuses(tmp_path):
    with pytest.raises(CheckpointError, match="not a LISA folder"):
        import_lisa(FIXTURE / "clip_tiny", FIXTURE / "clip_tiny", tmp_path / "a")
    broken = tmp_path / "lisa"
    shutil.copytree(FIXTURE / "lisa_tiny", broken)
    (broken / "pytorch_model-00002-of-00003.bin").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        import_lisa(broken, FIXTURE / "clip_tiny", tmp_path / "b")
    with pytest.raises(CheckpointError, match="not a CLIP folder"):
        import_lisa(FIXTURE / "lisa_tiny", FIXTURE / "lisa_tiny", tmp_path / "c")
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.importing").exists()
