"""Typed node parameters: one dataclass per node, read and documented from one place.

Each field of a parameters dataclass is a ROS parameter; :func:`param` attaches
its description. The same dataclass gives ``--help`` text, the README table
and the YAML defaults, so they cannot drift apart. ROS-free: nodes declare
the fields with :func:`perception_nodes.runtime.declare_and_read`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def param(
    default: Any,
    description: str,
    *,
    read_only: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    positive: bool = False,
    allow_nan: bool = False,
    int_as_text: bool = False,
) -> Any:
    """A dataclass field that is a ROS parameter with ``description``.

    ``int_as_text`` (text parameters): an integer is taken as its decimal text, for values such as CPU lists that
    ROS's command line reads as a number when they are one (``-p brain_cpus:=1``).

    Numeric parameters state the values that can work, checked at start-up (:func:`check_range`): ``minimum`` /
    ``maximum`` (inclusive), ``below`` (exclusive upper bound), ``positive`` (> 0); floats must be finite, NaN
    only where ``allow_nan`` gives it a meaning.
    """
    return dataclasses.field(default=default, metadata={
        "description": description, "read_only": read_only, "minimum": minimum, "maximum": maximum,
        "below": below, "positive": positive, "allow_nan": allow_nan, "int_as_text": int_as_text,
    })


def range_text(metadata: Any) -> str:
    """The allowed range as text (``""`` when unbounded)."""
    parts = []
    if metadata.get("positive"):
        parts.append("> 0")
    if metadata.get("minimum") is not None:
        parts.append(f">= {metadata['minimum']:g}")
    if metadata.get("maximum") is not None:
        parts.append(f"<= {metadata['maximum']:g}")
    if metadata.get("below") is not None:
        parts.append(f"< {metadata['below']:g}")
    return ", ".join(parts)


def check_range(name: str, value: Any, metadata: Any) -> None:
    """Raise :class:`ParameterError` when a numeric ``value`` is outside what ``param`` declared."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and math.isnan(value):
        if metadata.get("allow_nan"):
            return
        raise ParameterError(f"parameter {name!r} must be a number, got nan")
    if isinstance(value, float) and math.isinf(value):
        raise ParameterError(f"parameter {name!r} must be finite, got {value}")
    low, high, below = metadata.get("minimum"), metadata.get("maximum"), metadata.get("below")
    if (metadata.get("positive") and value <= 0) or (low is not None and value < low) or (
        high is not None and value > high
    ) or (below is not None and value >= below):
        raise ParameterError(f"parameter {name!r} must be {range_text(metadata)}, got {value}")


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
    ranges = {f.name: range_text(f.metadata) for f in dataclasses.fields(params_cls)}
    for name, tname, default, desc in rows:
        allowed = f" ({ranges[name]})" if ranges[name] else ""
        lines.append(f"  {name:<{width}}  {tname:<5} default {default!r}{allowed}\n  {'':<{width}}  {desc}")
    return "\n".join(lines)


class ParameterError(ValueError):
    """A parameter value has the wrong type or is out of range; the message names it."""


def coerce(name: str, value: Any, default: Any, *, int_as_text: bool = False) -> Any:
    """Convert a parameter ``value`` to the type of its ``default``, or raise :class:`ParameterError`.

    Integers are accepted for float parameters (``rate:=20``), and for text parameters declared ``int_as_text``
    (as their decimal text); nothing else is converted silently.
    """
    want = type(default)
    if isinstance(value, want) and not (want is int and isinstance(value, bool)):
        return value
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is str and int_as_text and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ParameterError(f"parameter {name!r} must be {want.__name__}, got {value!r} ({type(value).__name__})")
