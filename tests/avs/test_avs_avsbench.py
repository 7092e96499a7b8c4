"""The AVSBench importer reproduces AVSBench's own forward pass (fixtures written by upstream's code, see
tests/avs/fixtures/avsbench/README.md)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avs.avsbench import import_avsbench, read_checkpoint
from avs.errors import CheckpointError
from avs.loading import load_model
from avs.vggish import build_vggish

FIXTURES = Path(__file__).parent / "fixtures" / "avsbench"
CASES = {  # fixture -> (backbone it must be recognised as, classes)
    "s4_pvt": ("pvt_v2_tiny", 1),
    "s4_resnet": ("resnet_tiny", 1),
    "avss_pvt": ("pvt_v2_tiny", 8),
}
TOLERANCE = 1e-4


def _vggish_state():
    torch.manual_seed(0)
    return build_vggish("vggish-tiny").state_dict()  # torchvggish's layout, at the tiny size


def _import(name, checkpoint=None):
    return import_avsbench(checkpoint or FIXTURES / f"{name}.pth", _vggish_state(), audio_encoder="vggish-tiny")


@pytest.mark.parametrize("name", CASES)
def test_import_reproduces_upstream_clip_outputs(name):
    model = _import(name)
    io = load_file(str(FIXTURES / f"{name}.io.safetensors"))
    backbone, classes = CASES[name]
    assert model.config.backbone == backbone and model.config.num_classes == classes
    assert model.config.gate == "off" and model.config.clip_frames == 5
    with torch.no_grad():
        out = model.forward_embeddings(io["frames"], io["audio_embedding"], clip_length=5)
    assert out.mask_logits.shape == io["logits"].shape
    assert io["logits"].abs().max() > 1.0  # the fixture is not trivially small
    assert (out.mask_logits - io["logits"]).abs().max() < TOLERANCE


@pytest.mark.parametrize("name", CASES)
def test_sliding_window_gives_upstream_output_for_the_clips_last_frame(name):
    """The stream's path (one frame at a time, earlier frames' features kept) equals upstream's clip for the frame
    that ends it; the first frames attend over fewer frames, so differ."""
    model = _import(name)
    io = load_file(str(FIXTURES / f"{name}.io.safetensors"))
    history, outputs = [], []
    with torch.no_grad():
        for i in range(5):
            out, features = model.forward_window(io["frames"][i:i + 1], io["audio_embedding"][i:i + 1], history)
            history.append(features)
            outputs.append(out.mask_logits)
    assert (outputs[4][0] - io["logits"][4]).abs().max() < TOLERANCE
    assert (outputs[0][0] - io["logits"][0]).abs().max() > TOLERANCE  # one frame alone is not the clip


def test_imported_folder_loads_through_the_one_loader(tmp_path):
    model = _import("avss_pvt")
    model.save_pretrained(tmp_path / "avss")
    again = load_model(str(tmp_path / "avss"))
    io = load_file(str(FIXTURES / "avss_pvt.io.safetensors"))
    with torch.no_grad():
        out = again.forward_embeddings(io["frames"], io["audio_embedding"], clip_length=5)
    assert (out.mask_logits - io["logits"]).abs().max() < TOLERANCE
    assert again.config.decoder_style == "avsbench" and again.config.num_classes == 8


def test_dataparallel_prefix_is_accepted():
    state = read_checkpoint(FIXTURES / "s4_pvt.pth")
    model = _import("s4_pvt", {f"module.{k}": v for k, v in state.items()})
    assert model.config.backbone == "pvt_v2_tiny"


def test_missing_unknown_or_misshaped_tensors_are_named():
    state = read_checkpoint(FIXTURES / "s4_resnet.pth")
    missing = dict(state)
    missing.pop("tpavi_b2.theta.weight")
    with pytest.raises(CheckpointError, match="tpavi.1.theta.weight"):
        _import("s4_resnet", missing)
    extra = {**state, "tpavi_b1.extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="tpavi.0.extra.weight"):
        _import("s4_resnet", extra)
    unknown = {**state, "classifier.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="classifier.weight"):
        _import("s4_resnet", unknown)
    narrower = {**state, "resnet.conv1.weight": torch.zeros(2, 3, 7, 7)}
    with pytest.raises(CheckpointError, match="matches none of the known"):
        _import("s4_resnet", narrower)


def test_not_an_avsbench_checkpoint_or_a_bad_vggish_file_is_one_error(tmp_path):
    with pytest.raises(CheckpointError, match="not an AVSBench TPAVI checkpoint"):
        import_avsbench({"weight": torch.zeros(1)}, _vggish_state(), audio_encoder="vggish-tiny")
    with pytest.raises(CheckpointError, match="does not exist"):
        import_avsbench(tmp_path / "nope.pth", _vggish_state(), audio_encoder="vggish-tiny")
    with pytest.raises(CheckpointError):
        import_avsbench(FIXTURES / "s4_pvt.pth", {"embeddings.0.weight": torch.zeros(1)},
                        audio_encoder="vggish-tiny")
