"""TrackGPT instruction tracking (Zhu et al., "Tracking with Human-Intent Reasoning") in plain PyTorch.

Imports without rclpy; the ROS node package ``trackgpt_ros`` calls this library.

Modules: :mod:`~trackgpt.config` (sizes as data), :mod:`~trackgpt.sam` (SAM backbone and
pre/post-processing), :mod:`~trackgpt.decoder` (revamped mask decoder, purport head),
:mod:`~trackgpt.propagation` (cross-frame referring propagation), :mod:`~trackgpt.projection`
(phi), :mod:`~trackgpt.llava` (building and loading LLaVA), :mod:`~trackgpt.brain` (LLaVA with ``<TK>`` /
``<PO>``), :mod:`~trackgpt.model`
(TrackGPT), :mod:`~trackgpt.tracker` (online tracker with rethinking), :mod:`~trackgpt.embedded`
(SmolLM2 brain), :mod:`~trackgpt.cli` and :mod:`~trackgpt.bench` (command lines).
"""

from .config import CONFIGS, SAM_SIZES, BrainConfig, SamConfig, TrackGPTConfig, get_config
from .errors import (
    BrainError,
    CheckpointError,
    ConfigError,
    FrameError,
    InstructionError,
    PrecisionError,
    ReasoningCancelled,
    TrackerError,
    TrackGPTError,
)
from .model import Decoded, FrameFeatures, Perception, Reasoning, TrackGPT

__all__ = [
    "CONFIGS",
    "SAM_SIZES",
    "BrainConfig",
    "BrainError",
    "CheckpointError",
    "ConfigError",
    "Decoded",
    "FrameError",
    "FrameFeatures",
    "InstructionError",
    "Perception",
    "PrecisionError",
    "Reasoning",
    "ReasoningCancelled",
    "SamConfig",
    "TrackGPT",
    "TrackGPTConfig",
    "TrackGPTError",
    "TrackerError",
    "get_config",
]
