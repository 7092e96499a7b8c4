"""Exceptions of the TrackGPT library; each names the problem in its message.

Frame problems are reported by :class:`perception_common.images.ImageError`
(re-exported here as :data:`FrameError`) and checkpoint problems by
:class:`perception_common.checkpoint.CheckpointError`, so every model of the
workspace fails the same way.
"""

from __future__ import annotations

from perception_common.checkpoint import CheckpointError
from perception_common.images import ImageError

FrameError = ImageError

__all__ = [
    "BrainError",
    "CheckpointError",
    "ConfigError",
    "FrameError",
    "ImageError",
    "InstructionError",
    "PrecisionError",
    "ReasoningCancelled",
    "TrackGPTError",
    "TrackerError",
]


class TrackGPTError(RuntimeError):
    """Base class of the errors raised by :mod:`trackgpt`."""


class ConfigError(TrackGPTError, ValueError):
    """A configuration name, field or value is not valid."""


class InstructionError(TrackGPTError, ValueError):
    """A tracking instruction cannot be used (empty, not UTF-8, longer than the brain's context)."""


class BrainError(TrackGPTError):
    """The vision-language brain cannot be loaded or used (wrong folder, wrong architecture, ...)."""


class PrecisionError(BrainError):
    """A requested precision is not available on this machine (e.g. 8-bit without bitsandbytes and CUDA)."""


class ReasoningCancelled(TrackGPTError):
    """Reasoning stopped early because a newer instruction superseded it."""


class TrackerError(TrackGPTError):
    """The online tracker was used in a way it does not support (e.g. after :meth:`close`)."""
