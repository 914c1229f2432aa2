"""The care stage's person position from a ROS 2 topic, over loopback DDS.

A publisher (its own node and context, as a tracker would be) sends
``geometry_msgs/PointStamped`` in the robot's base frame at 50 Hz; the care stage in a real
:class:`SafetyFilter` drives the care arm's target toward a goal on the wall clock.  The person
walks in from far away: the commanded tool speed is first left alone, then scaled, then held
below the minimum separation; a publisher that stops makes the position stale: hold.  A
position in another frame is dropped and held on.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from geometry_msgs.msg import PointStamped

from karakuri.firmware_bridge.ros2_node import NodeThread, make_qos, time_msg
from karakuri.firmware_bridge.ros2_person import Ros2Person
from karakuri.launch.care import PersonSection
from karakuri.robot.care_safety import CareConfig, CareSafety
from karakuri.robot.registry import load_robot
from karakuri.robot.safety import SafetyFilter, SafetyLimits
from karakuri.robot.ssm import SeparationParams

SPEC = load_robot("care_arm")
DT = 1.0 / SPEC.control_rate_hz
PARAMS = SeparationParams(human_speed=0.15, perception_latency_s=0.02, stopping_time_s=0.1,
                          person_uncertainty_m=0.02, robot_uncertainty_m=0.005, max_age_s=0.1)


class Tracker:
    """Publishes the person's position at 50 Hz from a thread; ``where`` (3,) m may change."""

    def __init__(self, topic: str, domain_id: int, frame_id: str = "world") -> None:
        self.where, self.frame_id = np.array([5.0, 5.0, 5.0]), frame_id
        self.node = NodeThread("tracker", "", domain_id)
        self.pub = self.node.node.create_publisher(PointStamped, topic,
                                                   make_qos(1, "best_effort"))
        self.node.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = PointStamped()
            msg.header.frame_id = self.frame_id
            msg.header.stamp = time_msg(time.time_ns())
            msg.point.x, msg.point.y, msg.point.z = (float(v) for v in self.where)
            self.pub.publish(msg)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def close(self) -> None:
        self.stop()
        self.node.close()


def care_filter(person: Ros2Person) -> tuple[SafetyFilter, CareSafety]:
    limits = SafetyLimits.from_spec(SPEC)
    f = SafetyFilter(limits, DT, soft_start_s=0.0)
    care = CareSafety(SPEC.kinematics, DT, CareConfig(PARAMS, None), limits.lower,
                      limits.upper, person=person)
    f.add_stage(care)
    f.reset(SPEC.default_pose)
    return f, care


def tick(f: SafetyFilter, care: CareSafety, goal: np.ndarray,
         n: int) -> list[tuple[float, float, float]]:
    """``n`` real-time ticks toward ``goal``: (tool speed m/s, allowed m/s, separation m)."""
    out = []
    for _ in range(n):
        before = SPEC.kinematics(f.hold_target())
        target = f.filter(goal)
        speed = float(np.linalg.norm(SPEC.kinematics(target) - before)) / DT
        out.append((speed, care.allowed_mps, care.separation_m))
        time.sleep(DT)
    return out


@pytest.fixture
def person(ros_ns: str, domain_id: int, wait_until):
    topic = f"{ros_ns}/person/position"
    src = Ros2Person(topic, "world", domain_id)
    tracker = Tracker(topic, domain_id)
    wait_until(lambda: src.read() is not None, 10.0, "the first person position")
    yield src, tracker
    tracker.close()
    src.close()


