"""avs.loading.load_model: the one loader every entry point uses (spec -> ready model)."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from avs import loading
from avs.errors import CheckpointError
from avs.loading import load_model
from perception_common.models import ModelSpecError


def test_config_spec_with_overrides_and_folder_round_trip(tmp_path):
    model = load_model("config:tiny", config_overrides={"gate": "off"})
    assert not model.training and model.config.gate == "off"
    model.save_pretrained(tmp_path / "m")
    again = load_model(str(tmp_path / "m"))
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    gated = load_model(str(tmp_path / "m"), gate_overrides={"gate": "scaled_cosine"})
    assert gated.config.gate == "scaled_cosine" and gated.gate_load_report["initialised"]


def test_a_missing_tensor_is_named(tmp_path):
    load_model("config:tiny").save_pretrained(tmp_path / "m")
    tensors = load_file(tmp_path / "m" / "model.safetensors")
    gone = sorted(tensors)[-1]
    del tensors[gone]
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_model(str(tmp_path / "m"))
    assert gone in str(err.value)


def test_options_that_do_not_fit_the_spec_are_refused(tmp_path):
    with pytest.raises(ValueError, match="gate_overrides apply to model folders"):
        load_model("config:tiny", gate_overrides={"gate": "off"})
    load_model("config:tiny").save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="config_overrides apply to config"):
        load_model(str(tmp_path / "m"), config_overrides={"gate": "off"})
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_model(str(tmp_path / "nothing"))


def test_the_shipped_models(monkeypatch, tmp_path):
    model = load_model("")
    assert model.config.gate != "off" and not model.training
    assert load_model(str(loading.shipped_folder(baseline=True))).config.gate == "off"
    monkeypatch.setattr(loading, "shipped_folder", lambda baseline=False: tmp_path / "gone")
    with pytest.raises(ModelSpecError, match="shipped embedded model is missing"):
        load_model("")
    shutil.rmtree(tmp_path, ignore_errors=True)
