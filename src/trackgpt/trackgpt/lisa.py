"""Import a LISA checkpoint (dvlab-research/LISA; ``xinlai/LISA-7B-v1``, ``LISA-13B-llama2-v1``, ``-explanatory``)
as a TrackGPT model folder that ``tracker_node`` takes as ``model:=``.

A released LISA folder holds ``LISAForCausalLM`` (``model/LISA.py``): LLaVA in its original layout (LLaMA
``model.layers.*``, ``lm_head``, a ``model.mm_projector``), SAM as ``model.visual_model.*`` and
``model.text_hidden_fcs`` (Linear(H, H) -> ReLU -> Linear(H, 256): TrackGPT's phi), with LLaMA's sentencepiece
tokenizer and the added ``[SEG]`` (TrackGPT's referring token), ``<im_start>``, ``<im_end>``. It carries no CLIP
weights (``merge_lora_weights_and_save_hf_model.py`` drops every ``vision_tower`` key; ``chat.py`` loads
``openai/clip-vit-large-patch14`` by name), so the import takes a local CLIP folder too.

What the import writes (every LISA tensor placed, or it stops naming the one it cannot place):

* ``brain/``: a Hugging Face LLaVA folder (``LlavaForConditionalGeneration``): LLaMA -> ``model.language_model.*``
  and ``lm_head``; CLIP ``vision_model.*`` -> ``model.vision_tower.*``; LISA's single ``mm_projector`` Linear
  (``model/llava/model/multimodal_projector``... ``llava_arch.py``: ``nn.Linear(mm_hidden_size, hidden_size)``) as
  the projector's ``linear_1`` with an identity ``linear_2`` and a ``linear`` activation, which computes exactly
  the same (a two-layer LLaVA-1.5 projector, ``mm_projector.0/.2``, maps directly); CLIP's
  ``preprocessor_config.json``; the tokenizer (LISA's, with an ``<image>`` token the Hugging Face model needs and
  the ``<PO>`` the TrackGPT brain holds; both are suppressed in generation, so LISA's greedy answers come out);
* the TrackGPT folder itself: SAM (``model.visual_model.{image_encoder, prompt_encoder, mask_decoder}``) ->
  ``perception.sam.*``, ``text_hidden_fcs.0.{0,2}`` -> phi ``projection.layers.{0,2}``, and the configuration that
  runs it as LISA runs it (``brain.style="lisa"``: :mod:`trackgpt.lisa_tokenizer`, CLIP's resize and crop, greedy
  answers that stop at EOS, the state before the first ``[SEG]``; ``online_query=False``: SAM prompted by Q_R alone;
  ``purport_source="iou"``: LISA has no purport head, S_p is SAM's IoU prediction, a documented deviation).

Checked against LISA's own code on a small random-weight instance: ``tests/trackgpt/fixtures/lisa``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from perception_common.checkpoint import load_pth_state_dict, read_json_object

from .brain import LISA_SEG_TOKEN, PURPORT_TOKEN
from .config import LISA_PROMPT, SAM_SIZES, BrainConfig, SamConfig, TrackGPTConfig
from .errors import CheckpointError
from .lisa_tokenizer import IMAGE_TOKEN, LisaTokenizer
from .sam import build_sam

BRAIN_DIR = "brain"
SHARD_BYTES = 2 * 1024**3
#: chat.py's ``--max_new_tokens`` default
LISA_MAX_NEW_TOKENS = 512


# ------------------------------------------------------------------ reading
def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a Hugging Face folder: sharded or single ``.bin`` (read with ``weights_only``) or
    safetensors."""
    from safetensors.torch import load_file

    files: list[Path] = []
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            shards = sorted(set(read_json_object(folder / index).get("weight_map", {}).values()))
            files = [folder / s for s in shards]
            break
    else:
        files = [p for p in (folder / "model.safetensors", folder / "pytorch_model.bin") if p.is_file()][:1]
    if not files:
        raise CheckpointError(f"{folder} holds no weights (model.safetensors, pytorch_model.bin or an index)")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if not path.is_file():
            raise CheckpointError(f"{folder}: shard {path.name} named in the index is missing")
        try:
            part = load_file(str(path)) if path.suffix == ".safetensors" else load_pth_state_dict(path)
        except CheckpointError:
            raise
        except Exception as exc:  # safetensors raises its own kinds for a truncated file
            raise CheckpointError(f"cannot read {path}: {exc}") from None
        state.update(part)
    return state


