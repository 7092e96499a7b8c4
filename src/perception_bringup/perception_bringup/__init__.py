"""Bringup of the perception workspace: ``perception-run`` (a graph YAML without ``launch_ros``), the launch files'
helper (:mod:`~perception_bringup.launch_graph`), ``instruction-pub`` and ``perception-demo``. The top layer."""
