"""TrackGPT: the brain, phi, and the perception component, with a self-describing checkpoint folder.

Like ``SamPredictor``, the heavy per-frame step and the cheap per-query step
are separate:

* :meth:`TrackGPT.encode_frame` runs the (frozen) SAM image encoder once per frame;
* :meth:`TrackGPT.decode` runs the revamped decoder with the current queries
  (Q_R, Q_t, Q_p) and gives the mask, S_p and the next online query Q_{t+1};
* :meth:`TrackGPT.reason` runs the LVLM brain (rarely) and gives the answer
  text, Q_R and Q_p (paper Eq. 1).

Checkpoint folder (:meth:`TrackGPT.save_pretrained` / :meth:`TrackGPT.from_pretrained`)::

    config.json          model_type "trackgpt", the TrackGPTConfig, the token ids
    model.safetensors    perception.* (decoder, prompt encoder, purport head, propagation;
                         the image encoder too unless the config names a SAM checkpoint),
                         projection.* (phi), brain.added_tokens.* (<TK>/<PO> embedding rows),
                         brain.multi_modal_projector.* (only when the config trains it),
                         brain.vision_tower.* (only when the config trains it)
    tokenizer/           the brain's tokenizer with <TK> and <PO>
    brain_adapter/       the LoRA adapter in peft's format (only when the brain has one)

The brain's base weights are not copied: the config references them (a LLaVA
folder by path, relative paths resolved against the checkpoint folder; the
``tiny`` and ``smollm2`` brains are rebuilt deterministically from their seed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perception_common.checkpoint import load_strict, read_config, read_tensors, save_folder
from perception_common.compiled import Compiled
from perception_common.images import to_rgb8
from perception_common.precision import resolve_frame_precision
from perception_common.tracing import Traced

from .brain import DTYPES, PURPORT_TOKEN, TRACK_TOKEN, TrackGPTBrain, load_brain
from .config import TrackGPTConfig, get_config
from .decoder import PurportHead
from .errors import BrainError, CheckpointError, ConfigError
from .frame_path import FastImageEncoder, FastMaskDecoder, FastPostprocess
from .objects import ObjectProposer, describe_objects, index_mask_objects
from .projection import ReferringProjection
from .propagation import ReferringPropagation
from .sam import SamParts, SamTransform, build_sam
from .scene import ObjectNamer, scene_objects, scene_text

MODEL_TYPE = "trackgpt"
FORMAT_VERSION = 1
TOKENIZER_DIR = "tokenizer"
ADAPTER_DIR = "brain_adapter"
NAMER_DIR = "namer_adapter"


@dataclass
class FrameFeatures:
    """One encoded frame (f_t).

    Attributes:
        embeddings: ``1 x C x h x w`` image encoder output.
        input_size: ``(h, w)`` of the resized frame inside the padded SAM input.
        original_size: ``(H, W)`` of the frame.
    """

    embeddings: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


@dataclass
class Decoded:
    """Result of decoding one frame.

    Attributes:
        mask: ``H x W`` bool mask at the frame's size.
        mask_logits: ``1 x 1 x H x W`` float32 logits.
        purport_score: S_p in ``[0, 1]``.
        iou_score: SAM's own IoU estimate of the mask (not squashed).
        next_query: ``1 x C`` Q_{t+1}.
    """

    mask: np.ndarray
    mask_logits: torch.Tensor
    purport_score: float
    iou_score: float
    next_query: torch.Tensor


@dataclass
class Reasoning:
    """Result of the brain (paper Eq. 1).

    Attributes:
        answer: text feedback T.
        referring_query: ``1 x C`` Q_R.
        purport_query: ``1 x C`` Q_p.
        forced: True when the brain did not generate ``<TK>`` / ``<PO>`` and they were appended.
    """

    answer: str
    referring_query: torch.Tensor
    purport_query: torch.Tensor
    forced: bool = False


class Perception(nn.Module):
    """The perception component F_percep (paper Eq. 2-3): SAM, the purport head, the propagation.

    Args:
        config: the model configuration (``sam`` sizes, head sizes, ``precision``).
    """

    def __init__(self, *, config: TrackGPTConfig) -> None:
        super().__init__()
        dim = config.sam.prompt_embed_dim
        self.sam: SamParts = build_sam(config.sam)
        # an imported LISA has neither (config.purport_source "iou", online_query False): see TrackGPTConfig
        self.purport_head = (
            PurportHead(dim=dim, hidden_dim=config.purport_head_hidden_dim, depth=config.purport_head_depth)
            if config.purport_source == "head" else None
        )
        self.propagation = (
            ReferringPropagation(
                dim=dim, num_heads=config.propagation_num_heads,
                adapter_hidden_dim=config.propagation_adapter_hidden_dim,
            )
            if config.online_query else None
        )
        # a brain whose tokens are the frame's objects, or that names them first: they are proposed on this
        # perception's image embedding
        proposes = config.brain.vision_source == "objects" or config.brain.naming == "scene"
        self.object_proposer = ObjectProposer(config.sam) if proposes else None
        self.transform = SamTransform(config=config.sam)
        self.mask_threshold = config.sam.mask_threshold
        self.sam.image_encoder.requires_grad_(False)  # frozen (paper Sec. 3.4)
        self.__dict__["_frame_path"] = ()  # see set_frame_precision

    @property
    def dtype(self) -> torch.dtype:
        return self.sam.mask_decoder.iou_token.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.sam.mask_decoder.iou_token.weight.device

    @property
    def frame_precision(self) -> str | None:
        """The frame path's image encoder precision (``fp32`` / ``bf16``), None while the model's own modules run
        it (see :meth:`set_frame_precision`)."""
        return self._frame_path[0] if self._frame_path else None

    @property
    def frame_compiled(self) -> bool:
        """True while the image encoder runs through a compiled package (:meth:`compile_frame_path`)."""
        return bool(self._frame_path) and isinstance(self._frame_path[1], Compiled)

    def set_frame_precision(self, precision: str | None) -> None:
        """Decode frames through the inference forms of the encoder and decoder (:mod:`trackgpt.frame_path`).

        ``bf16`` runs the image encoder in bf16 (for CPUs with native bf16), ``fp32`` in the model's own dtype,
        ``auto`` picks one for this model's device (:func:`perception_common.precision.resolve_frame_precision`,
        whose ``PrecisionError`` names any other value); the decoding step always runs in the model's dtype (bf16
        is slower there on CPU and moves mask edges); both run as TorchScript traces
        (:class:`perception_common.tracing.Traced`) and the logits reach the frame's size through
        :class:`trackgpt.frame_path.FastPostprocess`. In fp32 they
        give the model's outputs to float rounding. The traces are made and optimised here, on a blank frame (about
        0.6 s for the embedded model on 2 CPU cores), so that the first camera frame is not that late. None goes back
        to the model's own modules (training, gradients). The encoder's bf16 weights are copies read once: call it
        again after loading new ones. The forms are plain attributes, not submodules: not in the state dict, not
        moved by ``to``.
        """
        if precision is None:
            self.__dict__["_frame_path"] = ()
            return
        precision = resolve_frame_precision(precision, str(self.device))
        encoder_dtype = torch.bfloat16 if precision == "bf16" else self.dtype
        self.__dict__["_frame_path"] = (
            precision,
            Traced(FastImageEncoder(self.sam.image_encoder, encoder_dtype).to(self.device)),
            Traced(FastMaskDecoder(self)),
            FastPostprocess(self.transform.img_size),
        )
        size, width = self.transform.img_size, self.sam.config.prompt_embed_dim
        blank = torch.zeros(1, 3, size, size, device=self.device)
        query = torch.zeros(1, width, device=self.device, dtype=self.dtype)
        self._frame_path[2].prepare(self._frame_path[1].prepare(blank).to(self.dtype), query, query, query)

    def compile_frame_path(self, *, build: bool = True, directory: Path | None = None,
                           threads: int | None = None) -> Compiled | None:
        """Run the frame path's image encoder through an AOTInductor package
        (:class:`perception_common.compiled.Compiled`: its element-wise work fused into generated C++, its weights
        pre-packed) instead of its trace: loaded from the cache when this machine built it before (milliseconds),
        else built here when ``build`` (about a minute on 2 CPU cores). The decoding step keeps its trace (compiled,
        it was slower). Other input signatures than the frame path's (one frame) keep running through the trace.
        ``threads``: the torch threads of the thread that will encode frames (default ``torch.get_num_threads()``;
        a package runs on as many threads as it was built for, see :class:`Compiled`).

        Returns:
            the :class:`Compiled` encoder (``cached``, ``seconds``, ``path``), or None when it is not cached and
            ``build`` is False (the frame path is unchanged).

        Raises:
            RuntimeError: no frame path is set (:meth:`set_frame_precision`).
            perception_common.compiled.CompileError: building failed (e.g. no C++ compiler); the trace stays.
        """
        path = self._frame_path
        if not path:
            raise RuntimeError("compile_frame_path: set a frame precision first")
        precision, encoder, decoder, postprocess = path
        encoder = getattr(encoder, "fallback", None) or encoder  # a Compiled already: its trace
        size = self.transform.img_size
        blank = torch.zeros(1, 3, size, size, device=self.device)
        compiled = Compiled(encoder.module, (blank,), fallback=encoder, directory=directory, threads=threads)
        if not build and not compiled.path.is_file():
            return None
        compiled.build()
        compiled(blank)  # the first call of a package allocates its buffers
        self.__dict__["_frame_path"] = (precision, compiled, decoder, postprocess)
        return compiled

    @torch.no_grad()
    def encode_frame(self, frame: np.ndarray) -> FrameFeatures:
        """Encode one frame (any layout :func:`perception_common.images.to_rgb8` accepts, RGB order)."""
        rgb = to_rgb8(frame)
        x, input_size = self.transform.preprocess(rgb)
        if self._frame_path:
            emb = self._frame_path[1](x.to(self.device)).to(self.dtype)
        else:
            emb = self.sam.image_encoder(x.to(self.device, self.dtype))
        return FrameFeatures(emb, input_size, (int(rgb.shape[0]), int(rgb.shape[1])))

    def forward(
        self,
        image_embeddings: torch.Tensor,
        referring_query: torch.Tensor,
        online_query: torch.Tensor,
        purport_query: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Differentiable decode (training): D(f_t, Q_R, Q_t, Q_p) -> m_t, S_p, Q_{t+1} (paper Eq. 3).

        Args:
            image_embeddings: ``B x C x h x w``.
            referring_query, online_query, purport_query: ``B x C`` each.

        Returns:
            ``(low_res_mask_logits B x 1 x 4h x 4w, purport_scores B, iou_predictions B, next_query B x C)``.
        """
        dtype = self.dtype
        q_r, q_t, q_p = (q.to(dtype) for q in (referring_query, online_query, purport_query))
        if self.purport_head is None:  # purport_source "iou": a neutral Q_p leaves SAM's IoU token as it is
            q_p = torch.ones_like(q_r)
        pe = self.sam.image_pe()
        out = self.sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=pe,
            prompt_tokens=torch.stack([q_r, q_t] if self.propagation is not None else [q_r], dim=1),
            purport_query=q_p,
            dense_prompt=self.sam.dense_prompt(image_embeddings.shape[0]),
        )
        iou = out.iou_prediction[:, 0]
        scores = self.purport_head(out.purport_token) if self.purport_head is not None else iou.clamp(0.0, 1.0)
        if self.propagation is None:  # no online query: every frame is prompted by Q_R alone (LISA)
            next_query = q_r
        else:
            next_query = self.propagation(
                online_query=q_t, referring_query=q_r, image_embeddings=image_embeddings, image_pe=pe
            )
        return out.mask_logits, scores, iou, next_query

    @torch.no_grad()
    def decode(
        self,
        features: FrameFeatures,
        *,
        referring_query: torch.Tensor,
        online_query: torch.Tensor,
        purport_query: torch.Tensor,
    ) -> Decoded:
        """Decode one encoded frame with the current queries (each ``1 x C``)."""
        step = self._frame_path[2] if self._frame_path else self.forward
        postprocess = self._frame_path[3] if self._frame_path else self.transform.postprocess
        low, scores, iou, next_query = step(features.embeddings, referring_query, online_query, purport_query)
        logits = postprocess(low, features.input_size, features.original_size)
        mask = (logits[0, 0] > self.mask_threshold).cpu().numpy()
        return Decoded(mask, logits, float(scores[0]), float(iou[0]), next_query)


