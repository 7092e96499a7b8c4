"""Publish every sample message (see msg_samples.py) on /samples/<Type> until killed."""

import rclpy
from msg_samples import TYPES, samples
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("sample_publisher")
    qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.VOLATILE)
    pubs = {name: node.create_publisher(TYPES[name], f"/samples/{name}", qos) for name in TYPES}
    msgs = samples()
    node.create_timer(0.1, lambda: [pubs[name].publish(msgs[name]) for name in pubs])
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
