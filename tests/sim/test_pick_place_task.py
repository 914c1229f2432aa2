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
from karakuri.sim.tasks.pick_place_scene import TIMESTEP, closed_opening


def make(n: int = 1, randomize: bool = False, training: bool = False, **cfg) -> BatchedEnv:
    task = PickPlace(load_robot("industrial_arm"), PickPlaceConfig(**cfg))
    task.training = training
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


Plan = list[tuple[int, str, int]]
#: IK plans: (until step, goal, gripper action) with goals "above" (10 cm over the box), "at"
#: (the box), "start" and "high" (where the box started and 12 cm over it), "bin" and
#: "clear" (over the bin).
FULL: Plan = [(60, "above", 1), (90, "at", 1), (110, "at", -1), (190, "bin", -1),
              (210, "bin", 1), (10**9, "clear", 1)]
STOP_AFTER_GRASP: Plan = [(60, "above", 1), (90, "at", 1), (10**9, "start", -1)]
STOP_AFTER_LIFT: Plan = [(60, "above", 1), (90, "at", 1), (110, "at", -1), (10**9, "high", -1)]


def run_ik_scripts(env: BatchedEnv, plans: list[Plan]) -> tuple[dict, set[str]]:
    """One episode per world, each driven by its plan through the task's own actions (an IK
    script on the tool pose from the vision input), the box at the same pose in every world
    (0.60, -0.13) m, yaw 0.59 rad; the ended episodes' stats and the reward terms that paid."""
    m, d = env.model, mujoco.MjData(env.model)
    site = m.site(env.robot.tool_site).id
    dofs = [int(m.joint(j).dofadr[0]) for j in env.robot.arm_joints]
    bin_xy = np.array(env.task.cfg.bin_xy)
    env.reset()
    qpos, a = env.physics.qpos.clone(), env.task._box_qadr
    qpos[:, a : a + 7] = torch.tensor([0.60, -0.13, BOX_HALF, math.cos(0.295), 0.0, 0.0,
                                       math.sin(0.295)])
    env.physics.reset_worlds(torch.ones(env.num_worlds, dtype=torch.bool), qpos,
                             torch.zeros_like(env.physics.qvel))
    start = env.raw_signals()["object_pose"][:, :3].double().numpy().copy()
    seen: set[str] = set()
    for t in range(env.task.episode_steps):
        actions = []
        for w, plan in enumerate(plans):
            d.qpos[:] = env.physics.qpos[w].double().numpy()
            mujoco.mj_forward(m, d)
            pose = env.raw_signals()["object_pose"][w].double().numpy()
            box, yaw = pose[:3], pose[3] if t < 110 else 0.0
            goals = {"above": box + np.array([0, 0, 0.10]), "at": box + np.array([0, 0, 0.005]),
                     "start": start[w] + np.array([0, 0, 0.005]),
                     "high": start[w] + np.array([0, 0, 0.12]), "bin": [*bin_xy, 0.16],
                     "clear": [*bin_xy, 0.30]}
            name, grip = next((g, c) for end, g, c in plan if t < end)
            goal = np.asarray(goals[name], float)
            xd = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
            rd = np.column_stack([xd, np.cross([0, 0, -1.0], xd), [0, 0, -1.0]])
            r = d.site_xmat[site].reshape(3, 3)
            err = np.concatenate([goal - d.site_xpos[site],
                                  0.5 * sum(np.cross(r[:, i], rd[:, i]) for i in range(3))])
            jp, jr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
            mujoco.mj_jacSite(m, d, jp, jr, site)
            jac = np.vstack([jp[:, dofs], jr[:, dofs]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + 1e-3 * np.eye(6), err)
            actions.append(np.append(np.clip(dq / env.task.cfg.arm_scale, -1, 1), grip))
        _, _, _, _, info = env.step(torch.tensor(np.array(actions), dtype=torch.float32))
        seen |= {k[7:] for k, v in info.items() if k.startswith("reward/") and v > 0}
    return info["episode"], seen


@pytest.mark.slow
def test_scripted_pick_and_place_succeeds_through_every_stage() -> None:
    """The IK script: the task is solvable and judged so, and the funnel counts every stage;
    scripts that stop after the grasp and after the lift cut the funnel exactly there."""
    env = make(n=3)
    ep, seen = run_ik_scripts(env, [FULL, STOP_AFTER_GRASP, STOP_AFTER_LIFT])
    assert ep["success"].tolist() == [1.0, 0.0, 0.0]
    assert {"reach", "grasp", "lift", "carry", "place", "release", "clear"} <= seen
    stages = env.task.stages
    funnel = torch.stack([ep[f"funnel/{s}"] for s in stages], dim=-1)
    cut = {s: i for i, s in enumerate(stages)}
    expected = torch.zeros(3, len(stages))
    expected[0] = 1.0
    expected[1, : cut["grasped"] + 1] = 1.0
    expected[2, : cut["lifted"] + 1] = 1.0
    torch.testing.assert_close(funnel, expected, atol=0, rtol=0)
    env.close()


def test_funnel_counts_a_stage_only_after_the_ones_before_it() -> None:
    """A box that starts in the bin, released, with the arm clear, satisfies placed, released
    and cleared but reached nothing before them: the funnel stays empty."""
    env = make(n=2, episode_s=0.1)
    bx, by = env.task.cfg.bin_xy
    place_box(env, (bx, by, BOX_HALF))
    flags = env.task.stage_flags(env.physics)
    assert flags.shape == (2, 7) and flags[:, 4:].all() and not flags[:, :4].any()
    for _ in range(env.task.episode_steps):
        _, _, _, trunc, info = env.step(torch.zeros(2, env.action_size))
    assert trunc.all()
    ep = info["episode"]
    assert ep["success"].tolist() == [1.0, 1.0]
    assert all(ep[f"funnel/{s}"].tolist() == [0.0, 0.0] for s in env.task.stages)
    env.close()


def test_scene_steps_at_4_ms_and_the_closed_opening_touches_the_box() -> None:
    env = make()
    assert env.model.opt.timestep == TIMESTEP and env.n_substeps == 5
    assert closed_opening(env.model) == pytest.approx(0.018)  # pads 2 mm off the finger axis
    env.close()


def test_curriculum_starts_hold_the_box_and_a_squeeze_keeps_it() -> None:
    """Every row of the table, squeezed (gripper action -1) with the arm still for 0.6 s: the
    held rows keep the box at their height, the open rows close on it; none drops it."""
    env = make(n=96, training=True, curriculum_fraction=1.0)
    t, p = env.task, env.physics
    rows = t._held
    assert rows.shape[0] == 96  # every IK target reached
    env.reset()
    p.reset_worlds(torch.ones(96, dtype=torch.bool), rows, torch.zeros_like(p.qvel))
    p.ctrl[:, env.ctrl_idx] = p.qpos[:, env.qpos_idx]
    lift0 = rows[:, t._box_qadr + 2] - BOX_HALF
    squeeze = torch.zeros(96, env.action_size)
    squeeze[:, -1] = -1.0
    for _ in range(30):
        env.step(squeeze)
    s = t._state(p)
    assert s["grasped"].all()
    assert (s["lift"] - lift0).abs().max() < 0.01
    kinds = torch.arange(96) % 4
    assert (lift0[kinds == 0].abs() < 1e-6).all() and (lift0[kinds == 2] > 0.1).all()
    env.close()


def test_curriculum_is_training_only() -> None:
    """Without ``training`` (evaluation, export, SIL) every reset is the normal one: box on the
    table in the pick area, gripper open; with it about ``curriculum_fraction`` start held."""
    for training in (False, True):
        env = make(n=200, training=training, curriculum_fraction=0.4)
        env.reset()
        t, q = env.task, env.physics.qpos
        normal = ((q[:, t._grip_adr] == 0.04) & (q[:, t._box_qadr + 2] == BOX_HALF)).float()
        if training:  # 0.6 normal plus the open-gripper tenth of the curriculum
            assert 0.6 < float(normal.mean()) < 0.8
        else:
            assert float(normal.mean()) == 1.0
        env.close()