def read_lisa_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A released LISA folder's ``config.json`` and tensors (CheckpointError when it is not one)."""
    folder = Path(folder)
    config = read_json_object(folder / "config.json")
    if "LISAForCausalLM" not in (config.get("architectures") or []):
        found = config.get("architectures")
        raise CheckpointError(f"{folder} is not a LISA folder (config.json architectures: {found})")
    return config, _read_weights(folder)


def read_clip_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """A CLIP folder (``openai/clip-vit-large-patch14`` or a vision-only one): vision config, the vision tower's
    tensors without their ``vision_model.`` prefix, and ``preprocessor_config.json``."""
    folder = Path(folder)
    config = read_json_object(folder / "config.json")
    vision = config.get("vision_config", config) if config.get("model_type") == "clip" else config
    if vision.get("model_type") not in ("clip_vision_model", None) and config.get("model_type") != "clip":
        raise CheckpointError(f"{folder} is not a CLIP folder (model_type {config.get('model_type')!r})")
    preprocessor = read_json_object(folder / "preprocessor_config.json")
    state = {k[len("vision_model."):]: v for k, v in _read_weights(folder).items() if k.startswith("vision_model.")}
    if not state:
        raise CheckpointError(f"{folder} holds no vision_model.* tensors (not a CLIP vision tower)")
    keep = {k: v for k, v in vision.items() if k in _CLIP_VISION_FIELDS}
    return keep, state, preprocessor


_CLIP_VISION_FIELDS = (
    "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads",
    "num_channels", "image_size", "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout",
    "initializer_range", "initializer_factor",
)


# ---------------------------------------------------------------- the brain
def _llava_config(lisa: dict[str, Any], vision: dict[str, Any], vocab: int, image_id: int, tokenizer,
                  projector_act: str):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    text = LlamaConfig(
        vocab_size=vocab,
        hidden_size=lisa["hidden_size"],
        intermediate_size=lisa["intermediate_size"],
        num_hidden_layers=lisa["num_hidden_layers"],
        num_attention_heads=lisa["num_attention_heads"],
        num_key_value_heads=lisa.get("num_key_value_heads") or lisa["num_attention_heads"],
        max_position_embeddings=lisa.get("max_position_embeddings", 2048),
        rms_norm_eps=lisa.get("rms_norm_eps", 1e-6),
        rope_theta=lisa.get("rope_theta", 10000.0),
        hidden_act=lisa.get("hidden_act", "silu"),
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_cfg = CLIPVisionConfig(**vision)
    return LlavaConfig(
        vision_config=vision_cfg,
        text_config=text,
        image_token_index=image_id,
        image_seq_length=(vision_cfg.image_size // vision_cfg.patch_size) ** 2,
        vision_feature_layer=int(lisa.get("mm_vision_select_layer", -2)),
        # LLaVA v1 (llava_arch.py, CLIPVisionTower.feature_select): "patch" drops CLS, as "default" does here
        vision_feature_select_strategy="default" if lisa.get("mm_vision_select_feature", "patch") == "patch"
        else "full",
        projector_hidden_act=projector_act,
        tie_word_embeddings=False,
    )


def _brain_tensors(lisa_state: dict[str, torch.Tensor], clip_state: dict[str, torch.Tensor], expected: dict,
                   rows: int) -> dict[str, torch.Tensor]:
    """The LLaVA brain's tensors under Hugging Face's names (``expected``: name -> shape of the target model)."""
    out: dict[str, torch.Tensor] = {}
    hidden = expected["lm_head.weight"][1]
    for name in expected:
        if name.startswith("model.language_model."):
            source = "model." + name[len("model.language_model."):]
        elif name.startswith("model.vision_tower."):
            rest = name[len("model.vision_tower."):]
            rest = rest[len("vision_model."):] if rest.startswith("vision_model.") else rest
            out[name] = clip_state.get(rest)
            continue
        elif name == "lm_head.weight":
            source = "lm_head.weight"
        else:
            continue
        out[name] = lisa_state.get(source)
    proj = "model.multi_modal_projector."
    if "model.mm_projector.weight" in lisa_state:  # LISA's single Linear: linear_2 is the identity
        out[proj + "linear_1.weight"] = lisa_state["model.mm_projector.weight"]
        out[proj + "linear_1.bias"] = lisa_state["model.mm_projector.bias"]
        out[proj + "linear_2.weight"] = torch.eye(hidden, dtype=lisa_state["model.mm_projector.weight"].dtype)
        out[proj + "linear_2.bias"] = torch.zeros(hidden, dtype=lisa_state["model.mm_projector.bias"].dtype)
    elif "model.mm_projector.0.weight" in lisa_state:  # mlp2x_gelu (LLaVA-1.5)
        for i, j in ((1, 0), (2, 2)):
            out[proj + f"linear_{i}.weight"] = lisa_state[f"model.mm_projector.{j}.weight"]
            out[proj + f"linear_{i}.bias"] = lisa_state[f"model.mm_projector.{j}.bias"]
    missing = sorted(k for k in expected if out.get(k) is None)
    if missing:
        raise CheckpointError(f"the LISA / CLIP folders lack {len(missing)} tensor(s) the brain needs: "
                              f"{', '.join(missing[:5])}")
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        out[name] = _grow_rows(out[name], rows)
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(expected[k])}" for k, v in out.items()
           if k in expected and tuple(v.shape) != tuple(expected[k])]
    if bad:
        raise CheckpointError(f"LISA tensors do not fit the brain: {'; '.join(bad[:3])}")
    return {k: v.contiguous() for k, v in out.items() if k in expected}


