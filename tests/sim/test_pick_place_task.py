"""Pick and place on the industrial arm: success, the vision input, stages, randomization."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from karakuri.robot.registry import load_robot
from karakuri.sim.env import BatchedEnv
from karakuri.sim.tasks.pick_place import (
    BOX_HALF,
    PickPlace,
    PickPlaceConfig,
    fold_yaw,
    tanh_kernel,
)


def make(n: int = 1, randomize: bool = False, **cfg) -> BatchedEnv:
    task = PickPlace(load_robot("industrial_arm"), PickPlaceConfig(**cfg))
    return BatchedEnv(task, n, seed=0, randomize=randomize)


def place_box(env: BatchedEnv, xyz: tuple[float, float, float], gripper: float = 0.04) -> None:
    """Arm at home (tool 0.36 m up), gripper at ``gripper`` m, the box at ``xyz``."""
    env.reset()
    t, p = env.task, env.physics
    qpos = p.qpos.clone()
    qpos[:, env.qpos_idx] = torch.tensor(env.robot.default_pose, dtype=torch.float32)
    qpos[:, t._grip_adr] = gripper
    qpos[:, t._mirror_adr] = gripper
    a = t._box_qadr
    qpos[:, a : a + 3] = torch.tensor(xyz)
    qpos[:, a + 3 : a + 7] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    p.reset_worlds(torch.ones(env.num_worlds, dtype=torch.bool), qpos, torch.zeros_like(p.qvel))


def test_success_needs_box_in_bin_released_and_arm_clear() -> None:
    env = make()
    bx, by = env.task.cfg.bin_xy
    place_box(env, (bx, by, BOX_HALF))
    assert env.task.success(env.physics).item()
    place_box(env, (bx, by, BOX_HALF), gripper=0.0)  # gripper closed: not released
    assert not env.task.success(env.physics).item()
    place_box(env, (bx + 0.15, by, BOX_HALF))  # beside the bin
    assert not env.task.success(env.physics).item()
    place_box(env, (0.5, -0.1, BOX_HALF))  # still in the pick area
    assert not env.task.success(env.physics).item()
    env.close()
    low = make(clear_height=0.5)  # the tool at 0.36 m is no longer clear
    place_box(low, (bx, by, BOX_HALF))
    assert not low.task.success(low.physics).item()
    low.close()


def test_object_pose_reports_the_box_with_its_yaw_folded() -> None:
    env = make(n=8)
    env.reset()
    p, t = env.physics, env.task
    pose = env.raw_signals()["object_pose"]
    a = t._box_qadr
    torch.testing.assert_close(pose[:, :3], p.qpos[:, a : a + 3], atol=1e-4, rtol=0)
    w, z = p.qpos[:, a + 3], p.qpos[:, a + 6]
    yaw = 2 * torch.atan2(z, w)
    torch.testing.assert_close(pose[:, 3], fold_yaw(yaw), atol=1e-4, rtol=0)
    assert (pose[:, 3].abs() <= math.pi / 4 + 1e-6).all()
    lo, hi = t.cfg.box_low, t.cfg.box_high
    assert ((pose[:, 0] >= lo[0]) & (pose[:, 0] <= hi[0]) & (pose[:, 1] >= lo[1])
            & (pose[:, 1] <= hi[1])).all()
    env.close()


def test_fold_yaw_is_a_quarter_turn_symmetry() -> None:
    yaw = torch.linspace(-3.0, 3.0, 61)
    torch.testing.assert_close(fold_yaw(yaw + math.pi / 2), fold_yaw(yaw), atol=1e-5, rtol=0)


def test_carry_kernel_pulls_from_the_pick_area_and_pays_most_at_the_bin() -> None:
    d = torch.linspace(0.0, 1.0, 101)
    k = tanh_kernel(d, 0.6, 0.1)
    assert k[0] == 1.0 and bool((k > 0).all()) and bool((k <= 1).all())
    assert bool((k.diff() < 0).all())
    # 0.3-0.6 m is where a lifted box starts; the pull there must be worth learning from.
    far = tanh_kernel(torch.tensor([0.3, 0.45, 0.6]), 0.6, 0.1)
    assert bool((far > 0.1).all())
    assert float(far[0] - far[1]) > 0.05


def test_stage_rewards_start_at_reach_only() -> None:
    env = make(n=2)
    env.reset()
    _, _, _, _, info = env.step(torch.zeros(2, env.action_size))
    assert info["reward/reach"] > 0
    for k in ("grasp", "lift", "carry", "place", "release", "clear"):
        assert info[f"reward/{k}"] == 0.0
    env.close()


def test_randomization_varies_box_mass_and_friction_per_world() -> None:
    env = make(n=3, randomize=True)
    env.reset()
    box = env.model.body("pp_box").id
    geom = int(env.model.body_geomadr[box])
    masses = {round(float(m.body_mass[box]), 6) for m in env.physics._models}
    friction = {round(float(m.geom_friction[geom, 0]), 6) for m in env.physics._models}
    assert len(masses) == 3 and len(friction) == 3
    nominal = env.model.body_mass[box]
    lo, hi = env.task.randomization.mass
    assert all(lo * nominal - 1e-9 <= m <= hi * nominal + 1e-9 for m in masses)
    env.close()


@pytest.mark.slow
def test_scripted_pick_and_place_succeeds_through_every_stage() -> None:
    """An IK script through the task's own actions: the task is solvable and judged so."""
    env = make()
    m, d = env.model, mujoco.MjData(env.model)
    site = m.site(env.robot.tool_site).id
    dofs = [int(m.joint(j).dofadr[0]) for j in env.robot.arm_joints]
    bin_xy = np.array(env.task.cfg.bin_xy)
    env.reset()
    seen: set[str] = set()
    for t in range(env.task.episode_steps):
        d.qpos[:] = env.physics.qpos[0].double().numpy()
        mujoco.mj_forward(m, d)
        pose = env.raw_signals()["object_pose"][0].double().numpy()
        box, yaw = pose[:3], pose[3] if t < 110 else 0.0
        above, at = box + np.array([0, 0, 0.10]), box + np.array([0, 0, 0.005])
        plan = [(60, above, 1), (90, at, 1), (110, at, -1), (190, [*bin_xy, 0.16], -1),
                (210, [*bin_xy, 0.16], 1), (10**9, [*bin_xy, 0.30], 1)]
        goal, grip = next((np.asarray(g, float), c) for end, g, c in plan if t < end)
        xd = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
        rd = np.column_stack([xd, np.cross([0, 0, -1.0], xd), [0, 0, -1.0]])
        r = d.site_xmat[site].reshape(3, 3)
        err = np.concatenate([goal - d.site_xpos[site],
                              0.5 * sum(np.cross(r[:, i], rd[:, i]) for i in range(3))])
        jp, jr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        mujoco.mj_jacSite(m, d, jp, jr, site)
        jac = np.vstack([jp[:, dofs], jr[:, dofs]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + 1e-3 * np.eye(6), err)
        action = np.append(np.clip(dq / env.task.cfg.arm_scale, -1, 1), grip)
        _, _, _, _, info = env.step(torch.tensor(action, dtype=torch.float32)[None])
        seen |= {k[7:] for k, v in info.items() if k.startswith("reward/") and v > 0}
    assert info["episode"]["success"].item() == 1.0
    assert {"reach", "grasp", "lift", "carry", "place", "release", "clear"} <= seen
    env.close()
