"""Robust audio-visual segmentation (TPAVI + classifier-guided similarity gate), plain PyTorch.

Importable without rclpy; the ROS node package ``avs_ros`` sits beside it.

Typical use on a robot (one call per video frame)::

    from avs import AVSModel
    model = AVSModel.from_pretrained("models/avs-embedded")
    pred = model.predict(frame_rgb, audio_window, sample_rate)  # window: >= WINDOW_SECONDS ending at the frame
    if pred.sounding:
        publish(pred.mask)
"""

from .audio import WINDOW_SAMPLES, WINDOW_SECONDS, AudioExamples, waveform_to_examples, window_to_example
from .config import CONFIGS, AVSConfig, get_config
from .errors import (
    AudioError,
    AVSError,
    CheckpointError,
    ConfigError,
    FrameError,
    InputError,
    NegativeAudioError,
)
from .model import AVSModel, AVSOutput, Prediction, build_model

__all__ = [
    "CONFIGS",
    "WINDOW_SAMPLES",
    "WINDOW_SECONDS",
    "AVSConfig",
    "AVSError",
    "AVSModel",
    "AVSOutput",
    "AudioError",
    "AudioExamples",
    "CheckpointError",
    "ConfigError",
    "FrameError",
    "InputError",
    "NegativeAudioError",
    "Prediction",
    "build_model",
    "get_config",
    "waveform_to_examples",
    "window_to_example",
]
