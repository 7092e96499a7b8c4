"""Node processes for the harness: one node per process, started by executable with its parameters on the
command line (its own PID, so its memory can be read), logged, stopped as every tool stops its nodes
(:mod:`perception_nodes.processes`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from perception_nodes.processes import ManagedProcess

MODULES = {"tracker_node": "trackgpt_ros.tracker_node", "avs_node": "avs_ros.avs_node"}


class NodeProcess(ManagedProcess):
    """One node started as ``<executable> --ros-args -r __ns:=<namespace> -p k:=v ...``."""

    def __init__(self, executable: str, namespace: str, params: dict, log_dir: Path):
        self.executable = executable
        self.namespace = namespace
        self.fqn = f"{namespace}/{executable}"
        args = ["--ros-args", "-r", f"__ns:={namespace}"]
        for key, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        exe = shutil.which(executable)
        cmd = [exe, *args] if exe else [sys.executable, "-m", MODULES[executable], *args]
        log_path = log_dir / f"{namespace.strip('/').replace('/', '_')}_{executable}.log"
        super().__init__(cmd, name=self.fqn, log_path=log_path)
