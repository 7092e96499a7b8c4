"""TrackGPT checkpoints: save -> load gives identical outputs; broken folders give clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from trackgpt import TrackGPT, get_config
from trackgpt.errors import BrainError, CheckpointError
from trackgpt.llava import build_tiny_llava
from trackgpt.sam import SamParts


def _frame(seed=0, h=40, w=56):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _perturb(model: TrackGPT, seed: int = 1) -> None:
    """Move every saved part away from its seeded initialisation, so a load that does nothing fails."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        referenced_encoder = bool(model.config.sam.checkpoint)  # then frozen and not saved
        for module in (model.perception, model.projection):
            for name, p in module.named_parameters():
                if not (referenced_encoder and "image_encoder" in name):
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
        rows = {k: v + torch.randn(v.shape, generator=g) for k, v in model.brain.added_token_rows().items()}
        model.brain.set_added_token_rows(rows)
        saved_projector = model.config.brain.train_vision_projector
        saved_tower = model.config.brain.train_vision_tower
        for name, p in model.brain.model.named_parameters():
            if (
                "lora_B" in name
                or ("multi_modal_projector" in name and saved_projector)
                or ("vision_tower." in name and saved_tower)
            ):
                p.add_(0.5 * torch.randn(p.shape, generator=g))


def _tower(model: TrackGPT):
    return model.brain.submodule("vision_tower")


def _outputs(model: TrackGPT):
    r = model.reason(_frame(0), "the red car")
    f = model.encode_frame(_frame(1))
    d = model.decode(f, referring_query=r.referring_query, online_query=r.referring_query,
                     purport_query=r.purport_query)
    return r, d


