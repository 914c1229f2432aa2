"""The ROS 2 link's command side over real DDS: forward and trajectory controllers, holds."""

from __future__ import annotations

import numpy as np
import pytest

from karakuri.robot.link import CommandMode, StatusBits

pytestmark = [pytest.mark.ros2, pytest.mark.filterwarnings("ignore::DeprecationWarning:lark")]


def _offset_pose(spec, **deltas: float) -> np.ndarray:
    q = np.array(spec.default_pose)
    for joint, d in deltas.items():
        q[spec.index(joint)] += d
    return q


def test_forward_command_moves_the_plant(make_sim, make_link, wait_until):
    sim = make_sim()
    link = make_link(sim.spec)
    q = _offset_pose(sim.spec, shoulder_lift=0.3, wrist_1=-0.2, finger_left=-0.02)

    def tracking() -> bool:
        link.send_command(q)
        return np.allclose(sim.measured_q(), q, atol=5e-3)

    wait_until(tracking, 5.0, "the plant to reach the commanded pose")
    assert sim.stats["commands_applied"] >= 1 and sim.stats["rejected_size"] == 0
    c = link.counters()
    assert c.frames_tx >= 1 and c.frames_rx > 0
    rt = link.round_trip()
    assert rt["n"] >= 1 and 0 < rt["p50_ms"] <= rt["p99_ms"] < 1000
    assert c.extra["rt_p50_us"] > 0


def test_wrong_length_command_is_rejected_like_ros2_control(make_sim, ros_ns, domain_id,
                                                            wait_until):
    from std_msgs.msg import Float64MultiArray

    from karakuri.firmware_bridge.ros2_node import NodeThread, make_qos

    sim = make_sim()
    before = sim.target_q()
    other = NodeThread("raw_publisher", ros_ns, domain_id)
    try:
        pub = other.node.create_publisher(Float64MultiArray, "forward_position_controller/commands",
                                          make_qos(10, "reliable"))
        other.start()
        wait_until(lambda: pub.get_subscription_count() > 0, 5.0, "the sim's subscription")

        def rejected() -> bool:
            pub.publish(Float64MultiArray(data=[0.1, 0.2, 0.3]))
            return sim.stats["rejected_size"] > 0

        wait_until(rejected, 5.0, "the size rejection")
    finally:
        other.close()
    np.testing.assert_array_equal(sim.target_q(), before)
    assert sim.stats["commands_applied"] == 0


def test_joint_trajectory_controller_path(make_sim, make_link, wait_until):
    sim = make_sim(controller_type="joint_trajectory_controller", scramble_seed=5)
    link = make_link(sim.spec, controller_type="joint_trajectory_controller",
                     control_period_s=0.02)
    assert link.config.command_topic == "joint_trajectory_controller/joint_trajectory"
    q = _offset_pose(sim.spec, shoulder_pan=-0.3, elbow=0.2)

    def tracking() -> bool:
        link.send_command(q)
        return np.allclose(sim.measured_q(), q, atol=5e-3)

    wait_until(tracking, 5.0, "the plant to follow the trajectory points")
    assert sim.stats["rejected_trajectory"] == 0


def test_trajectory_point_is_reached_after_one_period(make_sim, make_link, wait_until):
    # One command, 0.5 s long: halfway through, the reference is about halfway there.
    sim = make_sim(controller_type="joint_trajectory_controller")
    link = make_link(sim.spec, controller_type="joint_trajectory_controller",
                     control_period_s=0.5)
    start = sim.target_q()
    q = _offset_pose(sim.spec, shoulder_pan=0.5)
    link.send_command(q)
    wait_until(lambda: sim.stats["commands_applied"] == 1, 2.0, "the trajectory")
    wait_until(lambda: sim.target_q()[0] > start[0] + 0.1, 1.0, "motion along the segment")
    assert sim.target_q()[0] < q[0] - 0.05  # not jumped to the end
    wait_until(lambda: np.allclose(sim.target_q(), q), 2.0, "the end of the segment")


def test_estop_holds_until_rearm_and_a_new_command(make_sim, make_link, wait_until):
    sim = make_sim()
    link = make_link(sim.spec)
    held = link.latest_state().position.copy()
    link.estop()
    wait_until(lambda: link.latest_state().status & StatusBits.ESTOP, 2.0, "the ESTOP bit")
    away = _offset_pose(sim.spec, shoulder_pan=0.5)
    for _ in range(5):
        link.send_command(away)  # ignored while latched: the hold target goes out instead
    wait_until(lambda: sim.stats["commands_applied"] >= 6, 2.0, "the hold commands")
    np.testing.assert_allclose(sim.target_q(), held)
    link.rearm()
    link.send_command(away, CommandMode.HOLD)
    np.testing.assert_allclose(sim.target_q(), held)
    link.send_command(away)
    wait_until(lambda: np.allclose(sim.target_q(), away), 2.0, "motion after re-arm")


def test_non_finite_command_is_never_published(make_sim, make_link, wait_until):
    sim = make_sim()
    link = make_link(sim.spec)
    q = np.array(sim.spec.default_pose)
    q[2] = np.nan
    link.send_command(q)
    assert link.counters().extra["cmd_nonfinite"] == 1
    assert any("non-finite command" in f for f in link.faults())
    wait_until(lambda: sim.stats["commands_applied"] == 1, 2.0, "the hold command")
    assert sim.stats["rejected_nonfinite"] == 0
    assert np.all(np.isfinite(sim.target_q()))
    with pytest.raises(ValueError, match="shape"):
        link.send_command(np.zeros(3))


def test_sim_holds_after_command_timeout(make_sim, make_link, wait_until):
    sim = make_sim(hold_on_timeout_s=0.1)
    link = make_link(sim.spec)
    link.send_command(_offset_pose(sim.spec, shoulder_pan=1.0))
    wait_until(lambda: sim.stats["holds"] == 1, 2.0, "the hold on timeout")
    assert sim.target_q()[0] < sim.spec.default_pose[0] + 1.0 - 0.05  # held short of the target
