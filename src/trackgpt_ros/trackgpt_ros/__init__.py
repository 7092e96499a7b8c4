"""ROS 2 adapter of the TrackGPT library (:mod:`trackgpt`): the ``tracker_node``."""
