"""Robust audio-visual segmentation (TPAVI + classifier-guided similarity gate), plain PyTorch.

Importable without rclpy; the ROS node package ``avs_ros`` sits beside it.
"""
