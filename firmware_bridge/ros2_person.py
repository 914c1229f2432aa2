"""The person's position from a ROS 2 topic, for the care stage's speed and separation.

Subscribes to a ``geometry_msgs/PointStamped`` topic (a person tracker's output) with
best-effort, keep-last-1 QoS: only the newest position matters, and a lost sample must never
delay the next.  A message is used only if its ``header.frame_id`` is the robot's base frame
(the frame the kinematic chain works in: the MJCF's world, ``frame_id`` in the launch file);
one in another frame is dropped and counted (``wrong_frame``), and the first is logged, so a
misconfigured tracker holds the robot instead of steering it.  The header stamp is the
measurement time on the ROS clock (system time); :meth:`Ros2Person.read` turns it into the
age the care stage checks against ``max_age_s``: a tracker that stops publishing, or whose
stamps are old or from the future, reads as stale, and the robot holds.

Importing this without rclpy raises an ImportError naming the ``ros2`` extra.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from karakuri.firmware_bridge.ros2_node import NodeThread, make_qos, stamp_ns

try:
    from geometry_msgs.msg import PointStamped
except ImportError as e:
    raise ImportError(f"the ROS 2 person source needs geometry_msgs ({e.name!r} is missing); "
                      "install the ros2 extra: pip install 'karakuri[ros2]'") from e

#: A stamp this far ahead of the local clock is not trusted (clock skew), s.
FUTURE_TOLERANCE_S = 0.01


class Ros2Person:
    """A :class:`~karakuri.robot.care_safety.PersonSource` fed by a PointStamped topic.

    Args:
        topic: Topic name, e.g. ``/person/position`` (relative names use ``namespace``).
        frame_id: The robot's base frame; messages in another frame are dropped.
        domain_id: ROS domain id; None: ``ROS_DOMAIN_ID``.
        namespace: Node namespace.
        log: Where the first wrong-frame message is reported.
        clock: Monotonic clock, s (what the care stage compares ages on).
        wall: The ROS clock, s since the epoch (``time.time``: stamps are system time).
    """

    def __init__(self, topic: str, frame_id: str = "world", domain_id: int | None = None,
                 namespace: str = "", log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.topic, self.frame_id, self.log = topic, frame_id, log
        self.clock, self.wall = clock, wall
        self.received = self.wrong_frame = 0
        self._lock = threading.Lock()
        self._latest: tuple[np.ndarray, float] | None = None
        self._closed = False
        self._node = NodeThread("karakuri_person", namespace, domain_id)
        self._sub = self._node.node.create_subscription(PointStamped, topic, self._on_point,
                                                        make_qos(1, "best_effort"))
        self._node.start()

    def _on_point(self, msg: PointStamped) -> None:
        if msg.header.frame_id != self.frame_id:
            self.wrong_frame += 1
            if self.wrong_frame == 1 and self.log is not None:
                self.log(f"care.person: {self.topic}: a position in frame "
                         f"{msg.header.frame_id!r}, not the robot's {self.frame_id!r}: dropped "
                         f"(the robot holds until positions come in {self.frame_id!r})")
            return
        p = np.array([msg.point.x, msg.point.y, msg.point.z], np.float64)
        with self._lock:
            self._latest = (p, stamp_ns(msg.header.stamp) * 1e-9)
            self.received += 1

    def read(self) -> tuple[np.ndarray, float] | None:
        """The newest position (3,), m, base frame, and its measurement time on ``clock``, s.

        None before the first message.  A stamp from the future beyond
        :data:`FUTURE_TOLERANCE_S` is dated ``-inf`` (stale: the robot holds).
        """
        with self._lock:
            latest = self._latest
        if latest is None:
            return None
        p, stamp = latest
        age = self.wall() - stamp
        if age < -FUTURE_TOLERANCE_S:
            return p.copy(), float("-inf")
        return p.copy(), self.clock() - max(age, 0.0)

    def close(self) -> None:
        """Stop the subscriber's node (again: nothing)."""
        if not self._closed:
            self._closed = True
            self._node.close()
