"""The one MuJoCo plant (virtual MCU, ROS 2 simulated robot, SIL scene) steps as the model says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

mujoco = pytest.importorskip("mujoco")

from karakuri.firmware_bridge.mujoco_plant import MujocoPlant  # noqa: E402
from karakuri.robot.registry import load_robot  # noqa: E402

SPEC = load_robot("industrial_arm")


def _raw() -> tuple[mujoco.MjModel, mujoco.MjData, np.ndarray, np.ndarray]:
    """The bare model stepped by hand with ctrl = target (MuJoCo clamps ctrl to ctrlrange)."""
    m = mujoco.MjModel.from_xml_path(SPEC.model_path)
    d = mujoco.MjData(m)
    qadr = np.array([m.joint(j).qposadr[0] for j in SPEC.joint_names])
    act = np.array([next(a for a in range(m.nu) if m.actuator(a).trnid[0] == m.joint(j).id)
                    for j in SPEC.joint_names])
    return m, d, qadr, act


@settings(max_examples=10, deadline=None)
@given(st.lists(st.floats(-8.0, 8.0), min_size=7, max_size=7))
def test_a_position_only_step_is_the_models_own_position_servo(target: list[float]) -> None:
    # ros2_control commands positions only: ctrl = target, clamped to the ctrlrange as the
    # model clamps it, even far outside the range (the plant turns MuJoCo's clamp off for
    # the MCU's feed-forward and must clamp itself)
    q = np.asarray(target)
    plant = MujocoPlant(SPEC)
    plant.reset(SPEC.default_pose)
    m, d, qadr, act = _raw()
    d.qpos[qadr] = SPEC.default_pose
    for _ in range(50):
        plant.step(q)
        d.ctrl[act] = q
        mujoco.mj_step(m, d)
    np.testing.assert_array_equal(plant.data.qpos, d.qpos)
    np.testing.assert_array_equal(plant.sample()[2], d.actuator_force[act])


def test_feed_forward_sits_in_ctrl_unclipped() -> None:
    plant = MujocoPlant(SPEC)
    n = SPEC.n_joints
    q_ref, v_ref, tau = np.full(n, 6.2), np.full(n, 0.5), np.full(n, 3.0)
    plant.step(q_ref, v_ref, tau)
    np.testing.assert_allclose(plant.data.ctrl[plant.act], q_ref + (plant.kv * v_ref + tau)
                               / plant.kp)
    plant.step(q_ref, v_ref=v_ref)
    np.testing.assert_allclose(plant.data.ctrl[plant.act], q_ref + plant.kv * v_ref / plant.kp)


def test_reset_starts_at_the_pose_and_settling_holds_it() -> None:
    plant = MujocoPlant(SPEC)
    for _ in range(100):
        plant.step(SPEC.default_pose + 0.3)
    pose = SPEC.default_pose + np.r_[0.2, -0.2, 0.3, 0.0, 0.1, 0.0, 0.0]
    plant.reset(pose)
    assert plant.time == 0.0
    np.testing.assert_array_equal(plant.sample()[0], pose)
    plant.reset(pose, settle_s=0.2)
    assert plant.time == pytest.approx(0.2, abs=plant.dt)
    np.testing.assert_allclose(plant.sample()[0], pose, atol=2e-3)
    assert plant.tool_position().shape == (3,)


def test_a_spec_joint_missing_from_the_model_is_a_one_line_error() -> None:
    from dataclasses import replace

    bad = replace(SPEC, joint_names=(*SPEC.joint_names[:-1], "thumb"),
                  gripper_joints=("thumb",))
    with pytest.raises(ValueError, match=r"no joint named 'thumb'"):
        MujocoPlant(bad)
