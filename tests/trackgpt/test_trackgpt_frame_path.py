"""The frame path's inference copies (trackgpt.frame_path) compute what the model's own modules compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_common import precision
from perception_common.tracing import Traced
from trackgpt.config import get_config
from trackgpt.frame_path import FastImageEncoder, FastMaskDecoder, FastPostprocess
from trackgpt.model import Perception
from trackgpt.sam import SamTransform

CASES = {
    "tiny": {},
    "embedded": {"name": "embedded"},
    # a 6 x 6 token grid in 4 x 4 windows: the windows are padded, as ViT-H's 64 x 64 grid in 14 x 14 windows
    "padded-windows": {"sam": {"img_size": 96, "window_size": 4}},
    # an imported LISA: no purport head (S_p = SAM's IoU), no online query
    "lisa-like": {"purport_source": "iou", "online_query": False},
}


def _perception(case: str) -> Perception:
    overrides = dict(CASES[case])
    config = get_config(overrides.pop("name", "tiny"), **overrides)
    torch.manual_seed(0)
    perception = Perception(config=config).eval()
    with torch.no_grad():  # random relative-position tables and tokens (they start at zero)
        for name, param in perception.named_parameters():
            if "rel_pos" in name or "no_mask" in name or "iou_token" in name:
                param.normal_(0.0, 0.5)
    return perception


def _queries(p: Perception, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, p.sam.config.prompt_embed_dim, generator=g) for _ in range(3)]


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_copies_equal_the_modules(case):
    p = _perception(case)
    size = p.sam.image_encoder.img_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = p.sam.image_encoder(x)
        out = FastImageEncoder(p.sam.image_encoder, torch.float32)(x)
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()
        q_r, q_t, q_p = _queries(p)
        expected = p.forward(ref, q_r, q_t, q_p)
        got = FastMaskDecoder(p)(ref, q_r, q_t, q_p)
    for name, a, b in zip(("mask logits", "S_p", "IoU", "next query"), got, expected):
        assert a.shape == b.shape, name
        assert torch.allclose(a, b.float(), atol=1e-4, rtol=1e-4), (name, (a - b).abs().max())


def test_bf16_encoder_stays_close_and_decoding_keeps_its_masks():
    p = _perception("embedded")
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)
    q_r, q_t, q_p = _queries(p)
    decoded = {}
    for mode in (None, "fp32", "bf16"):
        p.set_frame_precision(mode)
        assert p.frame_precision == mode
        features = p.encode_frame(frame)
        decoded[mode] = (features.embeddings, p.decode(features, referring_query=q_r, online_query=q_t,
                                                       purport_query=q_p))
    ref_emb, ref = decoded[None]
    emb32, d32 = decoded["fp32"]
    assert torch.allclose(emb32, ref_emb, atol=1e-4)
    assert torch.allclose(d32.mask_logits, ref.mask_logits, atol=1e-4)
    # the same mask but where a logit sits on the threshold to float rounding
    flipped = d32.mask != ref.mask
    assert np.all(np.abs(ref.mask_logits[0, 0].numpy()[flipped] - p.mask_threshold) < 1e-5)
    emb16, d16 = decoded["bf16"]
    rel = float((emb16 - ref_emb).norm() / ref_emb.norm())
    assert rel < 0.02, rel  # bf16 keeps about 3 significant digits
    assert (d16.mask != ref.mask).mean() < 0.01
    assert abs(d16.purport_score - ref.purport_score) < 0.02
    # the copies are not part of the model: its state dict is unchanged
    assert not any("frame_path" in k or "_fast" in k for k in p.state_dict())


def test_an_unknown_frame_precision_is_refused():
    p = _perception("tiny")
    with pytest.raises(precision.PrecisionError, match="auto, fp32, bf16"):
        p.set_frame_precision("fp16")
    with pytest.raises(precision.PrecisionError, match="auto, fp32, bf16"):
        precision.resolve_frame_precision("half", "cpu")


def test_auto_picks_bf16_only_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert precision.resolve_frame_precision("auto", "cpu") == "fp32"  # nothing changes on such a CPU
    p = _perception("tiny")
    p.set_frame_precision("auto")  # the model resolves it for its own device
    assert p.frame_precision == "fp32"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.resolve_frame_precision("auto", "cpu") == "bf16"
    assert precision.resolve_frame_precision("auto", "cuda") == "fp32"
    assert precision.resolve_frame_precision("fp32", "cpu") == "fp32"
    assert precision.resolve_frame_precision(" BF16 ", "cpu") == "bf16"


def test_traces_give_the_modules_outputs_one_trace_per_input_signature():
    p = _perception("embedded")
    encoder, decoder = FastImageEncoder(p.sam.image_encoder, torch.float32), FastMaskDecoder(p)
    traced_encoder, traced_decoder = Traced(encoder), Traced(decoder, signatures=2)
    g = torch.Generator().manual_seed(3)
    size = p.sam.image_encoder.img_size
    with torch.no_grad():
        for batch in (1, 2, 1):
            x = torch.randn(batch, 3, size, size, generator=g)
            emb = encoder(x)
            assert torch.equal(traced_encoder(x), emb)  # the same kernels in the same order: bit for bit
            queries = [torch.randn(batch, p.sam.config.prompt_embed_dim, generator=g) for _ in range(3)]
            for a, b in zip(traced_decoder(emb, *queries), decoder(emb, *queries)):
                assert torch.equal(a, b)
    assert len(traced_encoder._traces) == 2  # batch 1 and batch 2, the second batch-1 call reused its trace
    emb3 = torch.randn(3, *emb.shape[1:])
    traced_decoder(emb3, *(torch.randn(3, p.sam.config.prompt_embed_dim) for _ in range(3)))
    assert len(traced_decoder._traces) == 2  # at most `signatures`: the oldest went


@pytest.mark.parametrize("frame", [(480, 640), (120, 160), (640, 480), (37, 251)])
def test_postprocess_as_two_products_equals_sams(frame):
    config = get_config("embedded").sam
    transform = SamTransform(config=config)
    low = torch.randn(2, 1, 4 * config.img_size // config.patch_size, 4 * config.img_size // config.patch_size,
                      generator=torch.Generator().manual_seed(4))
    input_size = transform.input_size(frame)
    expected = transform.postprocess(low, input_size, frame)
    got = FastPostprocess(config.img_size)(low, input_size, frame)
    assert got.shape == expected.shape == (2, 1, *frame) and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-5), (got - expected).abs().max()  # float rounding


def test_compiled_encoder_gives_the_traced_outputs_and_is_found_again(tmp_path):
    """compile_frame_path: the image encoder as an AOTInductor package (fp32: the trace's embedding to float
    rounding, so the same masks); without build it is used only when this machine has built it; other batch sizes
    run through the trace."""
    p = _perception("tiny")
    p.set_frame_precision("fp32")
    assert not p.frame_compiled and p.compile_frame_path(build=False, directory=tmp_path) is None
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    traced = p.encode_frame(frame).embeddings
    compiled = p.compile_frame_path(directory=tmp_path)
    assert compiled.cached is False and p.frame_compiled and p.frame_precision == "fp32"
    torch.testing.assert_close(p.encode_frame(frame).embeddings, traced, rtol=1e-4, atol=1e-4)
    size = p.transform.img_size
    x2 = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(p._frame_path[1](x2), p.sam.image_encoder(x2), rtol=1e-4, atol=1e-4)
    p.set_frame_precision("fp32")  # a new frame path: traced again until compiled
    assert not p.frame_compiled
    again = p.compile_frame_path(build=False, directory=tmp_path)
    assert again.cached is True and again.path == compiled.path and p.frame_compiled
    p.set_frame_precision(None)
    with pytest.raises(RuntimeError, match="set a frame precision first"):
        p.compile_frame_path(directory=tmp_path)
