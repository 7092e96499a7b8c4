"""launch_testing: launch/robot.launch.py with a sensors-only graph brings up nodes whose topics flow.

Run by tests/perception_nodes/test_launcher.py where launch_testing exists (the Docker image):
    python -m launch_testing.launch_test tests/perception_bringup/launch/test_robot_launch.py
"""

import tempfile
import time
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import numpy as np
import rclpy
import soundfile as sf
import yaml
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from perception_msgs.msg import AudioChunk
from sensor_msgs.msg import Image

from perception_nodes.runtime import sensor_qos

REPO = Path(__file__).resolve().parents[3]


def _graph() -> Path:
    tmp = Path(tempfile.mkdtemp())
    import cv2

    (tmp / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp / "frames" / f"{i}.png"), np.full((24, 32, 3), 60 * i, np.uint8))
    sf.write(tmp / "a.wav", np.zeros((8000, 1), np.float32), 16000)
    graph = {
        "/cam/camera_node": {"ros__parameters": {"source": str(tmp / "frames"), "rate": 15.0, "loop": True}},
        "/mic/microphone_node": {"ros__parameters": {"source": str(tmp / "a.wav"), "loop": True}},
    }
    (tmp / "graph.yaml").write_text(yaml.safe_dump(graph))
    return tmp / "graph.yaml"


def generate_test_description():
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "robot.launch.py")),
        launch_arguments={"graph": str(_graph())}.items(),
    )
    return LaunchDescription([robot, launch_testing.actions.ReadyToTest()])


class TestTopicsFlow(unittest.TestCase):
    def test_camera_and_microphone_publish(self):
        rclpy.init()
        node = rclpy.create_node("launch_test_listener")
        images, chunks = [], []
        node.create_subscription(Image, "/cam/image_raw", images.append, sensor_qos(10))
        node.create_subscription(AudioChunk, "/mic/audio", chunks.append, sensor_qos(50))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(images) < 3 or len(chunks) < 3):
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
        rclpy.shutdown()
        self.assertGreaterEqual(len(images), 3)
        self.assertGreaterEqual(len(chunks), 3)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])  # a clean stop on SIGINT
