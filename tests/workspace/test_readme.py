"""The README stays true: every node parameter and every console script is documented."""

from pathlib import Path

import pytest

from perception_common.params import describe

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _params():
    from avs_ros.avs_node import AVSParams
    from perception_nodes.camera_node import CameraParams
    from perception_nodes.microphone_node import MicrophoneParams
    from trackgpt_ros.tracker_node import TrackerParams

    return [CameraParams, MicrophoneParams, TrackerParams, AVSParams]


def test_every_node_parameter_is_in_the_readme(ros_available):
    missing = [f"{cls.__name__}.{name}" for cls in _params() for name, *_ in describe(cls) if name not in README]
    assert not missing, f"parameters missing from README.md: {missing}"


ENTRY_POINTS = ["make demo", "make test", "perception-run", "instruction-pub", "source scripts/env.sh"]


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_readme_names_the_entry_points(name):
    assert name in README