def _assert_same(a, b):
    (ra, da), (rb, db) = a, b
    assert ra.answer == rb.answer
    torch.testing.assert_close(ra.referring_query, rb.referring_query, rtol=0, atol=0)
    torch.testing.assert_close(ra.purport_query, rb.purport_query, rtol=0, atol=0)
    torch.testing.assert_close(da.mask_logits, db.mask_logits, rtol=0, atol=0)
    torch.testing.assert_close(da.next_query, db.next_query, rtol=0, atol=0)
    assert da.purport_score == db.purport_score


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model with LoRA and a trained-looking state, saved once."""
    model = TrackGPT.from_config("tiny", brain={"train_vision_projector": True})
    model.brain.add_lora()
    _perturb(model)
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    model.save_pretrained(folder)
    return model, folder, _outputs(model)


def test_save_load_gives_identical_outputs(saved):
    _, folder, expected = saved
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer").is_dir() and (folder / "brain_adapter" / "adapter_config.json").is_file()
    keys = set(load_file(folder / "model.safetensors"))
    assert {"brain.added_tokens.input", "brain.added_tokens.output"} <= keys
    assert any(k.startswith("perception.sam.image_encoder.") for k in keys)  # random init: saved
    assert any(k.startswith("brain.multi_modal_projector.") for k in keys)
    assert any(k.startswith("projection.") for k in keys)

    loaded = TrackGPT.from_pretrained(folder)
    assert loaded.brain.has_lora
    _assert_same(expected, _outputs(loaded))
    # the check above can fail: an unloaded model of the same config differs
    fresh = TrackGPT.from_config("tiny", brain={"train_vision_projector": True})
    with pytest.raises(AssertionError):
        _assert_same(expected, _outputs(fresh))


def test_trained_vision_tower_is_saved_and_loaded(tmp_path):
    brain = {"train_vision_projector": True, "train_vision_tower": True}
    model = TrackGPT.from_config("tiny", brain=brain)
    _perturb(model, seed=5)
    model.save_pretrained(tmp_path / "m")
    keys = set(load_file(tmp_path / "m" / "model.safetensors"))
    assert any(k.startswith("brain.vision_tower.") for k in keys)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["vision_tower_saved"] is True
    expected = _outputs(model)
    _assert_same(expected, _outputs(TrackGPT.from_pretrained(tmp_path / "m")))
    # the check above can fail: the same model with its seeded (untrained) tower answers otherwise
    fresh = TrackGPT.from_pretrained(tmp_path / "m")
    seeded = _tower(TrackGPT.from_config("tiny", brain=brain)).state_dict()
    _tower(fresh).load_state_dict(seeded)
    with pytest.raises(AssertionError):
        _assert_same(expected, _outputs(fresh))


def test_a_folder_saved_without_its_tower_loads_with_the_tower_switched_on(tmp_path):
    # what model.init_from does when a training stage starts to train the tower (brain override)
    model = TrackGPT.from_config("tiny", brain={"train_vision_projector": True})
    _perturb(model, seed=6)
    model.save_pretrained(tmp_path / "m")
    assert not any(k.startswith("brain.vision_tower.") for k in load_file(tmp_path / "m" / "model.safetensors"))
    loaded = TrackGPT.from_pretrained(tmp_path / "m", train_vision_tower=True)
    assert loaded.config.brain.train_vision_tower
    _assert_same(_outputs(model), _outputs(loaded))
    loaded.save_pretrained(tmp_path / "again")  # from now on the folder carries the tower
    assert any(k.startswith("brain.vision_tower.") for k in load_file(tmp_path / "again" / "model.safetensors"))


def test_save_load_without_lora(tmp_path):
    model = TrackGPT.from_config("tiny")
    _perturb(model, seed=3)
    model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "brain_adapter").exists()
    loaded = TrackGPT.from_pretrained(tmp_path / "m")
    assert not loaded.brain.has_lora
    _assert_same(_outputs(model), _outputs(loaded))


def test_referenced_sam_checkpoint_and_llava_folder(tmp_path):
    """With a SAM checkpoint and a LLaVA folder named in the config, neither is copied; both are reloaded."""
    sam = SamParts(config=get_config("tiny").sam)
    with torch.no_grad():
        for p in sam.parameters():
            p.add_(0.1)
    torch.save(sam.state_dict(), tmp_path / "sam_tiny.pth")
    llava, tokenizer = build_tiny_llava(get_config("tiny").brain)
    llava.save_pretrained(tmp_path / "llava")
    tokenizer.save_pretrained(tmp_path / "llava")

    config = get_config("tiny", sam={"checkpoint": str(tmp_path / "sam_tiny.pth")},
                        brain={"source": "folder", "path": str(tmp_path / "llava")})
    model = TrackGPT.from_config(config)
    torch.testing.assert_close(model.perception.sam.image_encoder.pos_embed, sam.image_encoder.pos_embed)
    _perturb(model, seed=5)
    model.save_pretrained(tmp_path / "m")
    keys = set(load_file(tmp_path / "m" / "model.safetensors"))
    assert not any(k.startswith("perception.sam.image_encoder.") for k in keys)
    _assert_same(_outputs(model), _outputs(TrackGPT.from_pretrained(tmp_path / "m")))

    (tmp_path / "sam_tiny.pth").unlink()
    with pytest.raises(CheckpointError, match="sam_tiny.pth does not exist"):
        TrackGPT.from_pretrained(tmp_path / "m")


# ------------------------------------------------------------------- bad folders
@pytest.fixture
def copy_of(saved, tmp_path):
    import shutil

    _, folder, _ = saved
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def _edit_tensors(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def test_missing_tensor_is_named(copy_of):
    _edit_tensors(copy_of, lambda t: t.pop("perception.purport_head.mlp.layers.0.weight"))
    with pytest.raises(CheckpointError, match="1 missing.*perception.purport_head.mlp.layers.0.weight"):
        TrackGPT.from_pretrained(copy_of)


def test_mismatched_tensor_is_named(copy_of):
    def edit(t):
        t["projection.layers.0.weight"] = torch.zeros(3, 3)

    _edit_tensors(copy_of, edit)
    with pytest.raises(CheckpointError, match=r"mismatched shapes.*projection.layers.0.weight: checkpoint \(3, 3\)"):
        TrackGPT.from_pretrained(copy_of)


def test_unexpected_tensor_is_named(copy_of):
    def edit(t):
        t["perception.extra.weight"] = torch.zeros(2)

    _edit_tensors(copy_of, edit)
    with pytest.raises(CheckpointError, match="unexpected.*perception.extra.weight"):
        TrackGPT.from_pretrained(copy_of)


def test_broken_folders(copy_of, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        TrackGPT.from_pretrained(tmp_path / "nothing")

    (copy_of / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="corrupt weights"):
        TrackGPT.from_pretrained(copy_of)
    (copy_of / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing weights file"):
        TrackGPT.from_pretrained(copy_of)

    meta = json.loads((copy_of / "config.json").read_text())
    (copy_of / "config.json").write_text(json.dumps({**meta, "model_type": "avs"}))
    with pytest.raises(CheckpointError, match="model_type='avs'"):
        TrackGPT.from_pretrained(copy_of)
    meta["config"]["sam"]["img_size"] = "big"
    (copy_of / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="config.json"):
        TrackGPT.from_pretrained(copy_of)
    meta["config"]["sam"]["img_size"] = 64
    meta["config"]["sam"]["wings"] = 2
    (copy_of / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown sam field.*wings"):
        TrackGPT.from_pretrained(copy_of)
    (copy_of / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        TrackGPT.from_pretrained(copy_of)


def test_missing_adapter_or_tokenizer(copy_of):
    import shutil

    shutil.rmtree(copy_of / "brain_adapter")
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        TrackGPT.from_pretrained(copy_of)
    shutil.rmtree(copy_of / "tokenizer")
    with pytest.raises(CheckpointError, match="tokenizer"):
        TrackGPT.from_pretrained(copy_of)


def test_referenced_brain_folder_missing(tmp_path):
    model = TrackGPT.from_config("tiny")
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(BrainError, match="does not exist"):
        TrackGPT.from_pretrained(tmp_path / "m", source="folder", path=str(tmp_path / "no-llava"))
