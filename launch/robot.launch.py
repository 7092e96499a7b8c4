"""ros2 launch: the graph in config/robot.yaml (override with graph:=FILE).

Pip environment (no launch_ros): perception-run config/robot.yaml
"""

from pathlib import Path

from perception_bringup.launch_graph import generate


def generate_launch_description():
    return generate(Path(__file__).resolve().parent.parent / "config" / "robot.yaml")
