"""Time stamps as integer nanoseconds, the one way every package reads and writes them.

Works on any object with ``sec`` / ``nanosec`` attributes: ``builtin_interfaces/Time`` from rclpy, the same type
deserialised by ``rosbags``, or a header's ``stamp``; nothing here imports ROS. Integers throughout, so stamps
used as dictionary keys (a frame's results, its audio window) never suffer float rounding.
"""

from __future__ import annotations

from typing import Any

NS = 1_000_000_000


def stamp_ns(stamp: Any) -> int:
    """``sec * 1e9 + nanosec`` of a ``builtin_interfaces/Time``-like object."""
    return int(stamp.sec) * NS + int(stamp.nanosec)


def header_ns(msg: Any) -> int:
    """The stamp of ``msg.header`` in nanoseconds."""
    return stamp_ns(msg.header.stamp)


def split_ns(ns: int) -> tuple[int, int]:
    """``(sec, nanosec)`` of a stamp in nanoseconds (nanosec in [0, 1e9), also for negative stamps)."""
    sec, nanosec = divmod(int(ns), NS)
    return sec, nanosec


def set_stamp(stamp: Any, ns: int) -> Any:
    """Write ``ns`` into a ``Time``-like object in place (returns it)."""
    stamp.sec, stamp.nanosec = split_ns(ns)
    return stamp


def stamp_text(stamp: Any) -> str:
    """``"sec.nanosec"`` with nine digits, as logs and warnings name a message."""
    return f"{int(stamp.sec)}.{int(stamp.nanosec):09d}"
