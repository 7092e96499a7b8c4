"""The shipped Fast DDS profile (config/fastdds.xml): who applies it, and that camera-sized frames arrive with it.

Measured on the development machine before the profile existed: a best-effort 640x480 rgb8 publisher delivered 0
to 21 of 120-180 frames at 30 fps to a best-effort subscriber in another process (Fast DDS's 512 KB shared-memory
segment cannot hold the frame); with the profile, all of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import REPO, spin_until

from perception_nodes.dds import LEGACY_PROFILE_ENV, PROFILE_ENV, QOS_FROM_XML_ENV, configure_fastdds, profile_path

NS = "{http://www.eprosima.com}"


def test_profile_is_found_and_its_segment_holds_full_hd_frames():
    path = profile_path()
    assert path is not None and path.resolve() == (REPO / "config" / "fastdds.xml").resolve()
    root = ET.parse(path).getroot()
    shm = [d for d in root.iter(f"{NS}transport_descriptor") if d.findtext(f"{NS}type") == "SHM"]
    assert len(shm) == 1
    assert int(shm[0].findtext(f"{NS}segment_size")) >= 2 * 1920 * 1080 * 3  # two 1080p rgb8 frames in flight
    participant = root.find(f"{NS}profiles/{NS}participant")
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iter(f"{NS}transport_id")]
    assert "UDPv4" in {
        d.findtext(f"{NS}type")
        for d in root.iter(f"{NS}transport_descriptor")
        if d.findtext(f"{NS}transport_id") in used
    }, "other hosts still need UDP"
    for kind in ("data_writer", "data_reader"):
        endpoint = root.find(f"{NS}profiles/{NS}{kind}")
        assert endpoint.get("is_default_profile") == "true"
        assert endpoint.findtext(f"{NS}historyMemoryPolicy") == "DYNAMIC"  # buffers do not keep the largest sample
        assert endpoint.findtext(f"{NS}qos/{NS}data_sharing/{NS}kind") == "OFF"  # as rmw_fastrtps sets it


def test_configure_sets_the_profile_only_where_the_user_has_not_chosen():
    env: dict[str, str] = {}
    level, message = configure_fastdds(env)
    assert level == "info" and env[PROFILE_ENV] == str(profile_path()) and "16 MB" in message
    assert env[QOS_FROM_XML_ENV] == "1"  # else rmw_fastrtps ignores the profile's history memory policy

    mine = {PROFILE_ENV: "/etc/my_fastdds.xml"}
    _, message = configure_fastdds(mine)
    assert mine == {PROFILE_ENV: "/etc/my_fastdds.xml"} and "yours" in message

    # scripts/env.sh exports config/fastdds.xml, a link to the shipped file (as the install space's copy is):
    # the same profile, not the user's own
    shipped = {PROFILE_ENV: str(REPO / "config" / "fastdds.xml")}
    _, message = configure_fastdds(shipped)
    assert "yours" not in message and shipped[QOS_FROM_XML_ENV] == "1"
    chosen = {PROFILE_ENV: str(REPO / "config" / "fastdds.xml"), QOS_FROM_XML_ENV: "0"}
    configure_fastdds(chosen)
    assert chosen[QOS_FROM_XML_ENV] == "0"  # the user's explicit choice stays

    legacy = {LEGACY_PROFILE_ENV: "/etc/old.xml"}
    configure_fastdds(legacy)
    assert PROFILE_ENV not in legacy

    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    _, message = configure_fastdds(cyclone)
    assert PROFILE_ENV not in cyclone and "rmw_cyclonedds_cpp" in message


@pytest.mark.ros
def test_camera_node_delivers_640x480_frames_best_effort(ros_node, processes, tmp_path):
    """The node applies the profile itself (it is a publisher): best-effort VGA frames reach another process."""
    import cv2
    from sensor_msgs.msg import Image

    from perception_nodes.runtime import sensor_qos

    folder = tmp_path / "vga"
    folder.mkdir()
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(3):
        img = np.stack([(xx + 40 * i) % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)
    images: list[Image] = []
    ros_node.create_subscription(Image, "/vga/image_raw", images.append, sensor_qos(depth=5))
    # a child without the variable: what `ros2 run` in a plain shell gives the node
    env = {k: "" for k in (PROFILE_ENV, LEGACY_PROFILE_ENV)}
    cam = processes.start(
        [
            "camera_node",
            "--ros-args",
            "-r",
            "__ns:=/vga",
            "-p",
            f"source:={folder}",
            "-p",
            "rate:=15.0",
            "-p",
            "loop:=true",
            "-p",
            "qos_reliability:=best_effort",
        ],
        env=env,
    )
    assert spin_until(ros_node, lambda: len(images) >= 15, timeout=40), (
        f"{len(images)} best-effort 640x480 frames arrived\n{processes.log(cam)[-2000:]}"
    )
    assert (images[0].width, images[0].height) == (640, 480)
    assert "fastdds.xml" in processes.log(cam), "the node must log which Fast DDS profile it loaded"


@pytest.mark.ros
def test_dds_check_reports_frames_delivered_with_the_shipped_profile(tmp_path, ros_available):
    out = tmp_path / "dds.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception_eval.bench.transport",
            "--sizes",
            "640x480",
            "--qos",
            "best_effort",
            "--profiles",
            "shipped",
            "--fps",
            "15",
            "--seconds",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (pair,) = json.loads(out.read_text())["pairs"]
    assert pair["published"] == 30 and pair["matched"]
    assert pair["received"] >= 27, pair
    assert pair["latency_ms_p50"] is not None and pair["latency_ms_p50"] < 1000
