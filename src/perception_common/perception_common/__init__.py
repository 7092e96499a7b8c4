"""Shared, ROS-free helpers of the perception workspace.

Everything directly under this package imports without rclpy; ROS adapters
live in :mod:`perception_common.nodes`.
"""
