"""Classifier-guided similarity gate: BCE separates positive from negative pairs; gate off = baseline."""

from __future__ import annotations

import pytest
import torch

from avs.errors import ConfigError, InputError
from avs.gate import SimilarityGate
from avs.losses import gate_bce_loss
from avs.model import build_model


def toy_pairs(seed=0, n=24, classes=3, audio_dim=16, visual_dim=12):
    """Audio/visual prototypes per class plus noise; positives match classes, negatives do not."""
    g = torch.Generator().manual_seed(seed)
    a_proto = torch.randn(classes, audio_dim, generator=g)
    v_proto = torch.randn(classes, visual_dim, generator=g)
    cls = torch.arange(n) % classes
    other = (cls + 1 + torch.arange(n) % (classes - 1)) % classes
    labels = (torch.arange(n) % 2 == 0).float()
    audio_cls = torch.where(labels.bool(), cls, other)
    audio = a_proto[audio_cls] + 0.1 * torch.randn(n, audio_dim, generator=g)
    visual = v_proto[cls][:, :, None, None] + 0.1 * torch.randn(n, visual_dim, 3, 3, generator=g)
    return audio, visual, labels


@pytest.mark.parametrize("mode, min_gap", [("cosine", 0.2), ("scaled_cosine", 0.8)])
def test_bce_pushes_scores_apart(mode, min_gap):
    torch.manual_seed(0)
    audio, visual, labels = toy_pairs()
    gate = SimilarityGate(audio_dim=16, visual_dim=12, mode=mode, init_scale=1.0)
    opt = torch.optim.Adam(gate.parameters(), lr=0.05)

    def gap():
        with torch.no_grad():
            score = gate(audio, visual).score
        return float(score[labels == 1].mean() - score[labels == 0].mean()), score

    before, _ = gap()
    for _ in range(40):
        opt.zero_grad()
        loss = gate_bce_loss(gate(audio, visual).logit, labels)
        loss.backward()
        opt.step()
    after, score = gap()
    assert abs(before) < 0.2
    assert after > min_gap
    assert score[labels == 1].min() > 0.5 > score[labels == 0].max()


def test_gate_bounds_and_errors():
    gate = SimilarityGate(audio_dim=16, visual_dim=12, mode="cosine")
    out = gate(torch.randn(5, 16), torch.randn(5, 12, 2, 2))
    assert out.similarity.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(out.score, torch.sigmoid(out.similarity))
    with pytest.raises(InputError, match="visual"):
        gate(torch.randn(5, 16), torch.randn(5, 11, 2, 2))
    with pytest.raises(InputError, match="audio"):
        gate(torch.randn(4, 16), torch.randn(5, 12, 2, 2))
    with pytest.raises(ConfigError):
        SimilarityGate(visual_dim=12, mode="off")


def test_gate_off_is_the_baseline_path():
    torch.manual_seed(0)
    gated = build_model("tiny").eval()
    baseline = build_model("tiny", gate="off").eval()
    gated_keys = set(gated.state_dict())
    base_keys = set(baseline.state_dict())
    assert base_keys < gated_keys and all(k.startswith("gate.") for k in gated_keys - base_keys)
    baseline.load_state_dict({k: v for k, v in gated.state_dict().items() if k in base_keys}, strict=True)
    frames, audio = torch.rand(3, 3, 64, 64), torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        g, b = gated(frames, audio), baseline(frames, audio)
    torch.testing.assert_close(g.mask_logits, b.mask_logits)
    assert baseline.gate is None
    assert b.similarity is None and b.score is None and b.gate_logit is None
    assert b.sounding.dtype == torch.bool and bool(b.sounding.all())
    assert g.score is not None and g.similarity.shape == (3,)


def test_gate_gradient_reaches_both_encoders():
    torch.manual_seed(0)
    model = build_model("tiny")
    out = model(torch.rand(4, 3, 64, 64), torch.randn(4, 1, 96, 64))
    gate_bce_loss(out.gate_logit, torch.tensor([1.0, 0.0, 1.0, 0.0])).backward()
    assert model.audio_encoder.features[0].weight.grad.abs().sum() > 0
    assert model.backbone.model.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.decoder.head_out.weight.grad is None  # the gate does not touch the mask path