def _grow_rows(matrix: torch.Tensor, rows: int) -> torch.Tensor:
    """Embedding rows for tokens LISA does not have (``<image>``, ``<PO>``): the mean of LISA's rows, as the
    TrackGPT brain initialises tokens it adds (never generated: suppressed; the image token's row is replaced by
    image features)."""
    if matrix.shape[0] >= rows:
        return matrix
    extra = matrix.float().mean(0, keepdim=True).expand(rows - matrix.shape[0], -1).to(matrix.dtype)
    return torch.cat([matrix, extra])


def _save_sharded(tensors: dict[str, torch.Tensor], folder: Path) -> None:
    """Hugging Face's sharded safetensors layout (one file when it fits ``SHARD_BYTES``)."""
    from safetensors.torch import save_file

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )


def write_brain_folder(lisa_folder: Path, lisa: dict[str, Any], lisa_state: dict[str, torch.Tensor],
                       clip_folder: Path, dst: Path) -> LisaTokenizer:
    """The LLaVA brain folder (module docstring); returns its tokenizer."""
    from transformers import LlavaForConditionalGeneration

    vision, clip_state, preprocessor = read_clip_folder(clip_folder)
    tokenizer = LisaTokenizer.from_folder(lisa_folder)
    if LISA_SEG_TOKEN not in tokenizer.added:
        raise CheckpointError(f"{lisa_folder}'s tokenizer has no {LISA_SEG_TOKEN} token (added_tokens.json)")
    rows = int(lisa_state["lm_head.weight"].shape[0]) if "lm_head.weight" in lisa_state else len(tokenizer)
    if rows < len(tokenizer):
        raise CheckpointError(f"LISA's lm_head has {rows} rows for a tokenizer of {len(tokenizer)} tokens")
    if rows > len(tokenizer):  # padded vocabulary: the new tokens take rows no token uses
        tokenizer.add_tokens([f"<lisa_unused_{i}>" for i in range(rows - len(tokenizer))])
    tokenizer.add_tokens([IMAGE_TOKEN])
    tokenizer.add_special_tokens({"extra_special_tokens": [PURPORT_TOKEN]})
    single = "model.mm_projector.weight" in lisa_state
    config = _llava_config(lisa, vision, len(tokenizer), tokenizer.added[IMAGE_TOKEN], tokenizer,
                           "linear" if single else "gelu")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in LlavaForConditionalGeneration(config).state_dict().items()}
    tensors = _brain_tensors(lisa_state, clip_state, shapes, len(tokenizer))
    dst.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(dst))
    _save_sharded(tensors, dst)
    (dst / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=1))
    tokenizer.save_pretrained(dst)
    return tokenizer


