"""trackgpt.loading.load_model: the one loader every entry point uses (spec -> ready model)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from perception_common.models import ModelSpecError
from trackgpt import get_config, loading
from trackgpt.errors import CheckpointError
from trackgpt.loading import load_model


@pytest.fixture(scope="module")
def tiny_saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tg") / "tiny"
    model = load_model("config:tiny")
    model.save_pretrained(folder)
    return folder, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_folder(tiny_saved):
    return tiny_saved[0]


def test_config_spec_gives_a_fresh_model_in_eval_mode():
    model = load_model("config:tiny", precision="bf16")
    assert not model.training and model.config.brain.precision == "bf16"
    assert next(model.brain.parameters()).dtype == torch.bfloat16
    assert load_model(get_config("tiny")).config == get_config("tiny")  # a configuration object: training's start


def test_a_folder_round_trips(tiny_saved):
    tiny_folder, original = tiny_saved
    state = load_model(str(tiny_folder)).state_dict()
    assert state.keys() == original.keys() and all(torch.equal(state[k], original[k]) for k in original)
    auto = load_model(str(tiny_folder), device="auto")
    assert str(next(auto.parameters()).device) == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_a_folder_with_a_missing_tensor_is_an_error_naming_it(tiny_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    tensors = load_file(broken / "model.safetensors")
    gone = sorted(tensors)[0]
    del tensors[gone]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing") as err:
        load_model(str(broken))
    assert gone in str(err.value)


def test_specs_that_name_nothing(tmp_path, monkeypatch):
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_model(str(tmp_path / "nothing"))
    with pytest.raises(ModelSpecError, match="configuration name"):
        load_model("config:")
    monkeypatch.setattr(loading, "shipped_folder", lambda: tmp_path / "not-shipped")
    with pytest.raises(ModelSpecError, match="shipped embedded model is missing"):
        load_model("")
    with pytest.raises(ModelSpecError, match="device"):
        load_model("config:tiny", device="tpu")


def test_the_empty_spec_is_the_shipped_folder():
    assert loading.shipped_folder().name == "embedded" and (loading.shipped_folder() / "config.json").is_file()
    shipped = load_model("")
    assert shipped.config.brain.source == "smollm2" and not shipped.training


@pytest.fixture
def shipped_copy(tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(loading.shipped_folder(), folder)
    return folder


def test_a_truncated_adapter_is_named(shipped_copy):
    adapter = shipped_copy / "brain_adapter" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable") as err:
        load_model(str(shipped_copy))
    assert str(adapter) in str(err.value)


def test_a_garbage_tokenizer_is_named_where_it_is(shipped_copy):
    from trackgpt.errors import BrainError

    (shipped_copy / "tokenizer" / "tokenizer.json").write_text("garbage{")
    with pytest.raises(BrainError, match="tokenizer") as err:
        load_model(str(shipped_copy))
    assert str(shipped_copy / "tokenizer") in str(err.value) and ".cache" not in str(err.value)


def _lisa_like(folder):
    import json

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llava", "architectures": ["LISAForCausalLM"], "mm_vision_tower": "openai/clip-vit-large-patch14",
    }))
    return folder


def test_a_lisa_folder_is_refused_as_model_and_as_brain_naming_it(tmp_path):
    from trackgpt.errors import BrainError
    from trackgpt.llava import load_llava_folder

    lisa = _lisa_like(tmp_path / "LISA-7B-v1")
    with pytest.raises(CheckpointError, match="LISA checkpoint") as err:
        load_model(str(lisa))
    assert "perception-models import lisa" in str(err.value)  # not "model_type='llava', expected 'trackgpt'"
    with pytest.raises(BrainError, match="LISA checkpoint"):
        load_llava_folder(lisa)


def test_a_llava_folder_missing_a_tensor_is_refused_naming_it(tmp_path):
    from trackgpt.errors import BrainError
    from trackgpt.llava import build_tiny_llava, load_llava_folder

    model, tokenizer = build_tiny_llava(get_config("tiny").brain)
    model.save_pretrained(tmp_path / "brain")
    tokenizer.save_pretrained(tmp_path / "brain")
    load_llava_folder(tmp_path / "brain")  # whole: loads
    tensors = load_file(tmp_path / "brain" / "model.safetensors")
    gone = next(k for k in sorted(tensors) if "vision_tower" in k)
    del tensors[gone]
    save_file(tensors, str(tmp_path / "brain" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(BrainError, match="does not fit a LLaVA model: missing keys") as err:
        load_llava_folder(tmp_path / "brain")
    assert gone.split(".")[-2] in str(err.value)  # Hugging Face names the key in its own layout
