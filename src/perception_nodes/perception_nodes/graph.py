"""The graph a YAML parameters file describes: which node runs where, with which parameters.

A graph file is an ordinary ROS 2 parameters file (``--params-file``), so the
same file serves ``ros2 launch`` (Docker image) and ``perception-run`` (pip
environment). Each top-level key names one node as ``[/namespace/]executable``;
the executable decides what runs and must be one of :data:`EXECUTABLES`::

    /camera/camera_node:
      ros__parameters:
        source: /dev/video0
    /tracker/tracker_node:
      ros__parameters:
        image_topic: /camera/image_raw

ROS-free: used by the launcher, the launch files and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# executable -> ROS package that installs it
EXECUTABLES = {
    "camera_node": "perception_nodes",
    "microphone_node": "perception_nodes",
    "tracker_node": "trackgpt_ros",
    "avs_node": "avs_ros",
}


class GraphError(ValueError):
    """A graph file is missing, malformed or names an unknown executable."""


@dataclass
class NodeSpec:
    executable: str
    package: str
    namespace: str  # "" or "/ns"
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.executable}" if self.namespace else self.executable

    def ros_args(self, params_file: str | Path) -> list[str]:
        args = ["--ros-args", "--params-file", str(params_file)]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        return args


def load_graph(path: str | Path) -> list[NodeSpec]:
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"graph file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise GraphError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not doc:
        raise GraphError(f"{path} must map node names to {{ros__parameters: ...}}")
    specs = []
    for key, body in doc.items():
        if key == "/**":
            continue  # parameters for every node; the params file hands them over itself
        parts = [p for p in str(key).split("/") if p]
        exe, ns = parts[-1], ("/" + "/".join(parts[:-1])) if len(parts) > 1 else ""
        if exe not in EXECUTABLES:
            raise GraphError(f"{path}: unknown node {key!r}; the last part must be one of {sorted(EXECUTABLES)}")
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise GraphError(f"{path}: {key!r} needs a 'ros__parameters' mapping")
        specs.append(NodeSpec(exe, EXECUTABLES[exe], ns, dict(body["ros__parameters"] or {})))
    return specs


def apply_overrides(path: str | Path, overrides: list[str], out: str | Path) -> Path:
    """Write a copy of graph file ``path`` with ``node_key.param=value`` overrides (YAML values) applied."""
    doc = yaml.safe_load(Path(path).read_text())
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise GraphError(f"override {item!r} must look like NODE.PARAM=VALUE, e.g. /camera/camera_node.rate=15")
        lhs, value = item.split("=", 1)
        node_key, name = lhs.rsplit(".", 1)
        matches = [k for k in doc if k == node_key or str(k).strip("/").endswith(node_key.strip("/"))]
        if len(matches) != 1:
            raise GraphError(f"override {item!r}: node {node_key!r} matches {matches or 'no node'} in {path}")
        doc[matches[0]]["ros__parameters"][name] = yaml.safe_load(value)
    out = Path(out)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
