"""Building and loading the Hugging Face LLaVA model behind the brain, without the TrackGPT tokens.

A tiny random LLaVA and its byte-level tokenizer (:func:`build_tiny_llava`, tests and the ``tiny``
configurations), a random LLaVA around any text model (:func:`build_llava`, used by :mod:`trackgpt.embedded` for
the SmolLM2 brain), a local LLaVA folder (:func:`load_llava_folder`), and the precision names every part of the
library uses (:data:`DTYPES`, :func:`resolve_precision`). :mod:`trackgpt.brain` adds ``<TK>`` / ``<PO>`` on top.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import BrainConfig
from .errors import BrainError, PrecisionError
from .lisa_tokenizer import LisaTokenizer, is_lisa_tokenizer_folder

IMAGE_TOKEN = "<image>"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str) -> tuple[torch.dtype, Any]:
    """Map a precision name to ``(dtype, quantization_config or None)``.

    Raises:
        PrecisionError: unknown name, or ``int8`` / ``int4`` without bitsandbytes and CUDA.
    """
    if precision in DTYPES:
        return DTYPES[precision], None
    if precision not in ("int8", "int4"):
        raise PrecisionError(f"unknown precision {precision!r}; use fp32, bf16, fp16, int8 or int4")
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package")
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    if missing:
        raise PrecisionError(f"precision {precision!r} needs {' and '.join(missing)}; use fp32, bf16 or fp16 here")
    from transformers import BitsAndBytesConfig

    if precision == "int8":
        return torch.float16, BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["vision_tower", "lm_head"])
    return torch.float16, BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=["vision_tower", "lm_head"],
    )


TINY_CORPUS = (
    "USER: ASSISTANT: Can you track the object in the video? Sure, I track the object. "
    "Who will win the race? the person the car the dog the cat the red ball on the left right "
    "Please follow it. What is moving? track follow find the one that is"
)


def build_tiny_tokenizer() -> Any:
    """A small byte-level BPE tokenizer (any UTF-8 text) with ``<s>``, ``</s>``, ``<pad>``, ``<unk>``, ``<image>``.

    Deterministic (trained on a fixed corpus), so tiny brains built twice agree.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TINY_CORPUS], trainer=trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def build_llava(
    *, vision: dict[str, Any], text: Any, tokenizer: Any, seed: int, projector_hidden_act: str = "gelu"
) -> nn.Module:
    """A randomly initialised ``LlavaForConditionalGeneration`` from a CLIP vision config and a text config.

    Args:
        vision: ``CLIPVisionConfig`` keyword arguments.
        text: a ``LlamaConfig`` (or its keyword arguments; the vocabulary defaults to the tokenizer's).
        tokenizer: provides the ``<image>`` token id.
        seed: random initialisation seed.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    if isinstance(text, dict):
        text = LlamaConfig(**{"vocab_size": len(tokenizer), **text})
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=text,
        image_token_index=int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)),
        image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
        projector_hidden_act=projector_hidden_act,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(cfg)
    return model.eval()


class SamVisionTokens(nn.Module):
    """Stands in for a LLaVA vision tower when the brain sees through the perception's SAM image encoder
    (``BrainConfig.vision_source == "sam"``): its "pixel values" are SAM image embeddings ``B x C x h x w``,
    average-pooled to ``grid x grid`` tokens; every hidden state LLaVA may select holds a zero class token (which
    its "default" feature selection drops) followed by those tokens, so LLaVA's projector and token splicing run
    unchanged. No weights."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = int(grid)

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        tokens = F.adaptive_avg_pool2d(pixel_values, self.grid).flatten(2).transpose(1, 2)
        hidden = torch.cat([tokens.new_zeros(tokens.shape[0], 1, tokens.shape[2]), tokens], dim=1)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden, pooler_output=hidden[:, 0], hidden_states=(hidden,) * 2
        )


