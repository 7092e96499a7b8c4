"""The robust AVS model: TPAVI baseline + classifier-guided similarity gate.

Data flow (per frame ``i`` of a batch)::

    frame -> backbone -> F_1..F_4 -> ASPP -> V_1..V_4 -+-> TPAVI(V_i, F_A) -> Z_i -> FPN decoder -> mask logits
    log-mel -> VGGish -> F_A ------------------------/
    F_A, F_4 -> similarity gate -> s, sigmoid(s), sounding

The gate does not change the mask logits (as in the paper, negatives are
suppressed by training the mask towards empty); it decides whether a mask
should be published. With ``gate="off"`` the model is exactly the baseline:
same modules and parameters minus the gate, same mask logits, and every frame
reported as ``sounding`` (the baseline cannot say otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception_common.checkpoint import load_strict, read_config, read_tensors, save_folder
from perception_common.images import ImageError, to_rgb8
from perception_common.precision import resolve_frame_precision
from perception_common.tracing import Traced

from .audio import EXAMPLE_FRAMES, NUM_MEL_BANDS, window_to_example
from .backbones import build_backbone, load_backbone_state_dict
from .config import CONFIGS, AVSConfig, get_config
from .decoder import FPNDecoder
from .errors import CheckpointError, ConfigError, FrameError, InputError
from .fusion import ASPP, TPAVI
from .gate import SimilarityGate
from .vggish import build_vggish, load_pca_params, load_vggish_state_dict

MODEL_TYPE = "avs"
# AVSConfig fields that only concern the gate (what from_pretrained(gate_overrides=...) may change)
GATE_FIELDS = frozenset({"gate", "gate_init_scale", "gate_visual_proj", "gate_audio_term", "threshold"})
MIN_INPUT_SIDE = 32


@dataclass
class AVSOutput:
    """What :meth:`AVSModel.forward` returns for a batch of ``B`` frames.

    Attributes:
        mask_logits: ``B x K x H x W`` logits at the input resolution: ``K = 1`` mask logits, or ``num_classes``
            class logits (class 0 = background) for an AVSS model.
        similarity: ``B`` cosine similarity ``s`` (None with the gate off).
        gate_logit: ``B`` value fed to the sigmoid (None with the gate off).
        score: ``B`` ``sigmoid(gate_logit)`` (None with the gate off).
        sounding: ``B`` bool, ``score > threshold`` (all True with the gate off).
        audio_embedding: ``B x 128`` F_A.
        fused: per stage, ``B x C x h_i x w_i`` features after ASPP (and TPAVI where used): Z_i.
        audio_aligned: per stage, ``B x C`` aligned audio A_i (None where the stage has no TPAVI).
        visual_pooled: ``B x C_4`` last backbone stage F_4 average-pooled over space (what the gate's visual side
            starts from; training's auxiliary category loss reads it).
    """

    mask_logits: torch.Tensor
    similarity: torch.Tensor | None
    gate_logit: torch.Tensor | None
    score: torch.Tensor | None
    sounding: torch.Tensor
    audio_embedding: torch.Tensor
    fused: list[torch.Tensor] = field(default_factory=list)
    audio_aligned: list[torch.Tensor | None] = field(default_factory=list)
    visual_pooled: torch.Tensor | None = None


@dataclass
class FrameFeatures:
    """One frame's per-frame work (ASPP outputs before TPAVI and its audio embedding), kept by a stream so later
    frames attend over it without recomputing it (see :meth:`AVSModel.forward_window`)."""

    stages: list[torch.Tensor]
    audio_embedding: torch.Tensor


@dataclass
class Prediction:
    """One frame's result from :meth:`AVSModel.predict`.

    Attributes:
        mask: ``H x W`` bool at the frame's own size; empty unless ``sounding``.
        probability: ``H x W`` float32 ``sigmoid(mask_logits)`` (not gated); for an AVSS model
            ``1 - P(background)``.
        class_map: AVSS models only: ``H x W`` int16 class ids (0 = background; argmax at the model's resolution,
            as AVSBench scores it, resized nearest to the frame), not gated; None for a one-mask model.
        features: this frame's :class:`FrameFeatures` when ``predict`` was given a ``history``, else None.
        similarity: ``s`` (None with the gate off).
        score: ``sigmoid`` of the gate logit (None with the gate off).
        sounding: whether the gate accepts the audio-visual pair.
        audio_padded_samples: zeros added at 16 kHz because the window was short.
    """

    mask: np.ndarray
    probability: np.ndarray
    similarity: float | None
    score: float | None
    sounding: bool
    audio_padded_samples: int
    class_map: np.ndarray | None = None
    features: FrameFeatures | None = None


class _FramePath(nn.Module):
    """Frames through the model each alone, with tensors out (for tracing): ``(mask_logits, similarity, score)``,
    or ``(mask_logits,)`` without a gate; ``decoder``: a bf16 channels-last copy of the FPN decoder to use instead
    of the model's own (logits returned in fp32)."""

    def __init__(self, model: AVSModel, decoder: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.decoder = decoder

    def forward(self, frames: torch.Tensor, examples: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model  # forward_embeddings for clips of one frame, the decoder swapped where a copy is given
        audio = m.audio_encoder(examples)
        feats, stages = m._encode(frames)
        fused, _ = m._fuse(stages, audio, 1)
        if self.decoder is None:
            mask_logits = m.decoder(fused, tuple(frames.shape[-2:]))
        else:
            low = [f.to(torch.bfloat16).contiguous(memory_format=torch.channels_last) for f in fused]
            mask_logits = self.decoder(low, tuple(frames.shape[-2:])).float()
        if m.gate is None:
            return (mask_logits,)
        g = m.gate(audio, feats[3])
        return mask_logits, g.similarity, g.score


class AVSModel(nn.Module):
    """Audio-visual segmentation with a correspondence gate.

    Args:
        config: an :class:`avs.config.AVSConfig` (see :func:`build_model` for registered ones).
    """

    def __init__(self, *, config: AVSConfig):
        super().__init__()
        if not isinstance(config, AVSConfig):
            raise ConfigError(f"config must be an AVSConfig, got {type(config).__name__}")
        self.config = config
        self.__dict__["_frame_path"] = ()  # see set_frame_precision; a plain attribute, not a submodule
        self.backbone = build_backbone(config.backbone)
        self.audio_encoder = build_vggish(config.audio_encoder, postprocess=config.vggish_postprocess)
        audio_dim = self.audio_encoder.embedding_dim
        self.aspp = nn.ModuleList(
            ASPP(in_channels=c, out_channels=config.channels, dilations=config.aspp_dilations)
            for c in self.backbone.channels
        )
        self.tpavi = nn.ModuleDict(
            {
                str(i): TPAVI(channels=config.channels, audio_dim=audio_dim, attention=config.tpavi_attention)
                for i in sorted(config.tpavi_stages)
            }
        )
        self.decoder = FPNDecoder(
            channels=config.channels,
            head_channels=config.decoder_head_channels,
            out_channels=config.num_classes,
            style=config.decoder_style,
        )
        self.gate = (
            None
            if config.gate == "off"
            else SimilarityGate(
                audio_dim=audio_dim,
                visual_dim=self.backbone.channels[3],
                mode=config.gate,
                init_scale=config.gate_init_scale,
                visual_proj=config.gate_visual_proj,
                audio_term=config.gate_audio_term,
            )
        )
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)
        # gate weights that from_pretrained(gate_overrides=...) left freshly initialised or dropped
        self.gate_load_report: dict[str, list[str]] = {"initialised": [], "dropped": []}

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, frames: torch.Tensor, audio: torch.Tensor, clip_length: int) -> None:
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise InputError(f"frames must be a B x 3 x H x W float tensor in [0, 1], got {shape}")
        if not frames.is_floating_point():
            raise InputError(f"frames must be float in [0, 1], got dtype {frames.dtype}")
        b, _, h, w = frames.shape
        if b == 0 or min(h, w) < MIN_INPUT_SIDE:
            raise InputError(
                f"frames must be non-empty and at least {MIN_INPUT_SIDE} x {MIN_INPUT_SIDE}, got {b} x 3 x {h} x {w}"
            )
        if not isinstance(audio, torch.Tensor) or audio.ndim != 4 or tuple(audio.shape[1:]) != (1, 96, 64):
            shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
            raise InputError(f"audio must be B x 1 x 96 x 64 log-mel examples, got {shape}")
        if audio.shape[0] != b:
            raise InputError(f"frames and audio must have the same batch size, got {b} and {audio.shape[0]}")
        if not isinstance(clip_length, int) or clip_length < 1 or b % clip_length:
            raise InputError(f"clip_length must be a positive int dividing the batch size {b}, got {clip_length!r}")
        if not torch.isfinite(frames).all():
            raise InputError("frames contain NaN or Inf values")
        if not torch.isfinite(audio).all():
            raise InputError("audio log-mel contains NaN or Inf values")

    def forward(self, frames: torch.Tensor, audio: torch.Tensor, *, clip_length: int = 1) -> AVSOutput:
        """Segment sounding objects.

        Args:
            frames: ``B x 3 x H x W`` RGB in [0, 1] (normalised inside), ``H, W >= 32``.
            audio: ``B x 1 x 96 x 64`` log-mel examples, one per frame.
            clip_length: ``T``; the batch is ``B / T`` clips of ``T`` consecutive
                frames (clip-major, as AVSBench's ``B*T``), and TPAVI attends over
                the T audio segments of a clip. 1 for single frames (the robot).
        """
        self._check_inputs(frames, audio, clip_length)
        return self.forward_embeddings(frames, self.audio_encoder(audio), clip_length=clip_length)

    def forward_embeddings(self, frames: torch.Tensor, audio_embedding: torch.Tensor, *,
                           clip_length: int = 1) -> AVSOutput:
        """:meth:`forward` from audio embeddings ``B x 128`` (F_A) instead of log-mel examples.

        What AVSBench's ``Pred_endecoder.forward(imgs, audio_feature)`` takes (its VGGish runs outside the model);
        the importer's fixtures compare against it.
        """
        b, _, h, w = frames.shape
        if audio_embedding.ndim != 2 or audio_embedding.shape[0] != b:
            raise InputError(f"audio embeddings must be {b} x D, got {tuple(audio_embedding.shape)}")
        if not isinstance(clip_length, int) or clip_length < 1 or b % clip_length:
            raise InputError(f"clip_length must be a positive int dividing the batch size {b}, got {clip_length!r}")
        feats, stages = self._encode(frames)
        fused, aligned = self._fuse(stages, audio_embedding, clip_length)
        return self._finish(fused, aligned, feats[3], audio_embedding, (h, w))

    def forward_window(
        self, frame: torch.Tensor, audio_embedding: torch.Tensor, history=()
    ) -> tuple[AVSOutput, FrameFeatures]:
        """One frame attending over a clip of itself and ``history`` (earlier frames' :class:`FrameFeatures`, oldest
        first), as TPAVI does over AVSBench's 5-frame clips; only this frame is decoded.

        The output equals the last frame's of :meth:`forward_embeddings` run on the whole clip (tested against
        AVSBench's own model), while the backbone and ASPP run on this frame only.

        Args:
            frame: ``1 x 3 x H x W`` RGB in [0, 1].
            audio_embedding: ``1 x D`` this frame's F_A.
            history: earlier frames' features (same size), from the ``features`` this method returned for them.

        Returns:
            ``(output, features)``: this frame's :class:`AVSOutput` (batch 1) and its features for later frames.
        """
        if frame.ndim != 4 or frame.shape[0] != 1 or audio_embedding.shape[0] != 1:
            raise InputError(f"forward_window takes one frame, got {tuple(frame.shape)}")
        _, _, h, w = frame.shape
        feats, stages = self._encode(frame)
        current = FrameFeatures([v.detach() for v in stages], audio_embedding.detach())
        clip = [*history, current]
        for past in history:
            if [tuple(v.shape) for v in past.stages] != [tuple(v.shape) for v in stages]:
                raise InputError("history frames must have this frame's size (clear the history when it changes)")
        stacked = [torch.cat([f.stages[i] for f in clip]) for i in range(len(stages))]
        audio = torch.cat([f.audio_embedding for f in clip])
        fused, aligned = self._fuse(stacked, audio, len(clip))
        last = [v[-1:] for v in fused]
        last_aligned = [None if a is None else a[-1:] for a in aligned]
        return self._finish(last, last_aligned, feats[3], audio_embedding, (h, w)), current

    def _encode(self, frames: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Backbone stages F_1..F_4 and their ASPP outputs V_1..V_4 (per frame, no audio)."""
        x = (frames - self.pixel_mean) / self.pixel_std
        feats = self.backbone(x)
        return feats, [self.aspp[i](feat) for i, feat in enumerate(feats)]

    def _fuse(self, stages, audio_embedding: torch.Tensor, clip_length: int):
        """TPAVI over clips of ``clip_length`` frames (clip-major batch) where configured: Z_i and A_i."""
        fused: list[torch.Tensor] = []
        aligned: list[torch.Tensor | None] = []
        b = stages[0].shape[0]
        n_clips, t = b // clip_length, clip_length
        for i, v in enumerate(stages):
            if str(i) in self.tpavi:
                c, fh, fw = v.shape[1:]
                v5 = v.view(n_clips, t, c, fh, fw).permute(0, 2, 1, 3, 4)
                z, a = self.tpavi[str(i)](v5, audio_embedding.view(n_clips, t, -1))
                v = z.permute(0, 2, 1, 3, 4).reshape(b, c, fh, fw)
                aligned.append(a.reshape(b, -1))
            else:
                aligned.append(None)
            fused.append(v)
        return fused, aligned

    def _finish(self, fused, aligned, last_stage: torch.Tensor, audio_embedding: torch.Tensor,
                out_size: tuple[int, int]) -> AVSOutput:
        """Decode, then gate: the :class:`AVSOutput`."""
        b = last_stage.shape[0]
        mask_logits = self.decoder(fused, out_size)
        pooled = last_stage.mean(dim=(2, 3))
        if self.gate is None:
            return AVSOutput(
                mask_logits,
                None,
                None,
                None,
                torch.ones(b, dtype=torch.bool, device=last_stage.device),
                audio_embedding,
                fused,
                aligned,
                pooled,
            )
        g = self.gate(audio_embedding, last_stage)
        sounding = g.score > self.config.threshold
        return AVSOutput(mask_logits, g.similarity, g.logit, g.score, sounding, audio_embedding, fused, aligned, pooled)

    # ------------------------------------------------------------- convenience
    def preprocess_frame(self, frame_rgb: np.ndarray, *, channel_order: str = "rgb") -> torch.Tensor:
        """``H x W x 3`` uint8 (or anything :func:`to_rgb8` takes) -> ``1 x 3 x S x S`` float in [0, 1].

        The frame is resized to ``image_size`` squared without keeping the aspect
        ratio, as AVSBench does (choice: bilinear, OpenCV ``INTER_LINEAR``).
        """
        try:
            rgb = to_rgb8(frame_rgb, channel_order=channel_order)
        except ImageError as exc:
            raise FrameError(str(exc)) from None
        size = self.config.image_size
        resized = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
        tensor = torch.from_numpy(resized).permute(2, 0, 1).float().div_(255.0)
        return tensor.unsqueeze(0).to(self.pixel_mean.device)

    @torch.inference_mode()
    def predict(
        self,
        frame_rgb: np.ndarray,
        waveform,
        sample_rate,
        *,
        channel_order: str = "rgb",
        layout: str = "auto",
        threshold: float | None = None,
        history=None,
    ) -> Prediction:
        """One frame and the audio window ending at its time stamp -> :class:`Prediction`.

        Args:
            frame_rgb: ``H x W x 3`` uint8 RGB frame (gray, RGBA, 16-bit, float also accepted).
            waveform: the audio window (about 0.975 s; shorter is padded at the start
                and reported), any dtype/layout that :func:`avs.audio.to_mono_float` takes.
            sample_rate: its rate in Hz.
            channel_order: ``"rgb"`` or ``"bgr"``.
            layout: channel layout of a 2-D waveform.
            threshold: override of ``config.threshold`` for this call.
            history: None = the frame alone; a sequence of earlier frames' :attr:`Prediction.features` (possibly
                empty) = TPAVI attends over them and this frame (:meth:`forward_window`), and the result carries
                this frame's features (what :class:`avs.stream.AVSStream` does for ``clip_frames > 1``).

        The model is run in eval mode (its previous mode is restored afterwards).
        """
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise InputError(f"threshold must be in (0, 1), got {threshold}")
        if not isinstance(frame_rgb, np.ndarray):
            raise FrameError(f"frame must be a numpy array, got {type(frame_rgb).__name__}")
        example = window_to_example(waveform, sample_rate, layout=layout)
        x = self.preprocess_frame(frame_rgb, channel_order=channel_order)
        was_training = self.training
        if was_training:  # train()/eval() walk every module: only when needed (measured ~2-5 ms per frame on CPU)
            self.eval()
        features = None
        try:
            if history is None:
                out = self.infer_frames(x, example.examples.to(x.device))
            else:
                self._check_inputs(x, example.examples, 1)
                embedding = self.audio_encoder(example.examples.to(x.device))
                out, features = self.forward_window(x, embedding, history)
        finally:
            if was_training:
                self.train()
        h, w = frame_rgb.shape[:2]
        class_map = None
        if self.config.num_classes == 1:
            logits = F.interpolate(out.mask_logits, size=(h, w), mode="bilinear", align_corners=False)
            probability = torch.sigmoid(logits)[0, 0].float().cpu().numpy()
        else:  # AVSS: classes at the model's resolution (as AVSBench scores them), resized to the frame
            probs = out.mask_logits.float().softmax(dim=1)
            foreground = F.interpolate(1.0 - probs[:, :1], size=(h, w), mode="bilinear", align_corners=False)
            probability = foreground[0, 0].clamp(0.0, 1.0).cpu().numpy()
            ids = probs.argmax(dim=1, keepdim=True).to(torch.float32)
            class_map = F.interpolate(ids, size=(h, w), mode="nearest")[0, 0].to(torch.int16).cpu().numpy()
        if out.score is None:
            sounding, similarity, score = True, None, None
        else:
            score = float(out.score[0])
            similarity = float(out.similarity[0])
            sounding = score > (self.config.threshold if threshold is None else float(threshold))
        mask = ((probability > 0.5) if class_map is None else (class_map != 0)) & sounding
        return Prediction(
            mask, probability, similarity, score, bool(sounding), example.padded_samples, class_map, features
        )

    @property
    def frame_precision(self) -> str | None:
        """The frame path's precision (``fp32`` / ``bf16``), None while the modules run frames (see
        :meth:`set_frame_precision`)."""
        return self._frame_path[0] if self._frame_path else None

    def set_frame_precision(self, precision: str | None) -> None:
        """Run frames (:meth:`infer_frames`, :meth:`predict` without a clip history) through the frame path.

        The frame path is a TorchScript trace of the model (:class:`perception_common.tracing.Traced`: the same
        kernels without Python between them; about 20 % faster on a 2-core CPU), made and optimised here on a blank
        frame (so the first camera frame is not late). ``bf16`` runs
        the FPN decoder (about a quarter of a frame's work, all convolutions) in bf16 with channels-last weights,
        a copy made here (on this machine's AMX about 2x faster than fp32 there), and everything else in fp32: the
        backbone in bf16 was not faster, and the gate's score stays fp32. ``fp32`` is the modules' results; ``auto``
        picks for this model's device (:func:`perception_common.precision.resolve_frame_precision`, whose
        ``PrecisionError`` names any other value). None goes back to the modules (training, gradients, clips).
        The bf16 decoder is a copy read once: call it again after loading new weights (fp32 reads the modules' own)
        or moving the model to another device (the frame path is a plain attribute, not moved by ``to``).
        """
        if precision is None:
            self.__dict__["_frame_path"] = ()
            return
        precision = resolve_frame_precision(precision, str(self.pixel_mean.device))
        decoder = None
        if precision == "bf16":
            import copy

            decoder = copy.deepcopy(self.decoder).to(torch.bfloat16, memory_format=torch.channels_last)
            decoder.requires_grad_(False)
        self.__dict__["_frame_path"] = (precision, Traced(_FramePath(self, decoder)))
        size, device = self.config.image_size, self.pixel_mean.device
        blank = (torch.zeros(1, 3, size, size, device=device),
                 torch.zeros(1, 1, EXAMPLE_FRAMES, NUM_MEL_BANDS, device=device))
        was_training = self.training
        self.eval()  # traced as predict runs it
        self._frame_path[1].prepare(*blank)
        self.train(was_training)

    def infer_frames(self, frames: torch.Tensor, examples: torch.Tensor) -> SimpleNamespace:
        """Each frame alone (``clip_length`` 1), at inference: ``mask_logits``, ``similarity`` and ``score`` (None
        without a gate) as :meth:`forward` gives them, through the frame path when one is set
        (:meth:`set_frame_precision`). The inputs are checked here, outside the trace (a trace keeps the path its
        first inputs took)."""
        if not self._frame_path:
            out = self(frames, examples)
            return SimpleNamespace(mask_logits=out.mask_logits, similarity=out.similarity, score=out.score)
        self._check_inputs(frames, examples, 1)
        with torch.no_grad():
            mask_logits, *gate = self._frame_path[1](frames, examples)
        similarity, score = gate if gate else (None, None)
        return SimpleNamespace(mask_logits=mask_logits, similarity=similarity, score=score)

    # ------------------------------------------------------------- checkpoints
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` (with ``model_type: "avs"``) and ``model.safetensors`` into ``folder``."""
        return save_folder(folder, {"model_type": MODEL_TYPE, **self.config.to_dict()}, self.state_dict())

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        device: str | torch.device = "cpu",
        gate_overrides: Mapping[str, Any] | None = None,
    ) -> AVSModel:
        """Load a folder written by :meth:`save_pretrained`; returned in eval mode.

        Args:
            folder: the model folder (``config.json`` + ``model.safetensors``).
            device: where the model goes.
            gate_overrides: change the gate's fields (:data:`GATE_FIELDS`) of the saved config, e.g.
                ``{"gate": "scaled_cosine"}`` to start a gated model from an un-gated baseline's weights. Every
                other weight must be in the folder; gate weights the new config has and the folder lacks keep their
                fresh initialisation, gate weights the new config drops are ignored, and both are named in
                ``model.gate_load_report``. Any other field is an error.
        """
        config = read_config(folder, MODEL_TYPE)
        config.pop("model_type", None)
        overrides = dict(gate_overrides or {})
        other = sorted(set(overrides) - GATE_FIELDS)
        if other:
            raise ConfigError(
                f"gate_overrides may only change {', '.join(sorted(GATE_FIELDS))}; got {', '.join(other)}"
            )
        try:
            cfg = AVSConfig.from_dict({**config, **overrides})
        except ConfigError as exc:
            raise CheckpointError(f"{Path(folder) / 'config.json'}: {exc}") from None
        model = cls(config=cfg)
        state = read_tensors(folder)
        if overrides:
            own = model.state_dict()
            fresh = sorted(k for k in own if k.startswith("gate.") and k not in state)
            dropped = sorted(k for k in state if k.startswith("gate.") and k not in own)
            state = {k: v for k, v in state.items() if k not in dropped}
            state.update({k: own[k] for k in fresh})
            model.gate_load_report = {"initialised": fresh, "dropped": dropped}
        load_strict(model, state, str(folder))
        return model.to(device).eval()

    def load_backbone_weights(self, path_or_state) -> None:
        """Load official backbone weights (torchvision ResNet-50; timm or official PVT-v2)."""
        load_backbone_state_dict(self.backbone, path_or_state)

    def load_audio_weights(self, path_or_state, *, pca_params=None) -> None:
        """Load torchvggish weights (``vggish-*.pth``), and the PCA parameters if the config uses them."""
        load_vggish_state_dict(self.audio_encoder, path_or_state)
        if pca_params is not None:
            load_pca_params(self.audio_encoder, pca_params)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(name: str = "tiny", **overrides) -> AVSModel:
    """Build a registered configuration (randomly initialised; load weights separately).

    Args:
        name: a key of :data:`avs.config.CONFIGS`.
        overrides: AVSConfig fields to change, e.g. ``gate="off"`` for the baseline.
    """
    return AVSModel(config=get_config(name, **overrides))


__all__ = ["CONFIGS", "AVSConfig", "AVSModel", "AVSOutput", "FrameFeatures", "Prediction", "build_model"]
