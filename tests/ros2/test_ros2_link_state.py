"""The ROS 2 link's state side over real DDS: names, missing joints, bad values, staleness."""

from __future__ import annotations

import numpy as np
import pytest

from karakuri.firmware_bridge.ros2_sim import SimFaults
from karakuri.robot.link import LinkError

pytestmark = [pytest.mark.ros2, pytest.mark.filterwarnings("ignore::DeprecationWarning:lark")]


def test_scrambled_joint_order_maps_by_name(make_sim, make_link, wait_until):
    sim = make_sim(scramble_seed=3)
    assert sim.publish_order != sim.spec.joint_names  # the wire order really is scrambled
    link = make_link(sim.spec)
    # Move two joints far apart from each other so a mix-up cannot go unseen.
    q = np.array(sim.spec.default_pose)
    q[sim.spec.index("shoulder_pan")] += 0.4
    q[sim.spec.index("wrist_3")] -= 0.4

    def reached() -> bool:
        link.send_command(q)
        return np.allclose(link.latest_state().position, q, atol=0.01)

    wait_until(reached, 5.0, "the commanded pose in the link's state")
    np.testing.assert_allclose(sim.measured_q(), q, atol=0.01)
    np.testing.assert_allclose(link.latest_state().position, sim.measured_q(), atol=0.01)


def test_controller_joint_order_differs_from_spec(make_sim, make_link, wait_until):
    spec_order = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3",
                  "finger_left")
    controller_order = tuple(reversed(spec_order))
    sim = make_sim(command_joints=controller_order)
    link = make_link(sim.spec, command_joints=controller_order)
    q = np.array(sim.spec.default_pose)
    q[sim.spec.index("elbow")] += 0.3
    link.send_command(q)
    wait_until(lambda: np.allclose(sim.target_q(), q), 3.0, "the sim's target")


def test_missing_joint_names_it_and_lists_what_came(make_sim, make_link, wait_until):
    sim = make_sim(faults=SimFaults(omit_joints=("wrist_2",)))
    with pytest.raises(LinkError) as err:
        make_link(sim.spec)
    msg = str(err.value)
    assert "'wrist_2'" in msg and "missing" in msg
    assert "shoulder_pan" in msg  # lists what the messages carried


def test_prefix_mismatch_is_a_clear_error(make_sim, make_link, wait_until):
    sim = make_sim(joint_prefix="ur_")
    with pytest.raises(LinkError, match="joint_prefix"):
        make_link(sim.spec)
    assert make_link(sim.spec, joint_prefix="ur_").latest_state() is not None


def test_non_finite_state_is_rejected_and_counted(make_sim, make_link, wait_until):
    faults = SimFaults()
    sim = make_sim(faults=faults)
    link = make_link(sim.spec, stale_after_s=0.1)
    faults.nan_joint = "elbow"
    wait_until(lambda: link.counters().extra.get("rejected_nonfinite", 0) >= 5, 3.0,
               "rejected non-finite states")
    state = link.latest_state()
    assert np.all(np.isfinite(state.position)) and np.all(np.isfinite(state.velocity))
    # Nothing new gets through, so the stream goes stale: the loop's staleness check stops.
    wait_until(lambda: link.is_stale, 2.0, "staleness while every state is rejected")
    assert any("non-finite" in f and "elbow" in f for f in link.faults())
    faults.nan_joint = ""
    wait_until(lambda: not link.is_stale, 2.0, "fresh states after the fault clears")


def test_non_finite_from_the_start_fails_connect(make_sim, make_link, wait_until):
    sim = make_sim(faults=SimFaults(nan_joint="wrist_1"))
    with pytest.raises(LinkError, match=r"rejected.*non-finite.*wrist_1"):
        make_link(sim.spec)


def test_stalled_stream_is_detected(make_sim, make_link, wait_until):
    faults = SimFaults()
    sim = make_sim(faults=faults)
    link = make_link(sim.spec, stale_after_s=0.1)
    wait_until(lambda: not link.is_stale, 2.0, "a fresh stream")
    faults.pause = True
    wait_until(lambda: link.counters().timeouts >= 1, 2.0, "the stale watchdog")
    assert link.is_stale and link.state_age_s() > 0.1
    assert link.counters().extra["stale"] == 1
    assert any("stale" in f for f in link.faults())
    faults.pause = False
    wait_until(lambda: not link.is_stale, 2.0, "recovery")


def test_staleness_comes_from_header_stamps(make_sim, make_link, wait_until):
    # Messages keep arriving, but each was sampled 0.5 s ago: the state is stale.
    faults = SimFaults()
    sim = make_sim(faults=faults)
    link = make_link(sim.spec, stale_after_s=0.1)
    faults.stamp_offset_s = -0.5
    wait_until(lambda: link.counters().extra.get("late_msgs", 0) >= 3, 2.0, "late messages")
    assert link.is_stale and 0.45 < link.state_age_s() < 5.0
    # The same stream judged by receive time looks fresh (what use_header_stamp=false does).
    other = make_link(sim.spec, stale_after_s=0.1, use_header_stamp=False, node_name="k2")
    wait_until(lambda: not other.is_stale, 2.0, "fresh by receive time")
    assert link.is_stale
