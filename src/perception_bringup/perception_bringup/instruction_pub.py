"""instruction-pub: send an instruction to the tracker, like
``ros2 topic pub --once /instruction std_msgs/msg/String "{data: '...'}"`` (ros2cli is not on PyPI).

Waits until the tracker's subscription is matched (so the message is not lost
to discovery), publishes once with reliable QoS, and returns.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="instruction-pub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", help="the instruction, e.g. 'track the thing I could cut bread with'")
    parser.add_argument("--topic", default="/instruction", help="instruction topic (default /instruction)")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a subscriber (default 10)")
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("instruction_pub")
    try:
        pub = node.create_publisher(String, args.topic, QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
        deadline = time.monotonic() + args.wait
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        if pub.get_subscription_count() == 0:
            print(f"instruction-pub: no subscriber on {args.topic} after {args.wait:.0f} s; publishing anyway",
                  file=sys.stderr)
        pub.publish(String(data=args.text))
        end = time.monotonic() + 0.5  # give DDS time to deliver before the participant goes away
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        print(f"instruction-pub: sent {args.text!r} on {args.topic}")
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
