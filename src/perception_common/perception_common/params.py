"""Typed node parameters: one dataclass per node, read and documented from one place.

Each field of a parameters dataclass is a ROS parameter; :func:`param` attaches
its description. The same dataclass gives ``--help`` text, the README table
and the YAML defaults, so they cannot drift apart. ROS-free: nodes declare
the fields with :func:`perception_nodes.runtime.declare_and_read`.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def param(default: Any, description: str, *, read_only: bool = False) -> Any:
    """A dataclass field that is a ROS parameter with ``description``."""
    return dataclasses.field(default=default, metadata={"description": description, "read_only": read_only})


def describe(params_cls: type) -> list[tuple[str, str, Any, str]]:
    """``(name, type name, default, description)`` for every parameter of ``params_cls``."""
    rows = []
    for f in dataclasses.fields(params_cls):
        rows.append((f.name, type(f.default).__name__, f.default, f.metadata.get("description", "")))
    return rows


def help_text(params_cls: type) -> str:
    rows = describe(params_cls)
    width = max(len(r[0]) for r in rows)
    lines = ["parameters (set with --ros-args -p name:=value, or a YAML file with --params-file):"]
    for name, tname, default, desc in rows:
        lines.append(f"  {name:<{width}}  {tname:<5} default {default!r}\n  {'':<{width}}  {desc}")
    return "\n".join(lines)


class ParameterError(ValueError):
    """A parameter value has the wrong type or is out of range; the message names it."""


def coerce(name: str, value: Any, default: Any) -> Any:
    """Convert a parameter ``value`` to the type of its ``default``, or raise :class:`ParameterError`.

    Integers are accepted for float parameters (``rate:=20``); nothing else is
    converted silently.
    """
    want = type(default)
    if isinstance(value, want) and not (want is int and isinstance(value, bool)):
        return value
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ParameterError(f"parameter {name!r} must be {want.__name__}, got {value!r} ({type(value).__name__})")
