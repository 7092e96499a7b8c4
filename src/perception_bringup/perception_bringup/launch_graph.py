"""Turn a graph YAML (see :mod:`perception_nodes.graph`) into a ``launch`` description.

Used by the launch files under ``launch/``; needs ``launch`` and ``launch_ros``
(the Docker image, a ROS 2 install). In the pip environment, where they do not
exist, run ``perception-run GRAPH.yaml`` instead: it starts the same nodes with
the same file.
"""

from __future__ import annotations

from pathlib import Path


def generate(default_graph: str | Path):
    try:
        from launch import LaunchDescription
        from launch.actions import DeclareLaunchArgument, OpaqueFunction
        from launch.substitutions import LaunchConfiguration
        from launch_ros.actions import Node
    except ImportError as exc:
        raise ImportError(
            f"ros2 launch needs the ROS 2 'launch' and 'launch_ros' packages ({exc}); they are not on PyPI. "
            f"In the pip environment run: perception-run {default_graph}"
        ) from exc

    from perception_nodes.graph import load_graph

    def nodes(context):
        graph = Path(LaunchConfiguration("graph").perform(context)).resolve()
        return [
            Node(
                package=spec.package,
                executable=spec.executable,
                name=spec.executable,
                namespace=spec.namespace or None,
                parameters=[str(graph)],
                output="screen",
                emulate_tty=True,
            )
            for spec in load_graph(graph)
        ]

    return LaunchDescription([
        DeclareLaunchArgument("graph", default_value=str(default_graph),
                              description="graph YAML: a ROS 2 parameters file keyed by [/namespace/]executable"),
        OpaqueFunction(function=nodes),
    ])
