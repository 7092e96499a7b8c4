"""AVSModel: forward, predict, save/load round trip, and a clear error for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avs.config import CONFIGS, AVSConfig, get_config
from avs.errors import AudioError, CheckpointError, ConfigError, FrameError, InputError
from avs.model import AVSModel, build_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").eval()


def test_registry_has_the_issue_configs():
    assert {"tiny", "embedded", "resnet50-vggish", "pvt-v2-b5-vggish"} <= set(CONFIGS)
    assert get_config("pvt-v2-b5-vggish").backbone == "pvt_v2_b5"
    assert get_config("resnet50-vggish").audio_encoder == "vggish"


def test_embedded_config_is_small():
    model = build_model("embedded")
    assert model.num_parameters() < 10_000_000


def test_forward_shapes(tiny):
    out = tiny(torch.rand(2, 3, 64, 96), torch.randn(2, 1, 96, 64))
    assert tuple(out.mask_logits.shape) == (2, 1, 64, 96)
    assert tuple(out.similarity.shape) == tuple(out.score.shape) == tuple(out.sounding.shape) == (2,)
    torch.testing.assert_close(out.sounding, out.score > tiny.config.threshold)
    assert tuple(out.audio_embedding.shape) == (2, 128)
    assert len(out.fused) == 4 and all(a is not None and a.shape == (2, 8) for a in out.audio_aligned)
    # visual_pooled: the last backbone stage averaged over space (the gate's visual input, before its projection)
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 96)
        f4 = tiny.backbone((x - tiny.pixel_mean) / tiny.pixel_std)[3]
        pooled = tiny(x, torch.randn(2, 1, 96, 64)).visual_pooled
    assert tuple(pooled.shape) == (2, tiny.backbone.channels[3])
    torch.testing.assert_close(pooled, f4.mean(dim=(2, 3)))


def test_audio_changes_the_mask_and_clips_mix_segments():
    frames = torch.rand(1, 3, 64, 64)
    a1, a2 = torch.randn(1, 1, 96, 64), torch.randn(1, 1, 96, 64) * 3
    with torch.no_grad():
        # make the attention path non-trivial (W_z starts at zero as in the reference)
        model = build_model("tiny").eval()
        for block in model.tpavi.values():
            torch.nn.init.normal_(block.W_z[1].weight, 0, 1.0)
        m1 = model(frames, a1).mask_logits
        m2 = model(frames, a2).mask_logits
        assert not torch.allclose(m1, m2, atol=1e-5)
        # clip_length=2: frame 0's output depends on frame 1's audio
        clip_a = model(frames.repeat(2, 1, 1, 1), torch.cat([a1, a1]), clip_length=2).mask_logits[0]
        clip_b = model(frames.repeat(2, 1, 1, 1), torch.cat([a1, a2]), clip_length=2).mask_logits[0]
        assert not torch.allclose(clip_a, clip_b, atol=1e-5)


@pytest.mark.parametrize(
    "frames, audio, kwargs, match",
    [
        (torch.rand(2, 64, 64), torch.randn(2, 1, 96, 64), {}, "B x 3 x H x W"),
        (torch.rand(2, 4, 64, 64), torch.randn(2, 1, 96, 64), {}, "B x 3 x H x W"),
        (torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), torch.randn(2, 1, 96, 64), {}, "float"),
        (torch.rand(2, 3, 16, 64), torch.randn(2, 1, 96, 64), {}, "at least 32"),
        (torch.rand(2, 3, 64, 64), torch.randn(2, 96, 64), {}, "B x 1 x 96 x 64"),
        (torch.rand(2, 3, 64, 64), torch.randn(3, 1, 96, 64), {}, "same batch size"),
        (torch.rand(2, 3, 64, 64), torch.randn(2, 1, 96, 64), {"clip_length": 3}, "clip_length"),
        (torch.full((1, 3, 64, 64), float("nan")), torch.randn(1, 1, 96, 64), {}, "frames contain NaN"),
        (torch.rand(1, 3, 64, 64), torch.full((1, 1, 96, 64), float("inf")), {}, "audio log-mel contains NaN"),
    ],
)
def test_bad_forward_inputs(tiny, frames, audio, kwargs, match):
    with pytest.raises(InputError, match=match):
        tiny(frames, audio, **kwargs)


def sine_window(rate=16000, seconds=1.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def test_predict_returns_frame_sized_results(tiny):
    frame = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    pred = tiny.predict(frame, sine_window(44100), 44100)
    assert pred.mask.shape == pred.probability.shape == (50, 70)
    assert pred.mask.dtype == bool and pred.probability.dtype == np.float32
    assert pred.audio_padded_samples == 0
    assert isinstance(pred.sounding, bool) and 0.0 < pred.score < 1.0 and -1.0 <= pred.similarity <= 1.0
    assert pred.sounding == (pred.score > 0.5)
    np.testing.assert_array_equal(pred.mask, (pred.probability > 0.5) & pred.sounding)
    # a threshold no cosine score can pass: never sounding, mask empty
    refused = tiny.predict(frame, sine_window(), 16000, threshold=0.99)
    assert not refused.sounding and not refused.mask.any()
    # gray frames and short windows work; the padding is reported
    short = tiny.predict(frame[:, :, 0], sine_window(seconds=0.5), 16000)
    assert short.audio_padded_samples == 15600 - 8000
    assert tiny.training is False


def test_predict_with_gate_off_is_always_sounding():
    base = build_model("tiny", gate="off")
    base.train()
    pred = base.predict(np.zeros((40, 40, 3), np.uint8), sine_window(), 16000)
    assert pred.sounding and pred.score is None and pred.similarity is None
    assert base.training  # mode restored


@pytest.mark.parametrize("gate", ["cosine", "off"])
def test_frame_path_gives_the_modules_results_and_follows_new_weights(gate):
    torch.manual_seed(2)
    model = build_model("tiny", gate=gate)
    frame = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)

    def run(precision):
        model.set_frame_precision(precision)
        assert model.frame_precision == precision
        return model.predict(frame, sine_window(), 16000)

    for _ in range(2):  # the second round changes the weights in place: the fp32 trace reads them, it does not copy
        eager, traced, bf16 = run(None), run("fp32"), run("bf16")
        np.testing.assert_allclose(traced.probability, eager.probability, atol=1e-6)
        np.testing.assert_array_equal(traced.mask, eager.mask)
        assert np.abs(bf16.probability - eager.probability).max() < 0.02  # bf16 keeps about 3 digits
        assert (bf16.mask != eager.mask).mean() < 0.01
        for pred in (traced, bf16):
            assert pred.sounding == eager.sounding
            if gate == "off":
                assert pred.score is None and pred.similarity is None
            else:  # the gate runs in fp32 on every path
                assert pred.score == pytest.approx(eager.score, abs=1e-6)
                assert pred.similarity == pytest.approx(eager.similarity, abs=1e-6)
        before = traced.probability
        with torch.no_grad():
            model.decoder.head_out.weight.mul_(-3.0)
    assert not np.allclose(run("fp32").probability, before)
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        model.set_frame_precision("fp16")


def test_auto_frame_path_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    from perception_common import precision

    model = build_model("tiny")
    frame = np.random.default_rng(4).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    expected = model.predict(frame, sine_window(), 16000)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    model.set_frame_precision("auto")
    assert model.frame_precision == "fp32"  # nothing changes for such a CPU: the modules' results
    np.testing.assert_allclose(model.predict(frame, sine_window(), 16000).probability, expected.probability, atol=1e-6)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    model.set_frame_precision("auto")
    assert model.frame_precision == "bf16"


def test_pvt_depthwise_convolutions_read_their_tokens_channels_last_with_the_same_results():
    from avs.backbones import _TokenDepthwiseConv, build_backbone

    torch.manual_seed(3)
    backbone = build_backbone("pvt_v2_tiny").eval()
    depthwise = [m for m in backbone.modules() if isinstance(m, _TokenDepthwiseConv)]
    assert depthwise and all(m.groups == m.in_channels for m in depthwise)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fast = backbone(x)
        for m in depthwise:
            m.__class__ = torch.nn.Conv2d  # timm's own module, channels-first
        plain = backbone(x)
    for a, b in zip(fast, plain):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    # timm's parameter names, weight and bias of each (checkpoints load as before)
    assert sum(".dwconv." in k for k in backbone.state_dict()) == 2 * len(depthwise)


@pytest.mark.parametrize(
    "frame, audio, rate, error, match",
    [
        (np.zeros((0, 10, 3), np.uint8), sine_window(), 16000, FrameError, "empty"),
        (np.zeros((10, 10, 2), np.uint8), sine_window(), 16000, FrameError, "channels"),
        ([[1, 2]], sine_window(), 16000, FrameError, "numpy array"),
        (np.zeros((10, 10, 3), np.uint8), np.full(16000, np.nan, np.float32), 16000, AudioError, "NaN"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros(0, np.float32), 16000, AudioError, "empty"),
        (np.zeros((10, 10, 3), np.uint8), sine_window(), -5, AudioError, "positive"),
    ],
)
def test_bad_predict_inputs(tiny, frame, audio, rate, error, match):
    with pytest.raises(error, match=match):
        tiny.predict(frame, audio, rate)


@pytest.mark.parametrize("gate", ["cosine", "scaled_cosine", "off"])
def test_save_load_gives_identical_outputs(tmp_path, gate):
    torch.manual_seed(1)
    model = build_model("tiny", gate=gate).eval()
    frames, audio = torch.rand(2, 3, 64, 64), torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        before = model(frames, audio)
    folder = model.save_pretrained(tmp_path / f"avs-{gate}")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "avs"
    loaded = AVSModel.from_pretrained(folder)
    assert loaded.config == model.config and not loaded.training
    with torch.no_grad():
        after = loaded(frames, audio)
    assert torch.equal(before.mask_logits, after.mask_logits)
    if gate == "off":
        assert after.score is None
    else:
        assert torch.equal(before.score, after.score)


def test_gated_model_starts_from_a_baseline_with_gate_overrides(tmp_path):
    torch.manual_seed(2)
    baseline = build_model("tiny", gate="off").eval()
    frames, audio = torch.rand(2, 3, 64, 64), torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        before = baseline(frames, audio)
    folder = baseline.save_pretrained(tmp_path / "baseline")
    gated = AVSModel.from_pretrained(folder, gate_overrides={"gate": "scaled_cosine", "gate_audio_term": True})
    assert gated.config.gate == "scaled_cosine" and gated.config.gate_audio_term
    assert gated.config.channels == baseline.config.channels
    report = gated.gate_load_report
    assert "gate.audio_term.weight" in report["initialised"] and "gate.log_scale" in report["initialised"]
    assert report["dropped"] == []
    with torch.no_grad():
        after = gated(frames, audio)
    assert torch.equal(before.mask_logits, after.mask_logits)  # every non-gate weight came from the baseline
    assert after.score is not None and after.score.shape == (2,)
    # and back: a gated folder loaded with the gate off drops the gate's weights, and names them
    back = AVSModel.from_pretrained(gated.save_pretrained(tmp_path / "gated"), gate_overrides={"gate": "off"})
    assert back.gate is None and "gate.audio_term.weight" in back.gate_load_report["dropped"]
    # a plain load is strict and reports nothing; any other field is refused by name
    assert AVSModel.from_pretrained(folder).gate_load_report == {"initialised": [], "dropped": []}
    with pytest.raises(ConfigError, match="channels"):
        AVSModel.from_pretrained(folder, gate_overrides={"gate": "cosine", "channels": 12})


def test_bad_checkpoints(tmp_path):
    model = build_model("tiny")
    folder = model.save_pretrained(tmp_path / "good")
    with pytest.raises(CheckpointError, match="does not exist"):
        AVSModel.from_pretrained(tmp_path / "missing")
    corrupt = tmp_path / "corrupt"
    model.save_pretrained(corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        AVSModel.from_pretrained(corrupt)
    no_weights = tmp_path / "no_weights"
    model.save_pretrained(no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing weights"):
        AVSModel.from_pretrained(no_weights)
    config = json.loads((folder / "config.json").read_text())
    wrong_type = tmp_path / "wrong_type"
    model.save_pretrained(wrong_type)
    (wrong_type / "config.json").write_text(json.dumps({**config, "model_type": "trackgpt"}))
    with pytest.raises(CheckpointError, match="expected 'avs'"):
        AVSModel.from_pretrained(wrong_type)
    unknown = tmp_path / "unknown_key"
    model.save_pretrained(unknown)
    (unknown / "config.json").write_text(json.dumps({**config, "colour": "red"}))
    with pytest.raises(CheckpointError, match="colour"):
        AVSModel.from_pretrained(unknown)
    mismatch = tmp_path / "mismatch"
    model.save_pretrained(mismatch)
    (mismatch / "config.json").write_text(json.dumps({**config, "channels": 12}))
    with pytest.raises(CheckpointError, match="mismatched"):
        AVSModel.from_pretrained(mismatch)


def test_bad_configs():
    with pytest.raises(ConfigError, match="unknown AVS configuration"):
        build_model("huge")
    with pytest.raises(ConfigError, match="backbone"):
        AVSConfig(backbone="vit_h")
    with pytest.raises(ConfigError, match="gate"):
        get_config("tiny", gate="sometimes")
    with pytest.raises(ConfigError, match="tpavi_stages"):
        get_config("tiny", tpavi_stages=(0, 4))
    with pytest.raises(ConfigError, match="threshold"):
        get_config("tiny", threshold=1.5)
    with pytest.raises(ConfigError, match="AVSConfig"):
        AVSModel(config={"backbone": "pvt_v2_tiny"})


def test_official_component_weights_load_into_the_model(tmp_path):
    model = build_model("tiny")
    donor = build_model("tiny")
    bb = {k.removeprefix("model."): v for k, v in donor.backbone.state_dict().items()}
    torch.save(bb, tmp_path / "pvt.pth")
    torch.save(donor.audio_encoder.state_dict(), tmp_path / "vggish.pth")
    model.load_backbone_weights(tmp_path / "pvt.pth")
    model.load_audio_weights(tmp_path / "vggish.pth")
    for k, v in donor.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v)
    assert torch.equal(model.audio_encoder.embeddings[0].weight, donor.audio_encoder.embeddings[0].weight)


def test_package_imports_without_rclpy():
    import subprocess
    import sys

    code = "import sys, avs, avs.cli, avs.bench, avs.negatives, avs.losses; assert 'rclpy' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": ":".join(sys.path)})
    assert proc.returncode == 0, proc.stderr
