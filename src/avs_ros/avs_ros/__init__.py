"""ROS 2 adapter of the robust AVS library (:mod:`avs`): the ``avs_node``."""
