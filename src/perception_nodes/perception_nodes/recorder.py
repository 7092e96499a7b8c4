"""A node for tools that feed a running graph and record what it publishes: ``replay-eval``, ``perception-bench``
and ``perception-demo`` all build on :class:`RecorderNode`.

It is an rclpy node in its own context, spinning in a background thread, so the tool's main thread can publish
and wait while callbacks keep arriving; the callbacks it registers with :meth:`RecorderNode.subscribe` run under
:attr:`RecorderNode.lock` and notify it, so :meth:`RecorderNode.wait_for` wakes when something arrives. It loads
the workspace's Fast DDS profile first (the tools publish camera-sized images too) and, like the nodes, keeps glibc
from mapping every camera-sized message afresh (:mod:`perception_nodes.allocator`).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from perception_nodes.allocator import keep_large_buffers
from perception_nodes.dds import configure_fastdds


class RecorderNode:
    """An rclpy node spinning in a background thread (see the module docstring).

    Attributes:
        node: the rclpy node (for publishers, clients and graph queries).
        lock: a condition; subscription callbacks run under it and notify it.
        dds: ``(level, message)`` of :func:`perception_nodes.dds.configure_fastdds` for the caller's log.
        allocator: what :func:`perception_nodes.allocator.keep_large_buffers` did, for the caller's log.
    """

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.dds = configure_fastdds()
        self.allocator = keep_large_buffers()  # frames and masks taken without page faults
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.lock = threading.Condition()
        self._subs: list[Any] = []
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._closing = threading.Event()
        self._spin = threading.Thread(target=self._spin_loop, name=f"{name}_spin", daemon=True)
        self._spin.start()

    @staticmethod
    def qos(depth: int, reliable: bool = True):
        """Keep-last ``depth``, volatile, reliable (or best effort)."""
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy

        return QoSProfile(
            depth=depth,
            reliability=QoSReliabilityPolicy.RELIABLE if reliable else QoSReliabilityPolicy.BEST_EFFORT,
        )

    def publisher(self, msg_type: Any, topic: str, depth: int, *, reliable: bool = True):
        return self.node.create_publisher(msg_type, topic, self.qos(depth, reliable))

    def subscribe(
        self, msg_type: Any, topic: str, callback: Callable[[Any], None], qos: Any, *, locked: bool = True
    ) -> Any:
        """Subscribe; with ``locked`` the callback runs under :attr:`lock` and notifies it. ``qos`` is a depth or a
        profile."""
        if isinstance(qos, int):
            qos = self.qos(qos)

        def on_message(msg: Any) -> None:
            if not locked:
                callback(msg)
                return
            with self.lock:
                callback(msg)
                self.lock.notify_all()

        sub = self.node.create_subscription(msg_type, topic, on_message, qos)
        self._subs.append(sub)
        return sub

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (checked under the lock after every recorded message) or ``timeout``."""
        with self.lock:
            return self.lock.wait_for(predicate, timeout)

    def poll_until(self, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
        """Check ``predicate()`` every ``interval`` seconds until it holds or ``timeout`` passes (for conditions
        that are not messages, such as a subscription being matched)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

    def count_publishers(self, topic: str) -> int:
        return self.node.count_publishers(topic)

    def _spin_loop(self) -> None:
        while self.context.ok() and not self._closing.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self._closing.is_set() or not self.context.ok():
                    return  # the context is shutting down under the spin
                # a callback failed on one message: say so and keep recording the others
                print(f"{self.node.get_name()}: a subscription callback failed:", file=sys.stderr, flush=True)
                traceback.print_exc()

    def close(self) -> None:
        self._closing.set()
        self._spin.join(timeout=2.0)
        with contextlib.suppress(Exception):
            self.executor.shutdown()
            self.node.destroy_node()
        with contextlib.suppress(Exception):
            self._rclpy.try_shutdown(context=self.context)
