"""Run configurations: one YAML file per run, merged over the script's defaults, saved beside checkpoints.

Rules:

* Each ``train.py`` defines ``DEFAULTS``, a nested dict holding every hyper-parameter with its default.
  A run's YAML file overrides any part of it; ``--set a.b.c=value`` overrides single keys afterwards
  (``value`` is parsed as YAML: ``3``, ``1e-4``, ``true``, ``null``, ``[1, 2]``, ``{k: v}``; list items are
  addressed by index: ``data.datasets.0.root=/data/ytvos``).
* Numbers like ``1e-4`` (which YAML 1.1 reads as strings) are read as floats.
* A key that is not in the defaults is an error naming it (a typo must not be silently ignored), except
  under a default that is an empty mapping ``{}`` (free-form, e.g. model overrides) or ``None``.
* Mappings merge key by key; lists and scalars are replaced whole.
* The resolved config is written as ``config.yaml`` in the output folder and in every checkpoint, so a run
  can be repeated or resumed from what it actually used.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override is malformed or names an unknown key."""


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; such strings become floats."""
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _free(default: Any) -> bool:
    return default is None or (isinstance(default, Mapping) and not default)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any], *, where: str = "", strict: bool = True) -> dict:
    """``base`` updated by ``update`` (mappings merged recursively); unknown keys raise when ``strict``."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in out:
            if strict:
                known = ", ".join(sorted(map(str, out))) or "(none)"
                raise ConfigError(f"unknown config key {path!r}; known keys here: {known}")
            out[key] = copy.deepcopy(value)
            continue
        current = out[key]
        if isinstance(current, Mapping) and current and isinstance(value, Mapping):
            out[key] = deep_merge(current, value, where=path, strict=strict)
        elif isinstance(current, Mapping) and current and value is not None:
            raise ConfigError(f"config key {path!r} must be a mapping, got {value!r}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"a.b=1e-4"`` -> ``(["a", "b"], 0.0001)``; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set has an empty key in {item!r}")
    try:
        value = _numbers(yaml.safe_load(raw)) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
    return parts, value


_FREE = object()  # marks a part of the config below a free-form default (any keys allowed)


def _set_path(config: dict, parts: Sequence[str], value: Any, defaults: Any) -> None:
    node: Any = config
    default_node: Any = defaults
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        path = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {'.'.join(parts)}: {path!r} is not an index of a {len(node)}-item list")
            index = int(part)
            if last:
                node[index] = value
                return
            node, default_node = node[index], _FREE
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(parts)}: {'.'.join(parts[:i])!r} is not a mapping")
        free = default_node is _FREE or _free(default_node)
        if part not in node and not free:
            known = ", ".join(sorted(map(str, node))) or "(none)"
            raise ConfigError(f"--set: unknown config key {path!r}; known keys here: {known}")
        if last:
            current = node.get(part)
            child = default_node.get(part) if isinstance(default_node, Mapping) else None
            if isinstance(current, Mapping) and current and isinstance(value, Mapping):
                node[part] = deep_merge(current, value, where=path, strict=not (free or _free(child)))
            else:
                node[part] = value
            return
        if node.get(part) is None:
            node[part] = {}
        if free:
            default_node = _FREE
        else:
            child = default_node.get(part) if isinstance(default_node, Mapping) else None
            default_node = _FREE if _free(child) else child
        node = node[part]


def apply_overrides(config: Mapping[str, Any], items: Sequence[str], defaults: Mapping[str, Any] | None = None) -> dict:
    """Apply ``--set`` items in order; returns a new dict."""
    out = copy.deepcopy(dict(config))
    reference = defaults if defaults is not None else copy.deepcopy(out)
    for item in items:
        parts, value = parse_set(item)
        _set_path(out, parts, value, reference)
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a file; :class:`ConfigError` naming it when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    data = _numbers(data)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None, defaults: Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults, updated by the YAML file at ``path`` (if any), then by ``--set`` items."""
    config = copy.deepcopy(dict(defaults))
    if path is not None:
        config = deep_merge(config, read_yaml(path))
    return apply_overrides(config, overrides, defaults)


def dump_config(config: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``config`` as YAML (key order kept); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None), encoding="utf-8")
    return path


def get(config: Mapping[str, Any], dotted: str) -> Any:
    """``get(cfg, "optim.lr")``; :class:`ConfigError` when a part is missing."""
    node: Any = config
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            raise ConfigError(f"config has no key {dotted!r}")
    return node


def diff_keys(a: Any, b: Any, where: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs (for resume checks)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for key in dict.fromkeys([*a, *b]):
            path = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                out.extend(diff_keys(a[key], b[key], path))
        return out
    return [] if a == b else [where]


def float_grid(text: str) -> list[float]:
    """An argparse type: ``start:stop:step`` (stop included when on the grid, e.g. ``0.05:0.95:0.05``) or ``a,b,c``;
    finite numbers, at least one."""
    import argparse
    import math

    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if not (step > 0 and stop >= start and math.isfinite(stop - start)):
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            values = [round(start + i * step, 6) for i in range(count)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError
        return values
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"expected start:stop:step (step > 0, stop >= start) or a,b,c of finite numbers; got {text!r}"
        ) from None
