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


def test_visual_projection_lets_one_audio_be_rejected_for_every_image():
    """Zero-mean visual features (a from-scratch backbone ending in LayerNorm) have no common direction, so the
    paper's cosine cannot score one audio (silence) low against every image; the projected gate learns to."""
    torch.manual_seed(0)
    n, audio_dim, visual_dim = 32, 8, 16
    visual = torch.randn(n, visual_dim, 2, 2)
    visual = visual - visual.mean(dim=1, keepdim=True)  # zero mean over channels, no shared direction
    silence = torch.zeros(audio_dim)
    silence[0] = 1.0
    sound = torch.zeros(audio_dim)
    sound[1] = 1.0
    audio = torch.stack([silence if i % 2 else sound for i in range(n)])
    labels = (torch.arange(n) % 2 == 0).float()  # silence (odd rows) is negative for every image

    def train(gate):
        opt = torch.optim.Adam(gate.parameters(), lr=0.05)
        for _ in range(300):
            loss = gate_bce_loss(gate(audio, visual).logit, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            score = gate(audio, visual).score
        return float(score[labels == 1].min()), float(score[labels == 0].max())

    projected = SimilarityGate(audio_dim=audio_dim, visual_dim=visual_dim, mode="scaled_cosine", visual_proj=True)
    lo_pos, hi_neg = train(projected)
    assert lo_pos > 0.5 > hi_neg, (lo_pos, hi_neg)
    assert projected.visual_proj is not None and "visual_proj.bias" in projected.state_dict()


def test_audio_term_adds_an_audio_only_logit():
    gate = SimilarityGate(audio_dim=4, visual_dim=6, mode="scaled_cosine", audio_term=True)
    plain = SimilarityGate(audio_dim=4, visual_dim=6, mode="scaled_cosine")
    plain.load_state_dict({k: v for k, v in gate.state_dict().items() if not k.startswith("audio_term")})
    audio, visual = torch.randn(3, 4), torch.randn(3, 6, 2, 2)
    with torch.no_grad():
        a, b = gate(audio, visual), plain(audio, visual)
        expected = b.logit + gate.audio_term(audio)[:, 0]
    assert torch.allclose(a.similarity, b.similarity)
    assert torch.allclose(a.logit, expected)
    assert set(gate.state_dict()) - set(plain.state_dict()) == {"audio_term.weight", "audio_term.bias"}


def test_old_checkpoints_without_the_deviations_still_build():
    """Configs saved before the gate options existed (no gate_visual_proj / gate_audio_term) load unchanged."""
    old = build_model("embedded", gate="scaled_cosine", audio_encoder="vggish-small", gate_visual_proj=False,
                      gate_audio_term=False, image_size=64)
    assert old.gate.visual_proj is None and old.gate.audio_term is None
    new = build_model("embedded", gate="scaled_cosine", image_size=64)
    assert new.gate.visual_proj is not None and new.gate.audio_term is not None
