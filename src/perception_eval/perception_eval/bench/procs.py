"""Node processes for the harness: started by executable (its own PID, so its memory can be read), logged,
stopped with SIGINT, then SIGTERM, then SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

MODULES = {"tracker_node": "trackgpt_ros.tracker_node", "avs_node": "avs_ros.avs_node"}


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (``VmRSS`` of ``/proc/<pid>/status``), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


class NodeProcess:
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
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{namespace.strip('/').replace('/', '_')}_{executable}.log"
        self._log = self.log_path.open("wb")
        self.cmd = cmd
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int | None:
        return rss_bytes(self.proc.pid) if self.proc.poll() is None else None

    def failed(self) -> str | None:
        code = self.proc.poll()
        if code is None:
            return None
        tail = self.log_path.read_text(errors="replace")[-1500:]
        return f"{self.fqn} exited with code {code}; log {self.log_path}:\n{tail}"

    def stop(self) -> None:
        for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