def use_sam_tokens(model: nn.Module) -> None:
    """Replace a LLaVA model's vision tower by :class:`SamVisionTokens` on its own token grid (image size over patch
    size of its vision config)."""
    vc = model.config.vision_config
    owner = model.model if hasattr(model, "model") and hasattr(model.model, "vision_tower") else model
    owner.vision_tower = SamVisionTokens(int(vc.image_size) // int(vc.patch_size))


def build_tiny_llava(config: BrainConfig) -> tuple[nn.Module, Any]:
    """A tiny random LLaVA and its tokenizer (without ``<TK>`` / ``<PO>``; the brain adds them)."""
    tokenizer = build_tiny_tokenizer()
    model = build_llava(vision=dict(config.vision), text=dict(config.text), tokenizer=tokenizer, seed=config.seed)
    return model, tokenizer


def _read_image_stats(folder: Path) -> tuple[Any, Any]:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, None
    mean, std = data.get("image_mean"), data.get("image_std")
    ok = isinstance(mean, list) and isinstance(std, list) and len(mean) == 3 and len(std) == 3
    return (tuple(mean), tuple(std)) if ok else (None, None)


def load_llava_folder(
    folder: str | Path, *, precision: str = "fp32", tokenizer_folder: str | Path | None = None
) -> tuple[nn.Module, Any, tuple[Any, Any]]:
    """Load a local Hugging Face LLaVA folder: ``(model, tokenizer, (image_mean, image_std))``.

    Raises:
        BrainError: the folder or its config is missing, or it is not a LLaVA model.
        PrecisionError: see :func:`resolve_precision`.
    """
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise BrainError(f"brain folder {folder} does not exist or has no config.json")
    try:
        cfg = json.loads(cfg_path.read_text())
        model_type = cfg.get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise BrainError(f"{cfg_path} is not a valid config: {exc}") from exc
    if foreign_checkpoint(cfg):
        raise BrainError(f"brain folder {folder}: {foreign_checkpoint(cfg)}")
    if model_type != "llava":
        raise BrainError(f"brain folder {folder} holds model_type={model_type!r}; TrackGPT needs a 'llava' model")
    dtype, quant = resolve_precision(precision)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map="auto")
    tok_from = Path(tokenizer_folder or folder)
    try:
        if is_lisa_tokenizer_folder(tok_from):  # an imported LISA brain: transformers 4.31's rules, not AutoTokenizer's
            tokenizer = LisaTokenizer.from_folder(tok_from)
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(tok_from))
    except BrainError:
        raise
    except Exception as exc:  # tokenizers raise many kinds (JSON, protobuf, OSError): name the folder read
        raise BrainError(f"cannot load the tokenizer from {tok_from}: {type(exc).__name__}: {exc}") from None
    try:
        model, info = LlavaForConditionalGeneration.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise BrainError(f"cannot load the brain from {folder}: {exc}") from exc
    problems = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):  # Hugging Face only warns; a brain with tensors left at random is refused
        named = "; ".join(f"{k.replace('_', ' ')} {_first(v)}" for k, v in problems.items() if v)
        raise BrainError(f"brain folder {folder} does not fit a LLaVA model: {named}")
    return model.eval(), tokenizer, _read_image_stats(folder)


def _first(keys: list, n: int = 5) -> str:
    shown = ", ".join(str(k) for k in keys[:n])
    return f"{shown} (+{len(keys) - n} more)" if len(keys) > n else shown


def foreign_checkpoint(config: dict) -> str | None:
    """Why a Hugging Face ``config.json`` describes a published checkpoint that must be imported before this
    workspace can load it (None otherwise). LISA (``LISAForCausalLM``) keeps the original LLaVA layout, a SAM and
    ``text_hidden_fcs`` in one folder and no CLIP weights: read as a LLaVA folder, most of it would be skipped or
    left at random."""
    if "LISAForCausalLM" in (config.get("architectures") or []):
        return (
            "a LISA checkpoint (LISAForCausalLM, the original LLaVA layout with SAM and [SEG]); it cannot be "
            "loaded as it is: import it first with "
            "`perception-models import lisa LISA_FOLDER NEW_FOLDER --clip CLIP_FOLDER` and give NEW_FOLDER as model:="
        )
    return None