# ------------------------------------------------------------ the perception
def _sam_config(state: dict[str, torch.Tensor]) -> SamConfig:
    """The registered SAM size whose tensors are exactly LISA's ``visual_model`` ones."""
    names = {k: tuple(v.shape) for k, v in state.items()}
    for size in SAM_SIZES.values():
        with torch.device("meta"):
            own = {k: tuple(v.shape) for k, v in build_sam(size).state_dict().items()}
        if own == names:
            return size
    raise CheckpointError("LISA's SAM (model.visual_model.*) matches none of the known SAM sizes "
                          f"({', '.join(SAM_SIZES)})")


def import_lisa(
    lisa_folder: str | Path,
    clip_folder: str | Path,
    dst: str | Path,
    *,
    precision: str = "bf16",
    perception_precision: str = "fp32",
    max_new_tokens: int = LISA_MAX_NEW_TOKENS,
) -> Path:
    """Write a TrackGPT model folder at ``dst`` from a LISA folder and a CLIP folder (module docstring).

    The brain is loaded once through the project's loader (at ``precision``, fp16 for int4/int8; memory: about 2
    bytes a parameter), which checks that every tensor fits; then the folder is saved as any TrackGPT model and
    ``precision`` is what the nodes load it at.

    Raises:
        CheckpointError: a folder that is not LISA / CLIP, a tensor that is missing or does not fit (named).
    """
    from .brain import load_brain
    from .model import TrackGPT

    lisa_folder, clip_folder, dst = Path(lisa_folder), Path(clip_folder), Path(dst)
    lisa, state = read_lisa_folder(lisa_folder)
    sam_state = {k[len("model.visual_model."):]: v for k, v in state.items() if k.startswith("model.visual_model.")}
    phi = {k: v for k, v in state.items() if k.startswith("model.text_hidden_fcs.")}
    used = {"lm_head.weight", "model.mm_projector.weight", "model.mm_projector.bias"}
    leftover = sorted(
        k for k in state
        if k not in used and not k.startswith(("model.visual_model.", "model.text_hidden_fcs.", "model.layers.",
                                                "model.embed_tokens.", "model.norm.", "model.mm_projector."))
        and not k.endswith("rotary_emb.inv_freq")
    )
    if leftover:
        raise CheckpointError(f"{lisa_folder} has {len(leftover)} tensor(s) the import does not know: "
                              f"{', '.join(leftover[:5])}")
    if dst.exists() and any(dst.iterdir()):
        raise CheckpointError(f"{dst} exists and is not empty")
    tmp = dst.with_name(dst.name + ".importing")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_brain_folder(lisa_folder, lisa, state, clip_folder, tmp / BRAIN_DIR)
        config = TrackGPTConfig(
            name=f"lisa:{lisa_folder.name}",
            sam=dataclasses.replace(_sam_config(sam_state), resize="pil"),  # LISA resizes through PIL
            brain=BrainConfig(source="folder", path=BRAIN_DIR, style="lisa", precision=precision,
                              max_new_tokens=max_new_tokens, prompt_template=LISA_PROMPT),
            projection_depth=2,
            purport_source="iou",
            online_query=False,
            precision=perception_precision,
        ).validate()
        # loaded once to check every tensor fits; 4/8-bit is a load-time choice of the nodes (needs CUDA)
        check_precision = precision if precision in ("fp32", "bf16", "fp16") else "fp16"
        brain = load_brain(dataclasses.replace(config.brain, precision=check_precision), base_dir=tmp)
        model = TrackGPT(config=config, brain=brain)
        _load_perception(model, sam_state, phi, str(lisa_folder))
        model.save_pretrained(tmp)
        if dst.exists():
            dst.rmdir()
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _load_perception(model, sam_state: dict[str, torch.Tensor], phi: dict[str, torch.Tensor], source: str) -> None:
    from perception_common.checkpoint import load_strict

    load_strict(model.perception.sam, sam_state, f"{source} model.visual_model")
    mapped = {}
    for key, value in phi.items():  # text_hidden_fcs.0 = Sequential(Linear, ReLU, Linear, Dropout)
        rest = key[len("model.text_hidden_fcs.0."):] if key.startswith("model.text_hidden_fcs.0.") else key
        mapped[f"layers.{rest}"] = value
    load_strict(model.projection, mapped, f"{source} model.text_hidden_fcs")


__all__ = ["BRAIN_DIR", "import_lisa", "read_clip_folder", "read_lisa_folder", "write_brain_folder"]
