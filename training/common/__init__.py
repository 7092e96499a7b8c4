"""Shared training machinery: configs, the resumable loop, checkpoints, metrics logs and curves."""

from .config import ConfigError, apply_overrides, deep_merge, dump_config, load_config, parse_set
from .errors import SetupError

__all__ = [
    "ConfigError",
    "SetupError",
    "apply_overrides",
    "deep_merge",
    "dump_config",
    "load_config",
    "parse_set",
]