def build_projection(config: TrackGPTConfig, hidden_size: int) -> ReferringProjection:
    """phi for ``config`` (depth, input standardisation) from the brain's ``hidden_size`` to the decoder's width."""
    return ReferringProjection(
        hidden_size=hidden_size,
        out_dim=config.sam.prompt_embed_dim,
        depth=config.projection_depth,
        input_norm=config.projection_input_norm,
    )


class TrackGPT(nn.Module):
    """The whole tracker model: brain (LLaVA + tokens + LoRA), phi, perception.

    Args:
        config: the model configuration (see :mod:`trackgpt.config`).
        brain: the brain; ``None`` builds a perception-only model (``reason`` then raises
            :class:`BrainError`; phi is not built). Use :meth:`from_config` to build one with its brain.
    """

    def __init__(self, *, config: TrackGPTConfig, brain: TrackGPTBrain | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.perception = Perception(config=config)
            self.projection = build_projection(config, brain.hidden_size) if brain is not None else None
        dtype = DTYPES[config.precision]
        self.perception.to(dtype)
        if self.projection is not None:
            self.projection.to(dtype)
        self.brain = brain
        self.object_namer = None
        if brain is not None and config.brain.naming == "scene":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self.object_namer = ObjectNamer(config.brain.namer_colours, config.brain.namer_categories)
        if brain is not None and brain.config.vision_source == "sam":
            brain.attach_image_encoder(self._sam_image)  # the brain sees the frame through this SAM encoder
        if brain is not None and brain.config.vision_source == "objects":
            brain.attach_object_reader(self._object_descriptors)  # ... and its objects, proposed on it
        self.eval()

    def _object_descriptors(self, frame: np.ndarray, objects: np.ndarray | None = None) -> torch.Tensor:
        """``1 x slots x D``: the descriptors of ``objects`` (an index mask) or of the proposed objects."""
        perception = self.perception
        if perception is None or perception.object_proposer is None:
            raise BrainError("brain.vision_source 'objects' needs the perception's image encoder and object proposer")
        features = perception.encode_frame(frame)
        masks = self._frame_objects(frame, objects, features=features)
        slots = self.brain.submodule("vision_tower").slots
        rgb = to_rgb8(frame)
        return describe_objects(
            rgb, masks, features.embeddings, features.input_size, img_size=perception.transform.img_size, slots=slots
        )[None]

    def _frame_objects(
        self, frame: np.ndarray, objects: np.ndarray | None = None, *, features: FrameFeatures | None = None
    ) -> list[np.ndarray]:
        """The frame's objects (``H x W`` bool masks): those of the index mask ``objects`` or of
        :meth:`objects_given`, or the ones proposed on ``features`` (the frame's, encoded here when None)."""
        perception = self.perception
        if perception is None or perception.object_proposer is None:
            raise BrainError("naming from a listing needs the perception's image encoder and object proposer")
        given = self.__dict__.get("_given_objects") if objects is None else objects
        if given is not None:
            return index_mask_objects(given, min_pixels=perception.object_proposer.min_pixels)
        features = perception.encode_frame(frame) if features is None else features
        return perception.object_proposer(
            features.embeddings, features.input_size, features.original_size, perception.transform.postprocess
        )

    def scene(self, frame: np.ndarray) -> str:
        """The listing of the frame's objects that the namer reads (:func:`trackgpt.scene.scene_text`)."""
        if self.object_namer is None:
            raise BrainError("this TrackGPT has no object namer (brain.naming is not 'scene')")
        rgb = to_rgb8(frame)
        masks = [m for m in self._frame_objects(rgb) if m.any()]
        return scene_text(scene_objects(masks, self.object_namer.name(rgb, masks)))

    def name_target(self, frame: np.ndarray, instruction: str | bytes, *, cancel_event: Any = None) -> str:
        """The name ("red cup") of the object ``instruction`` means, as the namer reads it from the frame's
        listing (``brain.naming == "scene"``, :mod:`trackgpt.scene`)."""
        return self._need_brain().name_target(self.scene(frame), instruction, cancel_event=cancel_event)

    def _sam_image(self, frame: np.ndarray) -> torch.Tensor:
        if self.perception is None:
            raise BrainError("brain.vision_source 'sam' needs the perception's image encoder, and it was dropped")
        return self.perception.encode_frame(frame).embeddings

    @classmethod
    def from_config(cls, config: TrackGPTConfig | str, **overrides: Any) -> TrackGPT:
        """Build a model (with its brain) from a configuration or a registry name."""
        if isinstance(config, str):
            config = get_config(config, **overrides)
        elif overrides:
            config = config.replace(**overrides)
        return cls(config=config, brain=load_brain(config.brain))

    # ------------------------------------------------------------- inference
    def encode_frame(self, frame: np.ndarray) -> FrameFeatures:
        """See :meth:`Perception.encode_frame`."""
        return self.perception.encode_frame(frame)

    def decode(
        self,
        features: FrameFeatures,
        *,
        referring_query: torch.Tensor,
        online_query: torch.Tensor,
        purport_query: torch.Tensor,
    ) -> Decoded:
        """See :meth:`Perception.decode`."""
        return self.perception.decode(
            features, referring_query=referring_query, online_query=online_query, purport_query=purport_query
        )

    def _need_brain(self) -> TrackGPTBrain:
        if self.brain is None:
            raise BrainError("this TrackGPT was built without a brain (perception only)")
        return self.brain

    def check_instruction(self, instruction: str | bytes) -> str:
        """Validate an instruction (UTF-8, not empty, fits the context); returns the cleaned text."""
        return self._need_brain().check_instruction(instruction)

    def queries(self, track_state: torch.Tensor, purport_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """phi: ``B x H`` hidden states -> ``(Q_R, Q_p)``, ``B x C`` each."""
        if self.projection is None:
            raise BrainError("this TrackGPT was built without a brain (perception only)")
        return self.projection(track_state), self.projection(purport_state)

    @torch.no_grad()
    def reason(
        self, frame: np.ndarray, instruction: str | bytes, *, cancel_event: Any = None, target: str | None = None
    ) -> Reasoning:
        """Ask the brain about a frame: answer text, Q_R and Q_p (paper Eq. 1).

        Args:
            frame: the reference frame I_R (any layout ``to_rgb8`` accepts, RGB order).
            instruction: the user's instruction.
            cancel_event: a ``threading.Event``; setting it stops generation (:class:`ReasoningCancelled`).
            target: evaluation only: teacher-force the answer that names this object instead of generating one
                (:meth:`TrackGPTBrain.answer_naming`, the oracle-answer ablation). A brain that names from a
                listing (``brain.naming == "scene"``) always answers this way, with the name its namer chose.
        """
        brain = self._need_brain()
        if target is None and self.config.brain.naming == "scene":
            target = self.name_target(frame, instruction, cancel_event=cancel_event)
        if target is not None:
            answer = brain.answer_naming(to_rgb8(frame), instruction, target)
        else:
            answer = brain.answer(to_rgb8(frame), instruction, cancel_event=cancel_event)
        q_r, q_p = self.queries(answer.track_state, answer.purport_state)
        return Reasoning(answer.answer, q_r, q_p, answer.forced)

    @contextmanager
    def objects_given(self, objects: np.ndarray) -> Iterator[None]:
        """Evaluation only (the true-objects ablation): while open, a brain whose tokens are the frame's objects
        (``vision_source == "objects"``) reads the objects of ``objects``, an ``H x W`` index mask of the frame it
        is asked about (0 background, 255 void), instead of the proposed ones; so does a brain's namer
        (``naming == "scene"``)."""
        if self.config.brain.vision_source != "objects" and self.config.brain.naming != "scene":
            raise BrainError("objects_given: the brain neither sees nor names the frame's objects")
        self.__dict__["_given_objects"] = objects
        try:
            yield
        finally:
            self.__dict__.pop("_given_objects", None)

    # ----------------------------------------------------------- checkpoints
    def _image_encoder_saved(self) -> bool:
        return not self.config.sam.checkpoint

    def _saved_view(
        self, *, image_encoder: bool, vision_tower: bool | None = None, projector: bool = True,
        object_proposer: bool = True, object_namer: bool = True,
    ) -> nn.Module:
        """A module tree whose state dict is exactly what ``model.safetensors`` holds."""
        root = nn.Module()
        perception, sam = nn.Module(), nn.Module()
        if image_encoder:
            sam.image_encoder = self.perception.sam.image_encoder
        sam.prompt_encoder = self.perception.sam.prompt_encoder
        sam.mask_decoder = self.perception.sam.mask_decoder
        perception.sam = sam
        if self.perception.purport_head is not None:
            perception.purport_head = self.perception.purport_head
        if self.perception.propagation is not None:
            perception.propagation = self.perception.propagation
        if self.perception.object_proposer is not None and object_proposer:
            perception.object_proposer = self.perception.object_proposer
        root.perception = perception
        if self.brain is not None:
            root.projection = self.projection
            brain = nn.Module()
            rows = self.brain.added_token_rows()
            brain.added_tokens = nn.Module()
            for name, value in rows.items():
                brain.added_tokens.register_parameter(name, nn.Parameter(value, requires_grad=False))
            if self.config.brain.train_vision_projector and projector:
                brain.multi_modal_projector = self.brain.submodule("multi_modal_projector")
            if self.config.brain.train_vision_tower if vision_tower is None else vision_tower:
                brain.vision_tower = self.brain.submodule("vision_tower")
            root.brain = brain
            if self.object_namer is not None and object_namer:
                root.object_namer = self.object_namer
        return root

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the checkpoint folder described in the module docstring; returns it."""
        folder = Path(folder)
        view = self._saved_view(image_encoder=self._image_encoder_saved())
        meta: dict[str, Any] = {
            "model_type": MODEL_TYPE,
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "image_encoder_saved": self._image_encoder_saved(),
            "vision_tower_saved": self.brain is not None and self.config.brain.train_vision_tower,
            "has_brain": self.brain is not None,
        }
        if self.brain is not None:
            meta["tokens"] = {TRACK_TOKEN: self.brain.track_token_id, PURPORT_TOKEN: self.brain.purport_token_id}
            meta["lora"] = self.brain.has_lora
            meta["namer"] = self.brain.has_namer
        save_folder(folder, meta, view.state_dict())
        if self.brain is not None:
            self.brain.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
            if self.brain.has_lora:
                self.brain.save_adapter(folder / ADAPTER_DIR)
            if self.brain.has_namer:
                self.brain.save_namer(folder / NAMER_DIR)
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, brain: TrackGPTBrain | None = None, with_brain: bool = True,
        **brain_overrides: Any,
    ):
        """Load a folder written by :meth:`save_pretrained`.

        Args:
            folder: the checkpoint folder.
            brain: an already loaded brain to use instead of loading the referenced one.
            with_brain: False: the perception alone (the brain and phi tensors are left unread).
            brain_overrides: :class:`BrainConfig` field changes (e.g. ``path=...``, ``precision="bf16"``). One that
                changes ``vision_source`` (a model that learns to see through its SAM encoder) leaves the saved
                projector and vision tower unread: the new projector starts from its seeded initialisation.

        Raises:
            CheckpointError: missing files, wrong ``model_type``, bad config, or tensors that are missing,
                unexpected or of another shape (named in the message).
        """
        folder = Path(folder)
        meta = read_config(folder, MODEL_TYPE)
        if meta.get("format_version") != FORMAT_VERSION:
            got = meta.get("format_version")
            raise CheckpointError(f"{folder} has format_version {got!r}, expected {FORMAT_VERSION}")
        try:
            config = TrackGPTConfig.from_dict(meta.get("config", {}))
            saved_source = config.brain.vision_source
            if meta.get("image_encoder_saved"):
                config = config.replace(sam={"checkpoint": None})
            elif config.sam.checkpoint and not Path(config.sam.checkpoint).is_absolute():
                config = config.replace(sam={"checkpoint": str(folder / config.sam.checkpoint)})
            if brain_overrides:
                config = config.replace(brain=brain_overrides)
        except ConfigError as exc:
            raise CheckpointError(f"{folder / 'config.json'}: {exc}") from exc
        tensors = read_tensors(folder)
        switched = with_brain and config.brain.vision_source != saved_source  # the saved eyes do not fit
        if switched:
            tensors = {k: v for k, v in tensors.items()
                       if not k.startswith(("brain.multi_modal_projector.", "brain.vision_tower."))}
        if not with_brain:
            brain = None
            tensors = {k: v for k, v in tensors.items() if not k.startswith(("projection.", "brain.", "object_namer."))}
        elif meta.get("has_brain", True) and brain is None:
            tok_dir = folder / TOKENIZER_DIR
            if not tok_dir.is_dir():
                raise CheckpointError(f"{folder} has no {TOKENIZER_DIR}/ folder")
            brain = load_brain(config.brain, base_dir=folder, tokenizer_folder=tok_dir)
        if brain is not None:
            tokens = meta.get("tokens", {})
            got = {TRACK_TOKEN: brain.track_token_id, PURPORT_TOKEN: brain.purport_token_id}
            if tokens and tokens != got:
                raise CheckpointError(f"{folder}: token ids {got} of the brain differ from the saved {tokens}")
            if meta.get("lora") and not brain.has_lora:
                brain.load_adapter(folder / ADAPTER_DIR)
            if meta.get("namer") and not brain.has_namer:
                brain.load_namer(folder / NAMER_DIR)
        model = cls(config=config, brain=brain)
        # a folder saved before its vision tower was trained has none (train_vision_tower may be an override)
        view = model._saved_view(
            image_encoder=bool(meta.get("image_encoder_saved")),
            vision_tower=bool(meta.get("vision_tower_saved")) and not switched, projector=not switched,
            # a model switched to object tokens has no proposer yet (training gives one: model.object_proposer_from)
            object_proposer=any(k.startswith("perception.object_proposer.") for k in tensors),
            # ... and one switched to naming from a listing has no namer yet (training.trackgpt.train_namer)
            object_namer=any(k.startswith("object_namer.") for k in tensors),
        )
        load_strict(view, tensors, f"checkpoint {folder / 'model.safetensors'}")
        if brain is not None:
            rows = {name: p.data for name, p in view.brain.added_tokens.named_parameters()}
            brain.set_added_token_rows(rows)
        return model.eval()
