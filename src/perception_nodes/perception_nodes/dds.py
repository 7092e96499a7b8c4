"""The workspace's Fast DDS profile (``config/fastdds.xml``): camera-sized messages over shared memory.

Fast DDS's default shared-memory segment (512 KB) cannot hold a 640x480 rgb8 image; on one host a best-effort
publisher then delivered none of them and a reliable one stalled for seconds under load (numbers in the XML file and
the README, QoS). The segment belongs to the publishing participant, so every process that publishes images must
load the profile before its first participant exists: :func:`configure_fastdds` does that by setting
``FASTDDS_DEFAULT_PROFILES_FILE`` in this process's environment (children inherit it), unless the user already set a
profile or chose another RMW. ROS-free: call it before ``rclpy.init``.

The profile also gives readers and writers one buffer per sample (``historyMemoryPolicy`` DYNAMIC): rmw_fastrtps's
own policy keeps every history buffer at the largest sample it ever held, so one oversized image left a node tens of
MB larger for good. rmw_fastrtps reads that setting from XML only with ``RMW_FASTRTPS_USE_QOS_FROM_XML=1``, which is
set beside the shipped profile (not beside a profile of the user's own).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import MutableMapping
from pathlib import Path

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
LEGACY_PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"  # Fast DDS 2.x name, still read
PROFILE_NAME = "fastdds.xml"
QOS_FROM_XML_ENV = "RMW_FASTRTPS_USE_QOS_FROM_XML"


def profile_path() -> Path | None:
    """The shipped profile: the installed share folder first (``ros2 launch``, Docker), then the source tree."""
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        with contextlib.suppress(PackageNotFoundError):
            candidates.append(Path(get_package_share_directory("perception_nodes")) / "config" / PROFILE_NAME)
    except ImportError:
        pass
    candidates.append(Path(__file__).resolve().parents[1] / "config" / PROFILE_NAME)  # src/perception_nodes/config
    return next((p for p in candidates if p.is_file()), None)


def configure_fastdds(environ: MutableMapping[str, str] | None = None) -> tuple[str, str]:
    """Point Fast DDS at the shipped profile unless the user decided otherwise.

    Returns ``(level, message)`` for the caller's log: ``"info"`` when applied or left to the user's choice,
    ``"warning"`` when the shipped file is missing (images over ~0.5 MB may then be lost on this host).
    """
    env = os.environ if environ is None else environ
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return "info", f"RMW_IMPLEMENTATION={rmw}: the workspace's Fast DDS profile does not apply"
    path = profile_path()
    for var in (PROFILE_ENV, LEGACY_PROFILE_ENV):
        if env.get(var):
            mine = path is not None and Path(env[var]).resolve() == path.resolve()
            if mine:
                env.setdefault(QOS_FROM_XML_ENV, "1")
            return "info", f"Fast DDS profile from {var}={env[var]}" + ("" if mine else " (yours, not the shipped one)")
    if path is None:
        return "warning", (
            f"the workspace's Fast DDS profile ({PROFILE_NAME}) was not found: with Fast DDS's 512 KB shared-memory "
            "segment, images over ~0.5 MB published by this process may be lost; set FASTDDS_DEFAULT_PROFILES_FILE"
        )
    env[PROFILE_ENV] = str(path)
    env.setdefault(QOS_FROM_XML_ENV, "1")
    return "info", f"Fast DDS profile {path} (16 MB shared-memory segment for camera-sized messages)"