def test_person_walking_in_slows_then_holds_and_a_silent_tracker_holds(person) -> None:
    src, tracker = person
    f, care = care_filter(src)
    tool = SPEC.kinematics(SPEC.default_pose)
    goal = SPEC.default_pose.copy()
    goal[:6] += 0.6  # far from home: many ticks at the joints' full speed
    far = tick(f, care, goal, 10)  # person 7+ m away: the joints' own limits rule
    assert all(a >= PARAMS.speed_margin * 1.0 for _, a, _ in far)
    assert f.interventions["ssm_scale"] == f.interventions["ssm_hold"] == 0
    tracker.where = tool + np.array([0.25, 0.0, 0.0])  # within the reduced zone
    time.sleep(0.1)
    near = tick(f, care, goal, 10)
    assert all(s <= a + 1e-9 for s, a, _ in near)
    assert all(a <= PARAMS.reduced_speed for _, a, sep in near[3:] if sep < 0.3)
    assert f.interventions["ssm_scale"] > 0
    tracker.where = SPEC.kinematics(f.hold_target())  # the person at the tool: hold
    time.sleep(0.1)
    held = f.hold_target()
    tick(f, care, goal, 5)
    np.testing.assert_array_equal(f.hold_target(), held)
    assert f.interventions["ssm_hold"] > 0 and f.interventions["person_stale"] == 0
    tracker.where = np.array([5.0, 5.0, 5.0])  # gone again, then the tracker goes silent
    time.sleep(0.1)
    tick(f, care, goal, 3)
    assert care.allowed_mps > PARAMS.reduced_speed
    tracker.stop()
    time.sleep(PARAMS.max_age_s + 0.05)
    held = f.hold_target()
    tick(f, care, goal, 5)
    np.testing.assert_array_equal(f.hold_target(), held)
    assert f.interventions["person_stale"] >= 5 and care.separation_m == 0.0


def test_position_in_another_frame_is_dropped_and_holds(ros_ns: str, domain_id: int,
                                                        wait_until) -> None:
    topic = f"{ros_ns}/person/position"
    lines: list[str] = []
    src = Ros2Person(topic, "world", domain_id, log=lines.append)
    tracker = Tracker(topic, domain_id, frame_id="camera_link")
    try:
        wait_until(lambda: src.wrong_frame > 2, 10.0, "positions in the camera frame")
        assert src.read() is None and src.received == 0
        assert len(lines) == 1 and "'camera_link', not the robot's 'world'" in lines[0]
        f, care = care_filter(src)
        held = f.hold_target()
        f.filter(SPEC.default_pose + 0.3)
        np.testing.assert_array_equal(f.hold_target(), held)
        assert f.interventions["person_stale"] == 1
    finally:
        tracker.close()
        src.close()


def test_subscription_is_best_effort_keep_last(ros_ns: str, domain_id: int) -> None:
    from rclpy.qos import HistoryPolicy, ReliabilityPolicy

    src = Ros2Person(f"{ros_ns}/p", "world", domain_id)
    try:
        qos = src._sub.qos_profile
        assert qos.reliability == ReliabilityPolicy.BEST_EFFORT
        assert qos.history == HistoryPolicy.KEEP_LAST and qos.depth == 1
    finally:
        src.close()


def test_stamps_give_the_age_and_future_stamps_are_stale(ros_ns: str, domain_id: int) -> None:
    wall = [1000.0]
    src = Ros2Person(f"{ros_ns}/p", "world", domain_id, clock=lambda: 50.0,
                     wall=lambda: wall[0])
    try:
        msg = PointStamped()
        msg.header.frame_id = "world"
        msg.header.stamp = time_msg(int(999.7 * 1e9))
        src._on_point(msg)
        p, t = src.read()
        assert t == pytest.approx(50.0 - 0.3)
        wall[0] = 999.0  # the stamp is 0.7 s in the future: not trusted
        assert src.read()[1] == float("-inf")
    finally:
        src.close()


def test_ros2_person_section_needs_a_topic() -> None:
    with pytest.raises(ValueError, match="source ros2 needs a topic"):
        PersonSection(source="ros2", topic="")
    with pytest.raises(ValueError, match="max_age_s: 0.0"):
        PersonSection(source="ros2", max_age_s=0.0)


def test_launch_care_section_attaches_a_ros2_person(ros_ns: str, domain_id: int) -> None:
    from types import SimpleNamespace

    from karakuri.launch.care import CareSection, attach_care

    section = CareSection(person=PersonSection(source="ros2", topic=f"{ros_ns}/person",
                                               domain_id=domain_id, max_age_s=0.2))
    cfg = SimpleNamespace(care=section, task="handover", source="care.yaml")
    limits = SafetyLimits.from_spec(SPEC)
    safety = SafetyFilter(limits, DT, soft_start_s=0.0)
    lines: list[str] = []
    stage = attach_care(cfg, SPEC, SPEC.control_rate_hz, safety, SimpleNamespace(metadata=None),
                        SimpleNamespace(latest_state=lambda: None), None, None, lines.append)
    try:
        assert isinstance(stage.person, Ros2Person)
        assert stage.config.separation.max_age_s == 0.2
        assert any(f"person from ROS 2 {ros_ns}/person" in line for line in lines), lines
    finally:
        stage.person.close()
