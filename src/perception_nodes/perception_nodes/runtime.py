"""What every node of the workspace shares: ``--help``, typed parameters, QoS profiles, start-up and clean shutdown."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from perception_common.params import ParameterError, check_range, coerce, help_text
from perception_common.signals import hold_at_test_gate
from perception_nodes.allocator import keep_large_buffers
from perception_nodes.dds import configure_fastdds

T = TypeVar("T")
QOS_RELIABILITY = ("best_effort", "reliable")


def sensor_qos(depth: int = 5, reliability: str = "best_effort"):
    """Sensor-data QoS (volatile, keep last ``depth``) with the reliability as a parameter.

    The default matches ``rclpy.qos.qos_profile_sensor_data`` (best effort): a
    best-effort subscriber receives from both reliable and best-effort
    publishers, whereas a reliable subscriber gets nothing from a best-effort
    camera (the most common QoS mismatch).
    """
    from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

    if reliability not in QOS_RELIABILITY:
        raise ValueError(f"qos reliability must be one of {QOS_RELIABILITY}, got {reliability!r}")
    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST,
        depth=max(1, int(depth)),
        reliability=QoSReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else QoSReliabilityPolicy.RELIABLE,
        durability=QoSDurabilityPolicy.VOLATILE,
    )


IMAGE_QOS_HELP = ("auto (default: best_effort in live mode, receiving from reliable and best-effort cameras alike; "
                  "reliable in replay mode, every frame), best_effort or reliable (see README, QoS)")


def image_qos(mode: str, depth: int, reliability: str = "auto"):
    """A model node's image subscription and the reliability it resolved to.

    ``auto``: best effort in live mode (a best-effort subscription matches reliable and best-effort publishers, and
    only the newest frame counts) and reliable in replay mode (every frame of a bag is processed).
    """
    if reliability == "auto":
        reliability = "best_effort" if mode == "live" else "reliable"
    return sensor_qos(depth, reliability), reliability


def reliable_qos(depth: int = 10):
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy

    return QoSProfile(depth=depth, reliability=QoSReliabilityPolicy.RELIABLE)


def wait_for_subscribers(node, publisher, count: int, stop, timeout: float = 60.0) -> None:
    """Block (in a worker thread) until ``publisher`` has ``count`` matched subscribers, ``stop`` is set,
    or ``timeout`` seconds pass (then warn and go on)."""
    if count <= 0:
        return
    node.get_logger().info(f"waiting for {count} subscriber(s) on {publisher.topic_name}")
    deadline = time.monotonic() + timeout
    while publisher.get_subscription_count() < count and not stop.is_set():
        if time.monotonic() > deadline:
            node.get_logger().warning(f"only {publisher.get_subscription_count()} subscriber(s) after {timeout:.0f} s")
            return
        time.sleep(0.05)


def parse_help(argv: Sequence[str], prog: str, description: str, params_cls: type, topics: str) -> None:
    """Answer ``-h/--help`` (before any ROS start-up) with the node's parameters and topics."""
    user_args = list(argv)
    if "--ros-args" in user_args:
        user_args = user_args[: user_args.index("--ros-args")]
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=help_text(params_cls) + "\n\n" + topics + "\n\nexample:\n  " + f"{prog} --ros-args -p name:=value",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_known_args(user_args)


# Test hooks: when set to a file path, the node holds at that point (start-up: signal handlers installed, node not
# built yet; clean-up: stopping, nothing released yet) until the file exists (at most 30 s), so a test can deliver
# signals inside that window deterministically instead of by timing. Unset in normal use.
STARTUP_GATE_ENV = "PERCEPTION_TEST_STARTUP_GATE"
CLEANUP_GATE_ENV = "PERCEPTION_TEST_CLEANUP_GATE"
EXIT_GATE_ENV = "PERCEPTION_TEST_EXIT_GATE"  # closed, signals ignored from here on


