"""perception-run starts a graph YAML's nodes as processes; the launch files do the same under ros2 launch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import REPO, spin_until

from perception_nodes.graph import GraphError, apply_overrides, load_graph

pytestmark = pytest.mark.ros
LAUNCH_TEST = REPO / "tests" / "perception_bringup" / "launch" / "test_robot_launch.py"


def _graph(tmp_path: Path) -> Path:
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((24, 32, 3), 50 * i, np.uint8))
    sf.write(tmp_path / "a.wav", np.zeros((8000, 1), np.float32), 16000)
    graph = {
        "/cam/camera_node": {"ros__parameters": {"source": str(frames), "rate": 15.0, "loop": True}},
        "/mic/microphone_node": {"ros__parameters": {"source": str(tmp_path / "a.wav"), "loop": True}},
    }
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    return path


def test_graph_file_parsing_and_overrides(tmp_path):
    path = _graph(tmp_path)
    specs = {s.key: s for s in load_graph(path)}
    assert set(specs) == {"/cam/camera_node", "/mic/microphone_node"}
    assert specs["/cam/camera_node"].package == "perception_nodes"
    out = apply_overrides(path, ["/cam/camera_node.rate=5", "microphone_node.loop=false"], tmp_path / "o.yaml")
    specs = {s.key: s for s in load_graph(out)}
    assert specs["/cam/camera_node"].parameters["rate"] == 5
    assert specs["/mic/microphone_node"].parameters["loop"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"/x/not_a_node": {"ros__parameters": {}}}))
    with pytest.raises(GraphError, match="unknown node '/x/not_a_node'"):
        load_graph(bad)
    with pytest.raises(GraphError, match="does not exist"):
        load_graph(tmp_path / "missing.yaml")
    with pytest.raises(GraphError, match="NODE.PARAM=VALUE"):
        apply_overrides(path, ["rate=5"], tmp_path / "x.yaml")


def test_shipped_graphs_parse():
    for name in ("robot", "tracking", "avs"):
        specs = load_graph(REPO / "config" / f"{name}.yaml")
        assert specs, name


def test_perception_run_starts_and_stops_the_graph(ros_node, tmp_path):
    from perception_msgs.msg import AudioChunk
    from sensor_msgs.msg import Image

    from perception_nodes.runtime import sensor_qos

    images, chunks = [], []
    ros_node.create_subscription(Image, "/cam/image_raw", images.append, sensor_qos(10))
    ros_node.create_subscription(AudioChunk, "/mic/audio", chunks.append, sensor_qos(50))
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(["perception-run", str(_graph(tmp_path)), "--set", "/cam/camera_node.rate=20"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    nodes: list[int] = []
    try:
        assert spin_until(ros_node, lambda: len(images) >= 5 and len(chunks) >= 5, timeout=40), (
            (tmp_path / "run.log").read_text())
        nodes = _children(proc.pid)
        assert len(_alive(nodes)) == 2, nodes
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=30)
    text = (tmp_path / "run.log").read_text()
    assert rc == 0, text
    assert "[/cam/camera_node]" in text and "[/mic/microphone_node]" in text
    assert not _alive(nodes), f"left running: {_alive(nodes)}"  # no node outlives the launcher


def test_launch_files_with_launch_testing(tmp_path):
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
        import launch_testing  # noqa: F401
    except ImportError:
        pytest.skip("launch/launch_ros/launch_testing are not on PyPI; this runs in the Docker image")
    res = subprocess.run(
        [sys.executable, "-m", "launch_testing.launch_test", str(LAUNCH_TEST)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _children(pid: int) -> list[int]:
    ps = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in ps.stdout.split()]


def _alive(pids: list[int]) -> list[int]:
    """The pids still running (a zombie waiting for its reaper counts as gone)."""
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
        except FileNotFoundError:
            pass
    return alive


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP])
def test_no_node_outlives_perception_run(ros_node, tmp_path, how):
    """Killed outright (no chance to stop anything) or hung up on (terminal closed): the nodes go with it."""
    from perception_msgs.msg import AudioChunk

    from perception_nodes.runtime import sensor_qos

    chunks = []
    ros_node.create_subscription(AudioChunk, "/mic/audio", chunks.append, sensor_qos(50))
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(["perception-run", str(_graph(tmp_path))], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ))
    try:
        assert spin_until(ros_node, lambda: len(chunks) >= 3, timeout=40), (tmp_path / "run.log").read_text()
        nodes = _children(proc.pid)
        assert len(_alive(nodes)) == 2, f"camera and microphone nodes should be running: {nodes}"
        os.kill(proc.pid, how)  # perception-run alone, not its nodes' own process groups
        rc = proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _alive(nodes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(nodes), f"left running after {how.name}: {_alive(nodes)}"
        assert rc == (-signal.SIGKILL if how == signal.SIGKILL else 0), (tmp_path / "run.log").read_text()
    finally:
        leftover = _children(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=30)
        for pid in _alive(leftover):
            os.kill(pid, signal.SIGKILL)


def test_a_node_that_will_not_stop_is_killed_and_fails_the_run(tmp_path, ros_available):
    """A node stuck in its clean-up (held there by the runtime's test gate) gets SIGTERM, then SIGKILL, and
    perception-run's exit status says so (it used to exit 0)."""
    from perception_nodes.runtime import CLEANUP_GATE_ENV

    log_path = tmp_path / "run.log"
    env = dict(os.environ, **{CLEANUP_GATE_ENV: str(tmp_path / "never")})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(["perception-run", str(_graph(tmp_path)), "--only", "/mic/microphone_node"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + 60
    while log_path.read_text().count("Fast DDS profile") < 2 and time.monotonic() < deadline:  # runner's, node's
        time.sleep(0.1)
    nodes = _children(proc.pid)
    assert len(_alive(nodes)) == 1, log_path.read_text()
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=60)
    text = log_path.read_text()
    assert rc == 1, text
    assert "did not stop; sending SIGTERM" in text and "sending SIGKILL" in text, text
    assert "/mic/microphone_node was killed by SIGKILL while stopping" in text, text
    assert not _alive(nodes)


def test_respawn_starts_a_node_again_when_it_exits(tmp_path, ros_available):
    """A node that fails at start-up (a camera whose source is gone) is started again as often as --respawn-max
    allows, then perception-run ends with the failure in its status."""
    log_path, graph = tmp_path / "run.log", _graph(tmp_path)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["perception-run", str(graph), "--only", "/cam/camera_node", "--set",
             f"/cam/camera_node.source={tmp_path / 'unplugged.mp4'}", "--respawn", "camera_node",
             "--respawn-delay", "0.2", "--respawn-max", "2"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    rc = proc.wait(timeout=120)  # three runs of the camera, then nothing left to run
    text = log_path.read_text()
    assert text.count("respawning /cam/camera_node") == 2 and "respawning /cam/camera_node (2)" in text, text
    assert text.count("/cam/camera_node exited with code 2") == 3 and rc == 1, text
    assert subprocess.run(["perception-run", str(graph), "--respawn", "nothing"],
                          capture_output=True, text=True).returncode == 2
