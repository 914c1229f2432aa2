"""Reach settings that follow the robot: where targets come from, action scale, episode length.

A user's arm is not ours: its home pose, reach and servo speed differ.  Unless the sidecar
gives them (``tasks: {reach: {...}}``), reach derives its settings from the robot:

* **targets** are tool positions the arm reaches from joint poses within ``workspace_radius``
  rad of home (each arm joint, inside its limits), so every target is reachable and near home;
  a joint whose passive damping b holds it back (at its effort limit it moves at most
  effort / b) gets the smaller radius it can cross in an episode;
* **action scale** per joint: a full action drives the joint at ``SPEED_FRACTION`` of its
  velocity limit once the servo settles, but never slower than ``MIN_SPEED`` (nor faster than
  half its limit): a slow arm must still cross its workspace in an episode (a delta target
  ``s`` on a servo of stiffness kp and damping kd + joint damping b moves the joint at
  kp·s / (kd + b));
* **episode length**: time to cross the workspace radius at that speed, with margin to
  settle, never under 1.5 s.

A sidecar box is checked before training: the home pose's tool position must lie in it and
every part of it must be reachable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from karakuri.robot.mjcf_index import dof_adr, qpos_adr
from karakuri.robot.spec import RobotSpec

SPEED_FRACTION = 1.0 / 6.0  # full action -> this fraction of the joint's velocity limit
MIN_SPEED = 0.5  # rad/s: but at least this, our own arm's (at most half the limit)
MIN_EPISODE_S = 1.5
EPISODE_MARGIN = 1.5  # episode = margin x (workspace radius / joint speed)
SCALE_RANGE = (0.002, 0.2)  # rad per unit action, clipped


def _speed(robot: RobotSpec) -> np.ndarray:
    """Joint speed under a full action, rad/s. Shape: (n_arm,)."""
    v = robot.velocity_limit[: robot.n_arm]
    return np.minimum(np.maximum(SPEED_FRACTION * v, MIN_SPEED), 0.5 * v)


def _damping(robot: RobotSpec) -> np.ndarray:
    n = robot.n_arm
    b = np.asarray(robot.extra.get("joint_damping", np.zeros(robot.n_joints)))[:n]
    return robot.kd[:n] + b


def joint_radius(robot: RobotSpec, radius: float, episode_s: float) -> np.ndarray:
    """Per arm joint: how far from home workspace targets reach, rad. Shape: (n_arm,).

    ``radius``, or less where the joint's own damping b limits it: the servo's force
    kp·s − kd·v is clipped to the effort limit E while b·v is not, so at steady speed
    v = kp·s / (kd + b) unless that needs b·v > E, and then v = E / b.  The radius is what
    90 % of the speed covers in an episode, with the episode length's margin.
    """
    n = robot.n_arm
    b = np.asarray(robot.extra.get("joint_damping", np.zeros(robot.n_joints)))[:n]
    saturated = 0.9 * robot.effort_limit[:n] / np.maximum(b, 1e-9)
    speed = np.minimum(_speed(robot), saturated)
    return np.minimum(radius, speed * episode_s / EPISODE_MARGIN)


def derived_action_scale(robot: RobotSpec) -> tuple[float, ...]:
    """Per arm joint: rad of position lead per unit action. Shape: (n_arm,)."""
    n = robot.n_arm
    kd = _damping(robot)
    speed = _speed(robot)
    scale = np.clip(speed * kd / np.maximum(robot.kp[:n], 1e-9), *SCALE_RANGE)
    return tuple(float(round(s, 5)) for s in scale)


def derived_episode_s(robot: RobotSpec, radius: float, ctrl_dt: float) -> float:
    """Episode length, s: cross ``radius`` rad on the slowest arm joint, with margin."""
    slowest = float(np.min(_speed(robot)))
    t = max(MIN_EPISODE_S, EPISODE_MARGIN * radius / slowest)
    return round(t / ctrl_dt) * ctrl_dt


def _fk(model: Any, robot: RobotSpec, poses: np.ndarray) -> np.ndarray:
    """Tool-site positions of joint poses. Shape: (K, n_joints) -> (K, 3), m, world frame."""
    import mujoco

    data = mujoco.MjData(model)
    adr = qpos_adr(model, robot.joint_names)
    site = model.site(robot.tool_site).id
    out = np.empty((len(poses), 3))
    for k, q in enumerate(poses):
        data.qpos[:] = model.qpos0
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        out[k] = data.site_xpos[site]
    return out


def home_tool_pos(model: Any, robot: RobotSpec) -> np.ndarray:
    """The tool position at the home pose, m, world frame. Shape: (3,)."""
    return _fk(model, robot, robot.default_pose[None])[0]


def _sample_poses(
    robot: RobotSpec, radius: float | np.ndarray | None, count: int, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = robot.n_arm
    lo, hi = robot.lower[:n].copy(), robot.upper[:n].copy()
    if radius is not None:
        lo = np.maximum(lo, robot.default_pose[:n] - radius)
        hi = np.minimum(hi, robot.default_pose[:n] + radius)
    poses = np.tile(robot.default_pose, (count, 1))
    poses[:, :n] = lo + (hi - lo) * rng.random((count, n))
    return poses


def workspace_pool(
    model: Any, robot: RobotSpec, radius: float | np.ndarray, min_height: float,
    count: int = 4096,
) -> np.ndarray:
    """Reachable tool positions near home (fixed seed). Shape: (K, 3), m, world frame.

    ``radius``: rad from home, one value or one per arm joint (:func:`joint_radius`).

    Raises:
        ValueError: fewer than a tenth of them lie above ``min_height`` (home too low).
    """
    pts = _fk(model, robot, _sample_poses(robot, radius, count, seed=0))
    keep = pts[:, 2] >= min_height
    if keep.mean() < 0.1:
        raise ValueError(
            f"robot {robot.name!r}: from its home pose the tool stays below z = {min_height} m "
            f"in {100 * (1 - keep.mean()):.0f} % of the poses within "
            f"{np.round(radius, 3).tolist()} rad; raise the "
            "home pose (sidecar default_pose) or give a target box (tasks: {reach: {target_low: "
            "[x, y, z], target_high: [x, y, z]}})"
        )
    return pts[keep]


_CHECKED: dict[str, list[str]] = {}


def check_box(
    model: Any, robot: RobotSpec, low: tuple[float, ...], high: tuple[float, ...],
    tolerance: float = 0.03,
) -> list[str]:
    """Problems of a target box for this robot (empty when it is well posed).

    The home pose's tool position must lie inside the box (the policy starts there), and
    every point of a 5x5x5 grid over the box must be within ``tolerance`` m of a pose the
    arm reaches inside its limits.
    """
    key = f"{robot.to_json()}|{robot.model_path}|{list(low)}|{list(high)}|{tolerance}"
    if key not in _CHECKED:
        _CHECKED[key] = _check_box(model, robot, low, high, tolerance)
    return list(_CHECKED[key])


def _check_box(
    model: Any, robot: RobotSpec, low: tuple[float, ...], high: tuple[float, ...],
    tolerance: float,
) -> list[str]:
    problems = []
    lo, hi = np.asarray(low), np.asarray(high)
    home = home_tool_pos(model, robot)
    if np.any(home < lo) or np.any(home > hi):
        problems.append(
            f"the home pose puts the tool at {np.round(home, 3).tolist()} m, outside the target "
            f"box {list(low)}..{list(high)}; move the box (tasks.reach.target_low/high) or the "
            "home pose (default_pose)"
        )
    poses = _sample_poses(robot, None, 2000, seed=1)
    reach = _fk(model, robot, poses)
    axes = [np.linspace(a, b, 5) for a, b in zip(lo, hi, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    nearest = np.argmin(np.linalg.norm(grid[:, None, :] - reach[None, :, :], axis=-1), axis=1)
    dist = np.array(
        [_ik_error(model, robot, poses[k], p) for k, p in zip(nearest, grid, strict=True)]
    )
    far = dist > tolerance
    if far.any():
        worst = grid[int(np.argmax(dist))]
        problems.append(
            f"{int(far.sum())} of {len(grid)} points of the target box are out of the arm's "
            f"reach (e.g. {np.round(worst, 3).tolist()} m, {dist.max():.2f} m from any reachable "
            "tool position); shrink the box (tasks.reach.target_low/high) or remove it to let "
            "reach sample the arm's own workspace"
        )
    return problems


def _ik_error(model: Any, robot: RobotSpec, q0: np.ndarray, goal: np.ndarray) -> float:
    """Distance, m, left after damped least-squares position IK from ``q0`` within limits."""
    import mujoco

    data = mujoco.MjData(model)
    adr, dof = qpos_adr(model, robot.arm_joints), dof_adr(model, robot.arm_joints)
    site = model.site(robot.tool_site).id
    n = robot.n_arm
    q = q0[:n].copy()
    jac = np.zeros((3, model.nv))
    err = np.inf
    for _ in range(40):
        data.qpos[:] = model.qpos0
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        e = goal - data.site_xpos[site]
        err = float(np.linalg.norm(e))
        if err < 1e-3:
            break
        mujoco.mj_jacSite(model, data, jac, None, site)
        j = jac[:, dof]
        q = q + j.T @ np.linalg.solve(j @ j.T + 1e-4 * np.eye(3), e)
        q = np.clip(q, robot.lower[:n], robot.upper[:n])
    return err


def joint_couplings(
    model: Any, robot: RobotSpec
) -> list[tuple[int, int, np.ndarray, float, float]]:
    """Passive joints an equality ties to a commanded joint (a mirrored finger, say).

    Returns:
        ``(qpos address of the passive joint, index of the commanded joint in the spec,
        polynomial coefficients c0..c4, passive qpos0, commanded qpos0)`` per coupling:
        passive - qpos0_p = sum_k c_k (commanded - qpos0_c)^k (MuJoCo's joint equality).
    """
    import mujoco

    commanded = {model.joint(j).id: i for i, j in enumerate(robot.joint_names)}
    out = []
    for e in range(model.neq):
        if model.eq_type[e] != mujoco.mjtEq.mjEQ_JOINT or not model.eq_active0[e]:
            continue
        j1, j2 = int(model.eq_obj1id[e]), int(model.eq_obj2id[e])
        if j1 in commanded or j2 not in commanded:
            continue
        a1, a2 = int(model.jnt_qposadr[j1]), int(model.jnt_qposadr[j2])
        out.append((a1, commanded[j2], np.array(model.eq_data[e, :5]),
                    float(model.qpos0[a1]), float(model.qpos0[a2])))
    return out