def run(node_factory: Callable[[], object], argv: Sequence[str] | None = None) -> None:
    """Init rclpy, spin the node until Ctrl-C/SIGTERM or shutdown, then close it cleanly.

    The executor is single-threaded on purpose: callbacks only hand messages to the node's own worker threads,
    and rclpy's MultiThreadedExecutor, competing for the GIL with a worker running a model, took frames so late
    that the reader's keep-last-1 history overwrote them (``make bench``, 2 cores, 640x480 at 30 fps: the tracker
    node received 67-205 of 300 frames, the AVS node 29-33, latency p99 0.9-3 s; single-threaded, 3 runs: 299-300
    and 294-300 of 300, p99 37-64 and 41-69 ms).

    rclpy's own signal handler is not installed: it would shut the context down
    before the node could log its summary and release its devices. The FIRST SIGINT or
    SIGTERM raises KeyboardInterrupt in the spinning thread; every later one is absorbed, so the
    clean-up always runs to its end and the node exits 0: under ``ros2 launch`` a terminal Ctrl-C
    reaches each node twice (the terminal's process-group signal, then launch's forwarded one). Once
    closed, SIGINT and SIGTERM are ignored until the process has ended.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stopping = threading.Event()
    deferred = {"now": False, "pending": False}  # a signal while the executor is built waits for its end

    def _interrupt(signum, frame):
        if stopping.is_set():
            return  # already stopping: a second signal must not cut the clean-up short
        stopping.set()
        if deferred["now"]:
            deferred["pending"] = True
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored (background jobs)
    allocator = keep_large_buffers()  # frames taken without page faults (see perception_nodes.allocator)
    dds_level, dds_message = configure_fastdds()  # before the participant exists
    node = None
    try:
        rclpy.init(args=list(argv) if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
        try:
            hold_at_test_gate(STARTUP_GATE_ENV, "start-up")
            node = node_factory()
        except (ParameterError, ValueError, RuntimeError, OSError) as exc:
            # Configuration problems (bad parameter, missing model or device): one clear line, exit code 2.
            name = Path(sys.argv[0]).name
            print(f"[FATAL] [{name}]: cannot start: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        # rclpy's executor interrupted inside its constructor printed a traceback from its __del__ (a signal right
        # after start-up, seen under the signal tests): it is built whole, then the signal is raised
        deferred["now"] = True
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        deferred["now"] = False
        if deferred["pending"]:
            raise KeyboardInterrupt
        getattr(node.get_logger(), dds_level)(dds_message)  # the node is built and about to spin
        node.get_logger().debug(f"allocator thresholds for frame buffers: {allocator}")
        while rclpy.ok():  # short waits, so that Python's signal handlers run between them
            ex.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stopping.set()  # from here on every signal is absorbed
        hold_at_test_gate(CLEANUP_GATE_ENV, "clean-up")
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
        # Closed: a signal from here to the process's end is ignored. While the interpreter finalizes (the DDS
        # participant's teardown included) Python puts SIG_DFL back for the handlers it set, and a second SIGINT
        # arriving then (launch's forwarded one, late under load) ended a node that had closed cleanly with -2.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        hold_at_test_gate(EXIT_GATE_ENV, "exit")


def declare_and_read(node, params_cls: type[T]) -> T:
    """Declare every field of ``params_cls`` on ``node`` and return the values in force.

    Values are type-checked against the dataclass defaults (see :func:`perception_common.params.coerce`);
    a wrong type raises :class:`ParameterError` naming the parameter.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for f in dataclasses.fields(params_cls):
        descriptor = ParameterDescriptor(
            description=f.metadata.get("description", ""),
            read_only=f.metadata.get("read_only", False),
            dynamic_typing=True,
        )
        value = node.declare_parameter(f.name, f.default, descriptor).value
        values[f.name] = coerce(f.name, value, f.default, int_as_text=f.metadata.get("int_as_text", False))
        check_range(f.name, values[f.name], f.metadata)
    return params_cls(**values)
