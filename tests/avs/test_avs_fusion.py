"""ASPP, TPAVI and the FPN decoder."""

from __future__ import annotations

import pytest
import torch

from avs.decoder import FPNDecoder
from avs.errors import ConfigError, InputError
from avs.fusion import ASPP, TPAVI


def naive_tpavi(block: TPAVI, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """The reference algorithm: audio repeated over h x w, full THW x THW affinity matrix."""
    b, _, t, h, w = x.shape
    a = block.align_channel(audio).permute(0, 2, 1)[..., None, None].repeat(1, 1, 1, h, w)  # B C T H W
    g = block.g(x).view(b, block.inter_channels, -1).permute(0, 2, 1)  # B N C'
    theta = block.theta(x).view(b, block.inter_channels, -1).permute(0, 2, 1)  # B N C'
    phi = block.phi(a).view(b, block.inter_channels, -1)  # B C' N
    f = theta @ phi  # B N N
    f = f / f.shape[-1] if block.attention == "dot" else f.softmax(dim=-1)
    y = (f @ g).permute(0, 2, 1).reshape(b, block.inter_channels, t, h, w)
    z = block.W_z(y) + block.mu(x)
    return block.norm(z.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


def randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("attention", ["dot", "softmax"])
def test_tpavi_reduced_form_equals_full_affinity(attention):
    torch.manual_seed(0)
    block = TPAVI(channels=8, audio_dim=12, attention=attention).eval()
    randomise(block)  # non-zero W_z so the attention path matters
    x = torch.randn(2, 8, 3, 5, 4)
    audio = torch.randn(2, 3, 12)
    z, aligned = block(x, audio)
    torch.testing.assert_close(z, naive_tpavi(block, x, audio), rtol=1e-4, atol=1e-5)
    assert tuple(aligned.shape) == (2, 3, 8)


def test_tpavi_starts_as_reference_residual():
    block = TPAVI(channels=6, audio_dim=4).eval()
    x = torch.randn(1, 6, 1, 3, 3)
    z, _ = block(x, torch.randn(1, 1, 4))
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 4, 1), (6,)).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(z, expected, rtol=1e-5, atol=1e-5)


def test_softmax_attention_ignores_audio_for_single_frames_but_dot_does_not():
    x = torch.randn(1, 8, 1, 4, 4)
    a1, a2 = torch.randn(1, 1, 12), torch.randn(1, 1, 12)
    soft = TPAVI(channels=8, audio_dim=12, attention="softmax").eval()
    randomise(soft)
    torch.testing.assert_close(soft(x, a1)[0], soft(x, a2)[0])
    dot = TPAVI(channels=8, audio_dim=12, attention="dot").eval()
    randomise(dot)
    assert not torch.allclose(dot(x, a1)[0], dot(x, a2)[0], atol=1e-4)


def test_tpavi_bad_input():
    block = TPAVI(channels=8, audio_dim=12)
    with pytest.raises(InputError, match="visual input"):
        block(torch.randn(1, 8, 4, 4), torch.randn(1, 1, 12))
    with pytest.raises(InputError, match="audio"):
        block(torch.randn(1, 8, 2, 4, 4), torch.randn(1, 1, 12))
    with pytest.raises(ConfigError):
        TPAVI(channels=8, attention="gaussian")


def test_aspp_sums_dilated_branches():
    aspp = ASPP(in_channels=5, out_channels=7, dilations=(1, 2)).eval()
    x = torch.randn(2, 5, 9, 11)
    out = aspp(x)
    assert tuple(out.shape) == (2, 7, 9, 11)
    torch.testing.assert_close(out, aspp.branches[0](x) + aspp.branches[1](x))


@pytest.mark.parametrize("size", [(32, 32), (16, 16), (8, 8), (4, 4), (4, 13), (13, 4)])
@pytest.mark.parametrize("grad", [False, True])
def test_aspp_without_the_taps_that_read_padding_gives_the_same_sums(size, grad):
    """Branches whose dilation reaches past the map drop those taps (centre-only ones as one 1 x 1): same output,
    same gradients; at inference the dilated ones run through oneDNN."""
    torch.manual_seed(0)
    aspp = ASPP(in_channels=6, out_channels=5, dilations=(3, 6, 12, 18))
    for conv in aspp.branches:
        torch.nn.init.normal_(conv.weight)
        torch.nn.init.normal_(conv.bias)
    x = torch.randn(1, 6, *size, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        out = aspp(x)
        ref = sum(conv(x) for conv in aspp.branches)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-5), (out - ref).abs().max()
    if grad:
        (g_out,) = torch.autograd.grad(out.square().sum(), x)
        (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
        assert torch.allclose(g_out, g_ref, atol=1e-3, rtol=1e-4)


def test_decoder_returns_mask_at_requested_size():
    dec = FPNDecoder(channels=6, head_channels=(8, 4)).eval()
    feats = [torch.randn(2, 6, 25, 20), torch.randn(2, 6, 13, 10), torch.randn(2, 6, 7, 5), torch.randn(2, 6, 4, 3)]
    out = dec(feats, (100, 80))
    assert tuple(out.shape) == (2, 1, 100, 80)
    # every stage reaches the mask
    feats[3].requires_grad_(True)
    dec(feats, (100, 80)).sum().backward()
    assert feats[3].grad.abs().sum() > 0
