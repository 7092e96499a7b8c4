"""Model configurations: one dataclass, sizes as data in a registry.

Registered configurations (:data:`CONFIGS`):

* ``"tiny"``: made-up small widths, randomly initialised, 64 x 64 input; for tests.
* ``"embedded"``: PVT-v2-b0 + a narrow VGGish-layout audio net, ~7.5 M
  parameters, 224 x 224; for the robot, to be trained (the published VGGish
  alone has 72 M parameters, so it cannot be the embedded audio encoder).
* ``"resnet50-vggish"``: AVSBench's ResNet-50 TPAVI model + VGGish + gate.
* ``"pvt-v2-b5-vggish"``: AVSBench's PVT-v2-b5 TPAVI model + VGGish + gate (the
  paper's TPAVI + Ours).

Defaults the papers leave open are documented on the fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .backbones import BACKBONES
from .decoder import DECODER_STYLES
from .errors import ConfigError
from .gate import GATE_MODES
from .vggish import VGGISH_SIZES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AVSConfig:
    """Everything needed to build an :class:`avs.model.AVSModel`.

    Attributes:
        backbone: a key of :data:`avs.backbones.BACKBONES`.
        audio_encoder: a key of :data:`avs.vggish.VGGISH_SIZES`.
        vggish_postprocess: include the AudioSet PCA post-processor (AVSBench: off).
        channels: width of the ASPP / TPAVI / decoder features (reference: 256).
        aspp_dilations: dilations of the ASPP branches (reference: 3, 6, 12, 18).
        tpavi_stages: stages (0-3) with TPAVI audio-visual interaction (reference: all four).
        tpavi_attention: ``"dot"`` (reference code) or ``"softmax"`` (paper formula, degenerate at T = 1).
        decoder_head_channels: the two output-head widths (reference: 128, 32).
        decoder_style: ``"project"`` (the shipped models) or ``"avsbench"`` (imported AVSBench checkpoints: two
            decoder details differ, see :mod:`avs.decoder`).
        num_classes: 1 = one sounding-object mask (S4, MS3, the shipped models); more = AVSBench's semantic AVSS
            head (71: class 0 is background, the sounding mask is every other class, the class map is kept).
        clip_frames: frames TPAVI attends over together when a stream runs the model: 1 = each frame alone (the
            shipped models, trained that way); 5 = AVSBench's clips (imported checkpoints), the frame with the
            ``clip_frames - 1`` kept frames before it (see :class:`avs.stream.AVSStream`).
        clip_stride_s: seconds between the kept frames of a clip (AVSBench: one frame per second of video, each
            with its own second of audio).
        gate: ``"cosine"`` (paper), ``"scaled_cosine"`` (deviation: learnable scale) or ``"off"`` (baseline).
        gate_init_scale: initial scale of ``"scaled_cosine"``.
        gate_visual_proj: also project the pooled ``F_4`` through a linear layer (with bias) before the cosine
            (DEVIATION, see :mod:`avs.gate`); the embedded model, whose backbone is trained from scratch, needs it.
        gate_audio_term: add an audio-only linear term to the gate's logit (DEVIATION, see :mod:`avs.gate`).
        threshold: ``sounding`` = ``sigmoid(logit) > threshold`` (with ``"cosine"``, 0.5 means ``s > 0``).
        image_size: side of the square model input used by ``predict`` (AVSBench: 224).
        pixel_mean, pixel_std: RGB normalisation of ``[0, 1]`` frames (ImageNet).
    """

    backbone: str = "pvt_v2_b5"
    audio_encoder: str = "vggish"
    vggish_postprocess: bool = False
    channels: int = 256
    aspp_dilations: tuple[int, ...] = (3, 6, 12, 18)
    tpavi_stages: tuple[int, ...] = (0, 1, 2, 3)
    tpavi_attention: str = "dot"
    decoder_head_channels: tuple[int, int] = (128, 32)
    decoder_style: str = "project"
    num_classes: int = 1
    clip_frames: int = 1
    clip_stride_s: float = 1.0
    gate: str = "cosine"
    gate_init_scale: float = 10.0
    gate_visual_proj: bool = False
    gate_audio_term: bool = False
    threshold: float = 0.5
    image_size: int = 224
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        for name in ("aspp_dilations", "tpavi_stages", "decoder_head_channels", "pixel_mean", "pixel_std"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name} must be a list of numbers, got {value!r}")
            setattr(self, name, tuple(value))
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES)}")
        if self.audio_encoder not in VGGISH_SIZES:
            raise ConfigError(f"unknown audio_encoder {self.audio_encoder!r}; known: {', '.join(VGGISH_SIZES)}")
        if self.gate not in GATE_MODES:
            raise ConfigError(f"gate must be one of {', '.join(GATE_MODES)}, got {self.gate!r}")
        if self.tpavi_attention not in ("dot", "softmax"):
            raise ConfigError(f"tpavi_attention must be 'dot' or 'softmax', got {self.tpavi_attention!r}")
        if not set(self.tpavi_stages) <= {0, 1, 2, 3} or len(set(self.tpavi_stages)) != len(self.tpavi_stages):
            raise ConfigError(f"tpavi_stages must be distinct stage indices 0-3, got {self.tpavi_stages}")
        if self.decoder_style not in DECODER_STYLES:
            raise ConfigError(f"decoder_style must be one of {', '.join(DECODER_STYLES)}, got {self.decoder_style!r}")
        for name in ("num_classes", "clip_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.clip_stride_s, (int, float)) or not 0.0 < float(self.clip_stride_s) < 60.0:
            raise ConfigError(f"clip_stride_s must be in (0, 60) seconds, got {self.clip_stride_s!r}")
        if not isinstance(self.channels, int) or self.channels < 2:
            raise ConfigError(f"channels must be an int >= 2, got {self.channels!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ConfigError(f"image_size must be an int >= 32, got {self.image_size!r}")
        if len(self.decoder_head_channels) != 2 or len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise ConfigError("decoder_head_channels needs 2 values, pixel_mean and pixel_std 3 each")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AVSConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown AVS config keys: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad AVS config: {exc}") from exc


CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {
        "backbone": "pvt_v2_tiny",
        "audio_encoder": "vggish-tiny",
        "channels": 8,
        "decoder_head_channels": (8, 8),
        "image_size": 64,
    },
    "embedded": {
        "backbone": "pvt_v2_b0",
        "audio_encoder": "vggish-small-bn",
        "gate_visual_proj": True,
        "gate_audio_term": True,
        "channels": 64,
        "decoder_head_channels": (32, 16),
        "image_size": 224,
    },
    "resnet50-vggish": {"backbone": "resnet50", "audio_encoder": "vggish", "channels": 256},
    "pvt-v2-b5-vggish": {"backbone": "pvt_v2_b5", "audio_encoder": "vggish", "channels": 256},
}


def get_config(name: str, **overrides) -> AVSConfig:
    """A registered configuration, with optional field overrides (e.g. ``gate="off"``)."""
    if name not in CONFIGS:
        raise ConfigError(f"unknown AVS configuration {name!r}; known: {', '.join(CONFIGS)}")
    return AVSConfig(**{**CONFIGS[name], **overrides})
