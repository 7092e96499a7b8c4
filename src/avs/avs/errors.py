"""Exception types of the :mod:`avs` library.

Every bad input is reported with one of these (never a deep torch stack
trace), and the message names the problem and, where it helps, the fix.
"""

from __future__ import annotations

from perception_common.checkpoint import CheckpointError
from perception_common.images import ImageError


class AVSError(Exception):
    """Base class of every error raised on purpose by :mod:`avs`."""


class InputError(AVSError, ValueError):
    """A tensor or array given to the model has the wrong shape, dtype or values."""


class AudioError(InputError):
    """Audio cannot be used: empty, NaN/Inf, unsupported dtype or layout, bad sample rate, unreadable file."""


class FrameError(InputError):
    """A video frame cannot be used (empty, wrong channels, NaN)."""


class ConfigError(AVSError, ValueError):
    """A model configuration is unknown or inconsistent."""


class NegativeAudioError(AVSError, ValueError):
    """The negative-audio generator was asked for something it cannot produce."""


__all__ = [
    "AVSError",
    "AudioError",
    "CheckpointError",
    "ConfigError",
    "FrameError",
    "ImageError",
    "InputError",
    "NegativeAudioError",
]
