"""rclpy plumbing shared by the ROS 2 link and the simulated ros2_control robot.

Importing this without rclpy raises an ImportError that says to install the ``ros2`` extra.
"""

from __future__ import annotations

import logging
import threading

try:
    import rclpy
    from builtin_interfaces.msg import Time as TimeMsg
    from rclpy.context import Context
    from rclpy.executors import (
        ExternalShutdownException,
        ShutdownException,
        SingleThreadedExecutor,
    )
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
except ImportError as e:
    raise ImportError(
        f"Karakuri's ROS 2 support needs rclpy and the ROS 2 message packages ({e.name!r} is "
        "missing); install the ros2 extra: pip install 'karakuri[ros2]'"
    ) from e

log = logging.getLogger(__name__)


def make_qos(depth: int, reliability: str) -> QoSProfile:
    """Keep-last, volatile QoS with ``reliability`` ``best_effort`` or ``reliable``."""
    rel = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" \
        else ReliabilityPolicy.RELIABLE
    return QoSProfile(depth=int(depth), history=HistoryPolicy.KEEP_LAST, reliability=rel)


def stamp_ns(stamp: TimeMsg) -> int:
    """A ``builtin_interfaces/Time`` as integer nanoseconds since the epoch."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def time_msg(ns: int) -> TimeMsg:
    """Integer nanoseconds since the epoch as a ``builtin_interfaces/Time``."""
    return TimeMsg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class NodeThread:
    """A private ROS 2 context with one node, spun by a single-threaded executor in a thread.

    A private context means two of these (a link and a simulated robot, say) live in one
    process without sharing anything but DDS, and closing one leaves the other running.

    Args:
        name: Node name.
        namespace: Node namespace ("" = root).
        domain_id: ROS domain id; None = from ``ROS_DOMAIN_ID``.
    """

    def __init__(self, name: str, namespace: str = "", domain_id: int | None = None) -> None:
        self.context = Context()
        self.context.init(args=[], domain_id=domain_id)
        self.domain_id = self.context.get_domain_id()
        self.node = rclpy.create_node(name, namespace=namespace or None, context=self.context,
                                      start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.callback_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"ros2:{name}", daemon=True)

    def start(self) -> None:
        """Start spinning in the background thread."""
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except (ExternalShutdownException, ShutdownException):
                return
            except Exception:  # a callback failed: log it, keep the node alive
                self.callback_errors += 1
                log.exception("ROS 2 callback of %s failed", self.node.get_name())

    def close(self, timeout_s: float = 2.0) -> bool:
        """Stop the thread, destroy the node, shut the context down; True if the thread ended."""
        self._stop.set()
        self.executor.shutdown(timeout_sec=timeout_s)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        stopped = not self._thread.is_alive()
        self.node.destroy_node()
        self.context.try_shutdown()
        return stopped
