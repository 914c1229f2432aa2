"""Public arms (MuJoCo Menagerie MJCFs and a UR5e URDF) load from a sidecar alone."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest
from own_robot_helpers import (
    ARMS,
    MIRROR,
    TENDON,
    TENDON_ACT,
    write_arm,
)

from karakuri.robot.registry import load_robot
from karakuri.robot.spec import RobotSpecError
from karakuri.sim.registry import make_env
from karakuri.sim.tasks.reach import reach_config


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_public_arm_loads_and_its_licence_ships_with_it(arm: str) -> None:
    spec = load_robot(ARMS[arm])
    folder = ARMS[arm].parent
    assert (folder / "LICENSE").stat().st_size > 500
    assert spec.tool_site and np.all(spec.kp > 0) and np.all(spec.effort_limit > 0)
    assert spec.extra["gravity_compensation"] == "sidecar"
    m = mujoco.MjModel.from_xml_path(spec.model_path)  # every command compiles this file
    assert m.nu == spec.n_joints and m.nmeshvert == 0
    first = m.body(m.jnt_bodyid[m.joint(spec.arm_joints[0]).id]).id
    assert all(m.body_gravcomp[b] == 1.0 for b in range(m.nbody) if b >= first)
    assert all(m.jnt_actgravcomp[m.joint(j).id] for j in spec.arm_joints)


def test_urdf_gets_the_sidecars_servos_and_tool_frame() -> None:
    spec = load_robot(ARMS["ur5e_urdf"])
    m = mujoco.MjModel.from_xml_path(spec.model_path)
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], [2000] * 3 + [500] * 3)
    np.testing.assert_allclose(-m.actuator_biasprm[:, 2], [200] * 3 + [50] * 3)
    np.testing.assert_allclose(m.actuator_forcerange[:, 1], [150] * 3 + [28] * 3)
    assert m.site(spec.tool_site).bodyid == m.body("tool0").id
    assert m.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # the URDF and Menagerie's MJCF of the same arm put the flange in the same place
    mj = load_robot(ARMS["ur5e"])
    from karakuri.sim.tasks.reach_targets import home_tool_pos

    a = home_tool_pos(m, spec)
    b = home_tool_pos(mujoco.MjModel.from_xml_path(mj.model_path), mj)
    # Menagerie rotates the base 90 degrees about z; distances from the base agree
    assert np.linalg.norm(a) == pytest.approx(np.linalg.norm(b), abs=2e-3)


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_reach_builds_on_every_public_arm_with_reachable_targets(arm: str) -> None:
    spec = load_robot(ARMS[arm])
    cfg = reach_config(spec)
    assert cfg.targets == "workspace" and cfg.episode_s >= 1.5
    env = make_env("reach", spec, num_worlds=8, seed=0, randomize=False)
    env.reset()
    targets = env.task.target
    assert torch_all_finite(targets) and targets[:, 2].min() >= cfg.min_height
    env.close()


def torch_all_finite(t: object) -> bool:
    import torch

    return bool(torch.isfinite(t).all())  # type: ignore[arg-type]


def test_sidecar_gains_drive_the_simulation(tmp_path: Path) -> None:
    sc = write_arm(tmp_path, kp=[900, 800], kd=[30, 20])
    spec = load_robot(sc)
    m = mujoco.MjModel.from_xml_path(spec.model_path)
    np.testing.assert_allclose(m.actuator_gainprm[:2, 0], [900, 800])
    np.testing.assert_allclose(-m.actuator_biasprm[:2, 1], [900, 800])
    np.testing.assert_allclose(-m.actuator_biasprm[:2, 2], [30, 20])
    np.testing.assert_allclose(spec.kp, [900, 800])


def test_motor_actuators_are_refused_naming_the_fix(tmp_path: Path) -> None:
    motors = '<motor name="m3" joint="finger1" gear="1" ctrlrange="-5 5"/>'
    sc = write_arm(tmp_path, actuators=motors, gripper_joints=["finger1"],
                   default_pose=[0.0, 0.5, 0.02], velocity_limit=[2, 2, 0.1],
                   accel_limit=[10, 10, 1])
    with pytest.raises(RobotSpecError, match="finger1.*torque <motor>.*give kp and kd"):
        load_robot(sc)


def test_motor_becomes_an_explicit_servo_with_sidecar_gains(tmp_path: Path) -> None:
    motors = '<motor name="m3" joint="finger1" gear="1" ctrlrange="-5 5"/>'
    sc = write_arm(tmp_path, actuators=motors, gripper_joints=["finger1"],
                   default_pose=[0.0, 0.5, 0.02], velocity_limit=[2, 2, 0.1],
                   accel_limit=[10, 10, 1], kp=[400, 400, 200], kd=[40, 40, 5])
    spec = load_robot(sc)
    m = mujoco.MjModel.from_xml_path(spec.model_path)
    a = m.actuator("m3").id
    assert m.actuator_gainprm[a, 0] == 200 and m.actuator_biasprm[a, 1] == -200
    assert m.actuator_forcerange[a, 1] == 5.0  # the motor's torque range is kept
    assert any("motor actuator replaced" in c for c in spec.extra["model_changes"])


def test_tendon_gripper_is_driven_at_its_finger_and_the_other_follows(tmp_path: Path) -> None:
    sc = write_arm(tmp_path, actuators=TENDON_ACT, extra=TENDON, gripper_joints=["finger1"],
                   default_pose=[0.0, 0.5, 0.03], velocity_limit=[2, 2, 0.1],
                   accel_limit=[10, 10, 1])
    spec = load_robot(sc)
    m = mujoco.MjModel.from_xml_path(spec.model_path)
    d = mujoco.MjData(m)
    d.ctrl[m.actuator("grip").id] = 0.03
    d.ctrl[:2] = [0.0, 0.0]
    mujoco.mj_step(m, d, nstep=1000)
    q1, q2 = d.joint("finger1").qpos[0], d.joint("finger2").qpos[0]
    assert q1 == pytest.approx(0.03, abs=2e-3) and q2 == pytest.approx(q1, abs=2e-3)


def test_continuous_joints_name_the_key_that_fixes_them(tmp_path: Path) -> None:
    xml = (tmp_path / "x").parent
    sc = write_arm(xml)
    text = (tmp_path / "two_link.xml").read_text().replace(' range="-3 3"', "")
    (tmp_path / "two_link.xml").write_text(text)
    with pytest.raises(RobotSpecError, match=r"\['j1'\] are continuous.*position_limits"):
        load_robot(sc)


def test_tool_frame_with_unknown_parent_lists_the_bodies(tmp_path: Path) -> None:
    sc = write_arm(tmp_path, tool_site="tip", tool_frame={"parent": "flange", "pos": [0, 0, 0]})
    with pytest.raises(RobotSpecError, match="tool_frame parent 'flange'.*'hand'"):
        load_robot(sc)


def test_gravity_compensation_can_be_turned_off(tmp_path: Path) -> None:
    on = load_robot(write_arm(tmp_path))
    off = load_robot(write_arm(tmp_path, gravity_compensation=False))
    assert on.extra["gravity_compensation"] == "sidecar"
    assert off.extra["gravity_compensation"] == "off"
    m = mujoco.MjModel.from_xml_path(off.model_path)
    assert not m.body_gravcomp.any()


def test_unregistered_robot_name_says_to_give_the_sidecar() -> None:
    with pytest.raises(RobotSpecError, match=r"unknown robot 'gen3'.*--robot path/to/gen3.yaml"):
        load_robot("gen3")


def test_mirror_equality_is_reported_as_coupled(tmp_path: Path) -> None:
    sc = write_arm(tmp_path, actuators='<position name="g" joint="finger1" kp="100" kv="5" '
                   'forcerange="-20 20"/>', extra=MIRROR, gripper_joints=["finger1"],
                   default_pose=[0.0, 0.5, 0.04], velocity_limit=[2, 2, 0.1],
                   accel_limit=[10, 10, 1])
    from karakuri.sim.tasks.reach_targets import joint_couplings

    spec = load_robot(sc)
    m = mujoco.MjModel.from_xml_path(spec.model_path)
    (adr, src, poly, _, _), = joint_couplings(m, spec)
    assert adr == m.jnt_qposadr[m.joint("finger2").id] and src == 2
    np.testing.assert_allclose(poly, [0, 1, 0, 0, 0])


@pytest.mark.parametrize("arm", ["ur5e_urdf", "ur5e"])
def test_sil_plant_simulates_the_sidecars_robot_and_holds_home(arm: str) -> None:
    # `karakuri sil` and deploy's SIL link run this plant: a URDF gets its sidecar servos,
    # tool site and gravity compensation there too
    from karakuri.firmware_bridge.mujoco_plant import MujocoPlant

    spec = load_robot(ARMS[arm])
    plant = MujocoPlant(spec)
    np.testing.assert_allclose(plant.kp, spec.kp)
    zero = np.zeros(spec.n_joints)
    for _ in range(500):  # 1 s holding home
        plant.step(spec.default_pose, zero, zero)
    q, _, _ = plant.sample()
    np.testing.assert_allclose(q, spec.default_pose, atol=2e-3)
