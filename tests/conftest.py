"""Shared fixtures: ROS 2 processes over real DDS, kept on this machine.

Every ROS test runs with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and its own
``ROS_DOMAIN_ID`` (from the environment, default 42), so DDS discovery never
leaves the loopback interface and parallel runs do not cross-talk.

ROS tests need rclpy and the colcon-built workspace (``make test`` provides
both). Run outside it they are skipped with that reason, unless
``PERCEPTION_REQUIRE_ROS=1`` (set by ``make test``), where a missing piece is
a failure, never a silent skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent / "helpers"))

# compiled frame-path packages (perception_common.compiled) go to a folder of this run: a package a developer built
# in ~/.cache must not change which path the tests' nodes take
_COMPILED_CACHE = tempfile.TemporaryDirectory(prefix="perception-compiled-")
os.environ["PERCEPTION_COMPILED_CACHE"] = _COMPILED_CACHE.name
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "42")
if os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] != "LOCALHOST":
    raise pytest.UsageError("tests must run with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST")
try:  # the test process publishes images too: the same Fast DDS profile as the nodes (perception_nodes.dds)
    from perception_nodes.dds import configure_fastdds

    configure_fastdds()
except ImportError:  # workspace not installed: the ROS tests skip or fail with that reason
    pass


def _ros_missing() -> str | None:
    try:
        import perception_msgs.msg  # noqa: F401
        import rclpy  # noqa: F401
    except ImportError as exc:
        return f"ROS workspace not available ({exc}); run the tests through `make test`"
    return None


@pytest.fixture(scope="session")
def ros_available():
    reason = _ros_missing()
    if reason:
        if os.environ.get("PERCEPTION_REQUIRE_ROS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def ros_node(ros_available, request):
    """An rclpy node in the test process, with its own context; destroyed after the test."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    name = "test_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    node.executor_for_test = executor
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def load_script(name: str):
    """Import ``scripts/<name>.py`` (not a package) as a module, for tests of its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def spin_until(node, predicate, timeout: float = 20.0, period: float = 0.05) -> bool:
    """Spin ``node`` until ``predicate()`` is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.executor_for_test.spin_once(timeout_sec=period)
        if predicate():
            return True
    return predicate()


class Processes:
    """Start workspace executables as separate processes; stop them at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, args: list[str], name: str | None = None, env: dict | None = None) -> subprocess.Popen:
        name = name or Path(args[0]).name
        log = self.tmp_path / f"{name}.{len(self.procs)}.log"
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        proc = subprocess.Popen(
            args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=full_env, cwd=REPO, start_new_session=True
        )
        self.procs.append((name, proc, log))
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        for _, p, log in self.procs:
            if p is proc:
                return log.read_text(errors="replace")
        raise KeyError(proc)

    def stop_all(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes(tmp_path, request):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
    if request.node.rep_call_failed if hasattr(request.node, "rep_call_failed") else False:
        for name, _, log in procs.procs:
            print(f"----- log of {name} -----\n{log.read_text(errors='replace')[-4000:]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call_failed = rep.failed


# launch_testing files run under `python -m launch_testing.launch_test` (see test_launcher.py), not pytest.
collect_ignore = ["perception_bringup/launch"]


@pytest.fixture
def one_torch_thread():
    """One torch thread (training tests): OpenMP spin-waits make 2 threads on a busy 2-core machine 100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
