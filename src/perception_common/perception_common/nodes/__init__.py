"""ROS 2 adapters (need rclpy). Model and I/O logic lives in the ROS-free modules beside this package."""
