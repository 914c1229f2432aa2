"""Reach adapts to the robot: targets, action scale, episode length, the reset of passive joints."""

from __future__ import annotations

import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from karakuri.robot.registry import load_robot
from karakuri.sim.registry import make_env
from karakuri.sim.tasks import reach_targets as rt
from karakuri.sim.tasks.reach import ReachConfig, reach_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robot"))
from own_robot_helpers import MIRROR, write_arm


def test_industrial_arm_keeps_the_shipped_reach_settings() -> None:
    # the demo, the README's numbers and the SIL launch file use exactly these
    assert reach_config(load_robot("industrial_arm")) == ReachConfig()


def test_derived_settings_follow_servos_and_velocity_limits(tmp_path: Path) -> None:
    spec = load_robot(write_arm(tmp_path, velocity_limit=[2.0, 0.5]))
    cfg = reach_config(spec)
    # kp 400, kd 40 + joint damping 1: a full action moves a joint at 1/6 of its limit, but
    # at least 0.5 rad/s and at most half the limit: 0.5 and 0.25 rad/s here
    np.testing.assert_allclose(cfg.action_scale, np.array([0.5, 0.25]) * 41 / 400, rtol=1e-3)
    # crossing 0.4 rad at 0.25 rad/s with margin 1.5 takes 2.4 s
    assert cfg.targets == "workspace" and cfg.episode_s == pytest.approx(2.4)


def test_workspace_targets_are_reachable_tool_positions(tmp_path: Path) -> None:
    spec = load_robot(write_arm(tmp_path))
    env = make_env("reach", spec, num_worlds=32, seed=3, randomize=False)
    env.reset()
    pool = env.task._pool
    assert pool.shape[0] > 100
    d = (env.task.target[:, None, :] - pool[None]).norm(dim=-1).min(dim=1).values
    assert torch.all(d < 1e-6)  # every target is one of the arm's own tool positions
    m = env.model
    q = rt._sample_poses(spec, 0.4, 4096, seed=0)
    np.testing.assert_allclose(rt._fk(m, spec, q[:3]), pool[:3].numpy(), atol=1e-5)
    env.close()


def test_reset_leaves_passive_joints_after_the_arm_in_range(tmp_path: Path) -> None:
    # fingers after the arm that nothing commands: the bug wrote the last arm joint (0.5 rad)
    # into them, 0.46 m outside their 0..0.04 m range
    spec = load_robot(write_arm(tmp_path, default_pose=[0.0, 0.5]))
    env = make_env("reach", spec, num_worlds=4, seed=0, randomize=False)
    env.reset()
    m = env.model
    for j in ("finger1", "finger2"):
        q = env.physics.qpos[:, m.jnt_qposadr[m.joint(j).id]]
        assert torch.all(q == 0.0), (j, q)
    env.close()


def test_reset_moves_coupled_finger_with_the_commanded_one(tmp_path: Path) -> None:
    act = '<position name="g" joint="finger1" kp="100" kv="5" forcerange="-20 20"/>'
    spec = load_robot(write_arm(
        tmp_path, actuators=act, extra=MIRROR, gripper_joints=["finger1"],
        default_pose=[0.0, 0.5, 0.03], velocity_limit=[2, 2, 0.1], accel_limit=[10, 10, 1],
    ))
    env = make_env("reach", spec, num_worlds=4, seed=0, randomize=False)
    env.reset()
    m = env.model
    f1 = env.physics.qpos[:, m.jnt_qposadr[m.joint("finger1").id]]
    f2 = env.physics.qpos[:, m.jnt_qposadr[m.joint("finger2").id]]
    torch.testing.assert_close(f1, torch.full((4,), 0.03))
    torch.testing.assert_close(f2, f1)
    env.close()


def test_home_outside_the_sidecar_box_is_named_before_training(tmp_path: Path) -> None:
    box = {"target_low": [0.0, 0.3, 0.3], "target_high": [0.1, 0.4, 0.4]}
    spec = load_robot(write_arm(tmp_path, tasks={"reach": box}))
    with pytest.raises(ValueError, match="home pose puts the tool at .* outside the target box"):
        make_env("reach", spec, num_worlds=2)


def test_unreachable_box_is_named_before_training(tmp_path: Path) -> None:
    spec = load_robot(write_arm(tmp_path))
    home = rt.home_tool_pos(mujoco.MjModel.from_xml_path(spec.model_path), spec)
    far = home + np.array([2.0, 0.05, 0.05])
    box = {"target_low": (home - 0.05).tolist(), "target_high": far.tolist()}
    spec = load_robot(write_arm(tmp_path, tasks={"reach": box}))
    with pytest.raises(ValueError, match="points of the target box are out of the arm's reach"):
        make_env("reach", spec, num_worlds=2)


def test_unknown_reach_key_in_the_sidecar_is_refused(tmp_path: Path) -> None:
    from karakuri.robot.spec import RobotSpecError

    with pytest.raises(RobotSpecError, match="unknown key tasks.reach.speed; allowed"):
        load_robot(write_arm(tmp_path, tasks={"reach": {"speed": 1}}))


def test_heavily_damped_joint_shrinks_the_workspace_to_what_it_crosses(tmp_path: Path) -> None:
    sc = write_arm(tmp_path, effort_limit=[50.0, 5.0])
    xml = tmp_path / "two_link.xml"
    xml.write_text(xml.read_text().replace('range="-2 2" armature="0.05" damping="1"',
                                           'range="-2 2" armature="0.05" damping="100"'))
    spec = load_robot(sc)
    cfg = reach_config(spec)
    r = rt.joint_radius(spec, cfg.workspace_radius, cfg.episode_s)
    # j2: effort 5 N*m against joint damping 100 N*m*s/rad: at most 0.05 rad/s; 90 % of it
    # over the episode, with the 1.5 margin
    np.testing.assert_allclose(r, [0.4, 0.9 * 0.05 * cfg.episode_s / 1.5], rtol=1e-6)
    from karakuri.sim.robot_check import check_robot

    _, items = check_robot(sc)
    speed = next(i for i in items if i.name == "speed")
    assert "% of their velocity limits" in speed.detail
