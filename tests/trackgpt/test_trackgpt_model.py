"""TrackGPT model core: official SAM weights, the LLaVA brain, shapes and dtypes end to end."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from trackgpt import TrackGPT, get_config
from trackgpt.brain import PURPORT_TOKEN, TRACK_TOKEN, load_brain, tidy_answer
from trackgpt.config import CONFIGS, SAM_SIZES, BrainConfig, TrackGPTConfig
from trackgpt.decoder import ReferringMaskDecoder
from trackgpt.errors import BrainError, CheckpointError, ConfigError, PrecisionError, ReasoningCancelled
from trackgpt.llava import build_tiny_llava, resolve_precision
from trackgpt.sam import SamParts, SamTransform, load_sam_checkpoint


@pytest.fixture(scope="module")
def tiny():
    return TrackGPT.from_config("tiny")


def _frame(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ SAM weights
def test_official_vit_b_state_dict_loads_strictly(tmp_path):
    """The full-size ViT-B (official builder, random init) loads unchanged into our SAM."""
    from segment_anything import sam_model_registry

    official = sam_model_registry["vit_b"]()
    path = tmp_path / "sam_vit_b.pth"
    torch.save(official.state_dict(), path)
    probe = {k: official.state_dict()[k].clone() for k in ("image_encoder.blocks.11.attn.qkv.weight",
                                                            "mask_decoder.iou_token.weight",
                                                            "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")}
    del official
    ours = SamParts(config=SAM_SIZES["vit_b"])
    load_sam_checkpoint(ours, path)
    own = ours.state_dict()
    for key, value in probe.items():
        assert torch.equal(own[key], value), key


def test_sam_checkpoint_errors_name_the_problem(tmp_path):
    sam = SamParts(config=SAM_SIZES["tiny"])
    state = sam.state_dict()
    missing = {k: v for k, v in state.items() if k != "mask_decoder.iou_token.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing.*mask_decoder.iou_token.weight"):
        load_sam_checkpoint(sam, tmp_path / "missing.pth")

    wrong = dict(state)
    wrong["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="mismatched.*mask_decoder.iou_token.weight"):
        load_sam_checkpoint(sam, tmp_path / "wrong.pth")

    with pytest.raises(CheckpointError, match="does not exist"):
        load_sam_checkpoint(sam, tmp_path / "nothing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_sam_checkpoint(sam, tmp_path / "junk.pth")


def test_decoder_equals_sam_decoder_when_purport_is_one():
    """With Q_p = 1 the revamped decoder is SAM's decoder (single-mask output) prompted by the tokens."""
    from segment_anything.modeling import MaskDecoder

    torch.manual_seed(0)
    parts = SamParts(config=SAM_SIZES["tiny"]).eval()
    ours: ReferringMaskDecoder = parts.mask_decoder
    official = MaskDecoder(
        transformer_dim=ours.transformer_dim,
        transformer=type(ours.transformer)(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
    ).eval()
    official.load_state_dict(ours.state_dict(), strict=True)
    emb = torch.randn(1, 32, 4, 4)
    tokens = torch.randn(1, 2, 32)
    dense = parts.dense_prompt(1)
    pe = parts.image_pe()
    with torch.no_grad():
        out = ours(image_embeddings=emb, image_pe=pe, prompt_tokens=tokens, purport_query=torch.ones(1, 32),
                   dense_prompt=dense)
        ref_masks, ref_iou = official(emb, pe, tokens, dense, multimask_output=False)
        other = ours(image_embeddings=emb, image_pe=pe, prompt_tokens=tokens, purport_query=torch.full((1, 32), 3.0),
                     dense_prompt=dense)
    torch.testing.assert_close(out.mask_logits, ref_masks, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.iou_prediction, ref_iou, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(other.mask_logits, out.mask_logits), "Q_p must reach the decoder"


def test_transform_matches_segment_anything():
    """Pre- and post-processing equal segment_anything's Sam.preprocess / postprocess_masks."""
    from segment_anything.modeling import Sam

    cfg = SAM_SIZES["tiny"]
    parts = SamParts(config=cfg)
    sam = Sam(image_encoder=parts.image_encoder, prompt_encoder=parts.prompt_encoder, mask_decoder=parts.mask_decoder,
              pixel_mean=list(cfg.pixel_mean), pixel_std=list(cfg.pixel_std))
    transform = SamTransform(config=cfg)
    frame = _frame(37, 91)
    x, input_size = transform.preprocess(frame)
    resized = transform.resize.apply_image(frame)  # PIL, as segment_anything
    ref = sam.preprocess(torch.from_numpy(resized).permute(2, 0, 1).float())
    assert x.shape == (1, 3, cfg.img_size, cfg.img_size)
    assert input_size == resized.shape[:2]
    # PyTorch's antialiased bilinear on uint8 is PIL's filter up to rounding: within 2 of 255
    torch.testing.assert_close(x[0], ref, atol=2.0 / min(cfg.pixel_std) + 1e-4, rtol=0.0)
    low = torch.randn(1, 1, 16, 16)
    torch.testing.assert_close(transform.postprocess(low, input_size, (37, 91)),
                               sam.postprocess_masks(low, input_size, (37, 91)))


def _scene(h, w, seed=0):
    """Flat shapes on a noisy background (what a resize filter has to get right: edges and noise)."""
    rng = np.random.default_rng(seed)
    frame = (rng.integers(0, 64, (h, w, 3)) + 96).astype(np.uint8)
    frame[h // 4 : h // 2, w // 5 : w // 2] = (220, 30, 30)
    yy, xx = np.mgrid[:h, :w]
    frame[(yy - 2 * h // 3) ** 2 + (xx - 2 * w // 3) ** 2 < (h // 6) ** 2] = (30, 30, 220)
    return frame


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (240, 320), (500, 375), (64, 64), (37, 53)])
def test_preprocess_resize_is_pils_up_to_rounding(size):
    for img_size in (64, 256):
        transform = SamTransform(config=dataclasses.replace(SAM_SIZES["tiny"], img_size=img_size))
        frame = _scene(*size)
        x, (h, w) = transform.preprocess(frame)
        pil = torch.from_numpy(transform.resize.apply_image(frame)).permute(2, 0, 1).float()
        assert (h, w) == tuple(pil.shape[1:]) and x.shape == (1, 3, img_size, img_size) and x.dtype == torch.float32
        diff = (x[0, :, :h, :w] * transform.pixel_std + transform.pixel_mean - pil).abs()
        assert diff.max().item() <= 2.0 + 1e-3 and (diff > 0.5).float().mean().item() < 0.1
        assert torch.count_nonzero(x[..., h:, :]) == 0 and torch.count_nonzero(x[..., :, w:]) == 0
        frozen = frame.copy()
        frozen.flags.writeable = False  # a message's buffer: the same input, no warning, the frame left as it was
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            torch.testing.assert_close(transform.preprocess(frozen)[0], x, rtol=0, atol=0)
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match="H x W x 3 uint8"):
            transform.preprocess(bad)


def test_masks_from_the_resize_agree_with_pils(tiny):
    """Masks decoded from PyTorch-resized and PIL-resized frames agree (the filters differ only in rounding)."""
    reasoning = tiny.reason(_scene(240, 320), "the red box")
    q = dict(referring_query=reasoning.referring_query, online_query=reasoning.referring_query,
             purport_query=reasoning.purport_query)  # fmt: skip
    per = tiny.perception
    for seed, size in enumerate([(480, 640), (240, 320), (500, 375)]):
        frame = _scene(*size, seed=seed)
        ours = tiny.encode_frame(frame)
        pil = torch.from_numpy(per.transform.resize.apply_image(frame)).permute(2, 0, 1).float()
        h, w = pil.shape[1:]
        x = torch.nn.functional.pad((pil - per.transform.pixel_mean) / per.transform.pixel_std,
                                    (0, per.transform.img_size - w, 0, per.transform.img_size - h))  # fmt: skip
        with torch.no_grad():
            ref = type(ours)(per.sam.image_encoder(x[None]), (h, w), size)
        torch.testing.assert_close(ours.embeddings, ref.embeddings, atol=0.05, rtol=0.0)
        a, b = tiny.decode(ours, **q), tiny.decode(ref, **q)
        assert a.mask.shape == b.mask.shape == size and (a.mask != b.mask).mean() < 1e-3
        assert a.purport_score == pytest.approx(b.purport_score, abs=1e-3)


# ------------------------------------------------------------------------ brain
def test_small_llava_folder_loads_as_brain_with_the_two_tokens(tmp_path):
    cfg = CONFIGS["tiny"].brain
    model, tokenizer = build_tiny_llava(cfg)
    vocab = len(tokenizer)
    model.save_pretrained(tmp_path / "llava")
    tokenizer.save_pretrained(tmp_path / "llava")
    saved_rows = model.get_input_embeddings().weight.detach().clone()

    brain = load_brain(BrainConfig(source="folder", path=str(tmp_path / "llava"), vision=cfg.vision, text=cfg.text))
    assert type(brain.model).__name__ == "LlavaForConditionalGeneration"
    assert (brain.track_token_id, brain.purport_token_id) == (vocab, vocab + 1)
    assert brain.tokenizer.convert_ids_to_tokens([vocab, vocab + 1]) == [TRACK_TOKEN, PURPORT_TOKEN]
    emb = brain.model.get_input_embeddings().weight
    assert emb.shape[0] == vocab + 2 and brain.model.get_output_embeddings().weight.shape[0] == vocab + 2
    torch.testing.assert_close(emb[:vocab], saved_rows)
    torch.testing.assert_close(emb[vocab], saved_rows.mean(0))
    # the tokens are single special tokens, never split
    ids = brain.tokenizer("x <TK>, <PO>", add_special_tokens=False).input_ids
    assert brain.track_token_id in ids and brain.purport_token_id in ids


def test_folder_that_is_not_llava_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(BrainError, match="model_type='bert'"):
        load_brain(BrainConfig(source="folder", path=str(tmp_path)))
    with pytest.raises(BrainError, match="does not exist"):
        load_brain(BrainConfig(source="folder", path=str(tmp_path / "nowhere")))


def test_track_state_is_the_state_that_predicts_the_token(tiny):
    """The <TK> embedding equals the last state of the prefix that ends just before <TK> (LISA's rule)."""
    brain = tiny.brain
    ids, labels = brain.training_example("the red car")
    assert labels[: len(brain.prompt_ids("the red car"))] == [-100] * len(brain.prompt_ids("the red car"))
    pixels = brain.preprocess_image(_frame(40, 30))
    x = torch.tensor([ids])
    with torch.no_grad():
        out = brain(x, pixels, labels=torch.tensor([labels]))
        tk = ids.index(brain.track_token_id)
        prefix = brain.model(input_ids=x[:, :tk], pixel_values=pixels, output_hidden_states=True)
    assert out.loss is not None and torch.isfinite(out.loss)
    torch.testing.assert_close(out.track_states[0], prefix.hidden_states[-1][0, -1], rtol=1e-4, atol=1e-5)
    assert out.track_states.shape == out.purport_states.shape == (1, brain.hidden_size)
    assert not torch.allclose(out.track_states, out.purport_states)


def test_state_window_reads_the_mean_of_the_states_before_the_token():
    """brain.state_window k: the <TK> state is the mean of the k last-layer states just before <TK>."""
    one = TrackGPT.from_config("tiny").brain
    three = TrackGPT.from_config("tiny", brain={"state_window": 3}).brain
    ids, _ = one.training_example("the red car")
    pixels = one.preprocess_image(_frame(40, 30))
    x = torch.tensor([ids])
    tk = ids.index(one.track_token_id)
    with torch.no_grad():
        hidden = one.model(input_ids=x, pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
        a, b = one(x, pixels), three(x, pixels)
    torch.testing.assert_close(a.track_states[0], hidden[0, tk - 1])
    torch.testing.assert_close(b.track_states[0], hidden[0, tk - 3 : tk].mean(0))
    assert not torch.allclose(a.track_states, b.track_states)
    for bad in (0, -2, 1.5):
        with pytest.raises(ConfigError, match="state_window"):
            get_config("tiny", brain={"state_window": bad})
    # state_layer: an index into hidden_states (0 = the embeddings)
    mid = TrackGPT.from_config("tiny", brain={"state_window": 2, "state_layer": 1}).brain
    with torch.no_grad():
        hs = one.model(input_ids=x, pixel_values=pixels, output_hidden_states=True).hidden_states
        c = mid(x, pixels)
    torch.testing.assert_close(c.track_states[0], hs[1][0, tk - 2 : tk].mean(0))
    with pytest.raises(BrainError, match="state_layer 9"):
        TrackGPT.from_config("tiny", brain={"state_layer": 9}).brain(x, pixels)
    with pytest.raises(ConfigError, match="state_layer"):
        get_config("tiny", brain={"state_layer": "middle"})


def test_lora_wraps_only_language_model_q_and_v(tiny):
    brain = load_brain(CONFIGS["tiny"].brain)
    brain.add_lora()
    lora = [n for n, _ in brain.model.named_modules() if n.endswith("lora_A")]
    assert lora, "no LoRA layers were added"
    assert all("language_model" in n and (".q_proj." in n or ".v_proj." in n) for n in lora)
    assert not any("vision_tower" in n for n in lora)
    with pytest.raises(BrainError, match="already"):
        brain.add_lora()


def test_int8_and_int4_need_bitsandbytes_and_cuda():
    import importlib.util

    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes"):
        pytest.skip("bitsandbytes and CUDA are present: quantised loading is available here")
    for name in ("int8", "int4"):
        with pytest.raises(PrecisionError, match="needs .*(bitsandbytes|CUDA)"):
            resolve_precision(name)
    with pytest.raises(PrecisionError):
        load_brain(BrainConfig(source="tiny", precision="int4", vision=CONFIGS["tiny"].brain.vision,
                               text=CONFIGS["tiny"].brain.text))


def test_cancelled_reasoning_raises(tiny):
    import threading

    event = threading.Event()
    event.set()
    with pytest.raises(ReasoningCancelled):
        tiny.reason(_frame(), "the dog", cancel_event=event)


def test_answer_text_drops_the_separator_left_by_the_special_tokens(tiny):
    tok = tiny.brain.tokenizer
    ids = tok("Sure, I track the red cup. <TK>, <PO>", add_special_tokens=False)["input_ids"]
    assert tiny.brain.track_token_id in ids and tiny.brain.purport_token_id in ids
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded.rstrip().endswith(",")  # what a plain decode leaves behind
    assert tidy_answer(decoded) == "Sure, I track the red cup."
    assert tidy_answer(" who, me? ") == "who, me?"  # punctuation inside or ending a sentence stays
    assert tidy_answer(" ,; ") == ""


# --------------------------------------------------------------------- pipeline
@pytest.mark.parametrize("size", [(48, 64), (37, 91), (1, 5)])
def test_pipeline_shapes_dtypes_scores_and_propagation(tiny, size):
    frame = _frame(*size)
    r = tiny.reason(frame, "the red car")
    c = tiny.config.sam.prompt_embed_dim
    assert isinstance(r.answer, str) and TRACK_TOKEN not in r.answer
    assert r.referring_query.shape == r.purport_query.shape == (1, c)
    assert r.referring_query.dtype == torch.float32

    features = tiny.encode_frame(frame)
    side = tiny.config.sam.embedding_size
    assert features.embeddings.shape == (1, c, side, side) and features.original_size == size
    d1 = tiny.decode(features, referring_query=r.referring_query, online_query=r.referring_query,
                     purport_query=r.purport_query)
    assert d1.mask.shape == size and d1.mask.dtype == np.bool_
    assert d1.mask_logits.shape == (1, 1, *size) and d1.mask_logits.dtype == torch.float32
    assert 0.0 <= d1.purport_score <= 1.0
    assert d1.next_query.shape == (1, c)
    assert not torch.allclose(d1.next_query, r.referring_query), "propagation must change Q between frames"
    d2 = tiny.decode(tiny.encode_frame(_frame(*size, seed=1)), referring_query=r.referring_query,
                     online_query=d1.next_query, purport_query=r.purport_query)
    assert not torch.allclose(d2.next_query, d1.next_query)


def test_bf16_brain_feeds_fp32_perception():
    model = TrackGPT.from_config("tiny", brain={"precision": "bf16"})
    assert model.brain.dtype == torch.bfloat16
    r = model.reason(_frame(), "the cat")
    assert r.referring_query.dtype == torch.float32
    d = model.decode(model.encode_frame(_frame()), referring_query=r.referring_query,
                     online_query=r.referring_query, purport_query=r.purport_query)
    assert 0.0 <= d.purport_score <= 1.0


def test_bf16_perception():
    model = TrackGPT.from_config("tiny", precision="bf16")
    r = model.reason(_frame(), "the cat")
    assert r.referring_query.dtype == torch.bfloat16
    features = model.encode_frame(_frame())
    assert features.embeddings.dtype == torch.bfloat16
    d = model.decode(features, referring_query=r.referring_query, online_query=r.referring_query,
                     purport_query=r.purport_query)
    assert d.mask_logits.dtype == torch.float32 and 0.0 <= d.purport_score <= 1.0


def test_perception_only_model_has_no_brain():
    model = TrackGPT(config=get_config("tiny"))
    with pytest.raises(BrainError, match="without a brain"):
        model.reason(_frame(), "the cat")
    assert model.encode_frame(_frame()).embeddings.shape[1] == 32


# ---------------------------------------------------------------------- configs
def test_config_round_trip_and_errors():
    for name in CONFIGS:
        cfg = get_config(name)
        assert TrackGPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown configuration"):
        get_config("huge")
    with pytest.raises(ConfigError, match="unknown sam field"):
        TrackGPTConfig.from_dict({"sam": {"depth": 3}})
    with pytest.raises(ConfigError, match="brain.path"):
        get_config("tiny", brain={"source": "folder"})
    with pytest.raises(ConfigError, match="precision"):
        get_config("tiny", brain={"precision": "int3"})
    with pytest.raises(ConfigError, match="sam.img_size = 'big' is not of type int"):
        get_config("tiny", sam={"img_size": "big"})
    with pytest.raises(ConfigError, match="brain.lora_target_modules"):
        TrackGPTConfig.from_dict({"brain": {"lora_target_modules": [1, 2]}})
    assert get_config("llava-7b-sam-vit-h").sam == SAM_SIZES["vit_h"].__class__(
        **{**SAM_SIZES["vit_h"].__dict__, "checkpoint": "models/sam_vit_h_4b8939.pth"})


def test_image_pe_equals_segment_anything():
    parts = SamParts(config=SAM_SIZES["tiny"])
    torch.testing.assert_close(parts.image_pe(), parts.prompt_encoder.get_dense_pe())


def test_padded_vocabulary_reuses_rows_and_initialises_them():
    """llava-hf checkpoints pad the vocabulary: the new tokens take unused rows, which start at the mean."""
    from trackgpt.brain import TrackGPTBrain
    from trackgpt.llava import build_llava, build_tiny_tokenizer

    cfg = CONFIGS["tiny"].brain
    tokenizer = build_tiny_tokenizer()
    vocab = len(tokenizer)
    model = build_llava(vision=dict(cfg.vision), text={**cfg.text, "vocab_size": vocab + 8}, tokenizer=tokenizer,
                        seed=0)
    before = model.get_input_embeddings().weight.detach().clone()
    brain = TrackGPTBrain(model=model, tokenizer=tokenizer, config=cfg)
    emb = brain.model.get_input_embeddings().weight
    assert emb.shape[0] == vocab + 8  # not resized
    assert (brain.track_token_id, brain.purport_token_id) == (vocab, vocab + 1)
    torch.testing.assert_close(emb[vocab], before[:vocab].mean(0))
    torch.testing.assert_close(brain.model.get_output_embeddings().weight[vocab + 1],
                               model.get_output_embeddings().weight[:vocab].mean(0))
    torch.testing.assert_close(emb[vocab + 2 :], before[vocab + 2 :])  # other padding rows untouched


def test_oracle_answer_teacher_forces_the_named_target(tiny):
    from trackgpt.config import NAMED_ANSWER

    torch.manual_seed(0)
    named = TrackGPT.from_config(dataclasses.replace(
        CONFIGS["tiny"], brain=dataclasses.replace(CONFIGS["tiny"].brain, answer_template=NAMED_ANSWER.lstrip())))
    frame = _frame()
    cup = named.reason(frame, "something to drink from", target="red cup")
    key = named.reason(frame, "something to drink from", target="blue key")
    assert cup.answer == "Sure, I track the red cup." and key.answer == "Sure, I track the blue key."
    assert not cup.forced
    assert not torch.allclose(cup.referring_query, key.referring_query)  # the name reaches the states
    again = named.reason(frame, "something to drink from", target="red cup")
    assert torch.equal(cup.referring_query, again.referring_query)
    # the paper's answer names no target: every oracle answer is the same answer, with the same states
    a = tiny.reason(frame, "the dog", target="red cup")
    b = tiny.reason(frame, "the dog", target="blue key")
    assert a.answer == b.answer == "Sure, I track the object."
    assert torch.equal(a.referring_query, b.referring_query)
