"""Every node's numeric parameters state the values that can work; a value outside them stops the node at start-up
with one line naming the parameter and its range (exit 2)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from perception_common.params import ParameterError, check_range, coerce, param, range_text


def _params():
    from avs_ros.avs_node import AVSParams
    from perception_nodes.camera_node import CameraParams
    from perception_nodes.microphone_node import MicrophoneParams
    from trackgpt_ros.tracker_node import TrackerParams

    return [CameraParams, MicrophoneParams, TrackerParams, AVSParams]


def test_every_numeric_parameter_states_its_range(ros_available):
    unbounded = [
        f"{cls.__name__}.{f.name}"
        for cls in _params()
        for f in dataclasses.fields(cls)
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
        and not range_text(f.metadata) and not f.metadata.get("allow_nan")
    ]
    assert not unbounded, f"numeric parameters without a declared range: {unbounded}"
    for cls in _params():  # and every default is inside it
        for f in dataclasses.fields(cls):
            check_range(f.name, f.default, f.metadata)


@dataclasses.dataclass
class Example:
    rate: float = param(1.0, "Hz", minimum=0.0)
    depth: int = param(5, "queue", minimum=1, maximum=100)
    share: float = param(0.5, "fraction", minimum=0.0, below=1.0)
    window: float = param(1.0, "s", positive=True)
    threshold: float = param(math.nan, "nan = the model's", allow_nan=True)


@pytest.mark.parametrize(
    "name, value, message",
    [("rate", -0.5, ">= 0"), ("depth", 0, ">= 1"), ("depth", 101, "<= 100"), ("window", 0.0, "> 0"),
     ("share", 1.0, ">= 0, < 1"), ("rate", math.inf, "finite"), ("rate", math.nan, "number"),
     ("threshold", math.inf, "finite")],
)
def test_check_range_refuses_values_that_cannot_work(name, value, message):
    field = next(f for f in dataclasses.fields(Example) if f.name == name)
    with pytest.raises(ParameterError, match=message) as err:
        check_range(name, value, field.metadata)
    assert repr(name) in str(err.value)


def test_check_range_accepts_the_edges_and_nan_where_it_means_something():
    fields = {f.name: f.metadata for f in dataclasses.fields(Example)}
    check_range("rate", 0.0, fields["rate"])
    check_range("depth", 100, fields["depth"])
    check_range("threshold", math.nan, fields["threshold"])
    check_range("threshold", -3.0, fields["threshold"])


def test_integers_pass_as_text_only_where_declared():
    assert coerce("brain_cpus", 1, "", int_as_text=True) == "1"
    assert coerce("rate", 20, 1.0) == 20.0
    with pytest.raises(ParameterError, match="'model' must be str, got 1"):
        coerce("model", 1, "")
    with pytest.raises(ParameterError, match="must be str"):
        coerce("brain_cpus", True, "", int_as_text=True)


@pytest.mark.ros
@pytest.mark.parametrize(
    "args, named",
    [(["camera_node", "--ros-args", "-p", "rate:=-5.0"], "'rate' must be >= 0"),
     (["microphone_node", "--ros-args", "-p", "source:=x.wav", "-p", "chunk_size:=0"], "'chunk_size' must be >= 1"),
     (["tracker_node", "--ros-args", "-p", "model:=config:tiny", "-p", "tau:=1.5"], "'tau' must be >= 0, <= 1"),
     (["avs_node", "--ros-args", "-p", "model:=config:tiny", "-p", "buffer_seconds:=.inf"], "'buffer_seconds'"),
     # ROS reads brain_cpus:=99 as an integer: it reaches the CPU check as text (not "must be str")
     (["tracker_node", "--ros-args", "-p", "model:=config:tiny", "-p", "brain_cpus:=99"],
      "'brain_cpus' names CPUs [99]")],
)
def test_a_node_refuses_an_impossible_value_at_start_up(processes, args, named, ros_available):
    proc = processes.start(args)
    assert proc.wait(timeout=60) == 2
    log = processes.log(proc)
    assert "cannot start" in log and named in log and "Traceback" not in log
