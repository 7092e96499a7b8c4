"""The node runtime and the sensor nodes of the perception workspace (needs rclpy).

What every node shares: ``--help``, typed parameters, QoS and clean shutdown (:mod:`~perception_nodes.runtime`),
the frame hand-over and processing thread of the model nodes (:mod:`~perception_nodes.frame_queue`,
:mod:`~perception_nodes.frame_worker`), image message conversion (:mod:`~perception_nodes.image_msgs`), the Fast
DDS profile (:mod:`~perception_nodes.dds`) and graph files (:mod:`~perception_nodes.graph`); and the sensor nodes
``camera_node`` and ``microphone_node``. The model nodes live in ``trackgpt_ros`` and ``avs_ros``.
"""
