"""ROS-free helpers of the perception workspace, the bottom layer every package above imports.

Frame validation (:mod:`~perception_common.images`), video I/O (:mod:`~perception_common.video`), the
time-indexed audio buffer (:mod:`~perception_common.audio_buffer`), the one checkpoint format
(:mod:`~perception_common.checkpoint`), model-spec names (:mod:`~perception_common.models`), typed parameter
specs (:mod:`~perception_common.params`) and timing statistics (:mod:`~perception_common.timing`). Nothing here
imports rclpy or any other ROS package; the node runtime is :mod:`perception_nodes`.
"""
