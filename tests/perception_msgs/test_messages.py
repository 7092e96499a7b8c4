"""Every perception_msgs type travels between two processes over Fast DDS with every field intact."""

import sys
from pathlib import Path

import pytest
from conftest import spin_until

pytestmark = pytest.mark.ros
HELPERS = Path(__file__).resolve().parents[1] / "helpers"


def test_samples_set_every_field(ros_available):
    from msg_samples import TYPES, samples

    for name, msg in samples().items():
        default = TYPES[name]()
        unset = [f for f in msg.get_fields_and_field_types() if getattr(msg, f) == getattr(default, f)]
        assert not unset, f"{name} sample leaves fields at their defaults: {unset}"


def test_every_message_type_round_trips_between_processes(ros_node, processes):
    from msg_samples import TYPES, samples
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy

    expected = samples()
    received: dict[str, object] = {}
    qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
    for name, msg_type in TYPES.items():
        ros_node.create_subscription(msg_type, f"/samples/{name}", lambda m, n=name: received.setdefault(n, m), qos)
    proc = processes.start([sys.executable, str(HELPERS / "publish_samples.py")], name="publisher")
    ok = spin_until(ros_node, lambda: len(received) == len(TYPES), timeout=30)
    assert proc.poll() is None, processes.log(proc)
    assert ok, f"received only {sorted(received)} of {sorted(TYPES)}"
    for name, msg in received.items():
        for field in msg.get_fields_and_field_types():
            assert getattr(msg, field) == getattr(expected[name], field), f"{name}.{field} changed in transit"
        assert msg == expected[name]
