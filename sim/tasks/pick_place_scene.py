"""pick_place's scene (box, bin, pad touch sensors, pose sensors) and its held-box start table.

The held-box table is the training curriculum's start states: arm poses (solved once by
damped least-squares IK on the CPU model) with the box between the closed fingers, on the
table in the pick area, on the way to the bin and above the bin.  Resets index it with torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from karakuri.robot.spec import RobotSpec

if TYPE_CHECKING:
    from karakuri.sim.tasks.pick_place import PickPlaceConfig

#: The industrial arm's finger-pad geoms (the only robot geoms that collide).
PAD_GEOMS: tuple[str, str] = ("finger_left_pad", "finger_right_pad")
BOX, BIN = "pp_box", "pp_bin"
S_TOOL, S_BOX_POS, S_BOX_QUAT = "pp_tool_pos", "pp_box_pos", "pp_box_quat"
S_TOUCH = ("pp_touch_left", "pp_touch_right")
BOX_HALF = 0.02  # m
#: Physics step of the scene, s: 5 substeps per 20 ms control step (the robot file's 2 ms
#: halves the CPU throughput; the 10 ms finger contacts stay resolved at 4 ms).
TIMESTEP = 0.004
#: The held box's centre sits this far below the tool site (the IK script's grasp height), m.
GRASP_DEPTH = 0.005


def build_scene(cfg: PickPlaceConfig, robot: RobotSpec, spec: mujoco.MjSpec) -> None:
    """Add the box (free body), the bin, pad touch sensors and pose sensors to ``spec``."""
    spec.option.timestep = TIMESTEP
    w = spec.worldbody
    mat = w.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, contype=0, conaffinity=0)
    mat.size = [(h - lo) / 2 + 0.03 for lo, h in zip(cfg.box_low, cfg.box_high, strict=True)] + [
        0.0005
    ]
    mat.pos = [(lo + h) / 2 for lo, h in zip(cfg.box_low, cfg.box_high, strict=True)] + [0.0]
    mat.rgba = [0.3, 0.45, 0.35, 1.0]
    box = w.add_body(name=BOX, pos=[*mat.pos[:2], BOX_HALF])
    box.add_freejoint(name=f"{BOX}_joint")
    box.add_geom(
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[BOX_HALF] * 3,
        mass=0.1,
        friction=[1.0, 0.01, 0.001],
        condim=4,
        rgba=[0.9, 0.45, 0.1, 1.0],
    )
    add_bin(cfg, w)
    # The arm's links touch the table, the box and the bin (never each other): the arm
    # alone does not collide, and a policy must not learn to reach through the table.
    for g in spec.joint(robot.arm_joints[0]).parent.find_all(mujoco.mjtObj.mjOBJ_GEOM):
        if g.contype == 0 and g.conaffinity == 0:
            g.conaffinity = 1
    for pad, sensor in zip(PAD_GEOMS, S_TOUCH, strict=True):
        g = spec.geom(pad)
        if g is None:
            raise ValueError(f"robot {robot.name!r} has no finger-pad geom {pad!r}")
        site = g.parent.add_site(
            name=f"{sensor}_zone",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=list(g.pos),
            size=[s + 0.002 for s in g.size],
            group=4,
        )
        spec.add_sensor(name=sensor, type=mujoco.mjtSensor.mjSENS_TOUCH,
                        objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site.name)
    for name, kind, objtype, obj in (
        (S_TOOL, mujoco.mjtSensor.mjSENS_FRAMEPOS, mujoco.mjtObj.mjOBJ_SITE, robot.tool_site),
        (S_BOX_POS, mujoco.mjtSensor.mjSENS_FRAMEPOS, mujoco.mjtObj.mjOBJ_BODY, BOX),
        (S_BOX_QUAT, mujoco.mjtSensor.mjSENS_FRAMEQUAT, mujoco.mjtObj.mjOBJ_BODY, BOX),
    ):
        spec.add_sensor(name=name, type=kind, objtype=objtype, objname=obj)


def add_bin(cfg: PickPlaceConfig, world: mujoco.MjsBody) -> None:
    """Four walls and a (non-colliding) floor mark, centred on ``cfg.bin_xy``."""
    b = world.add_body(name=BIN, pos=[*cfg.bin_xy, 0.0])
    t, h, r = 0.005, cfg.wall_height / 2, cfg.bin_inner + 0.005
    for pos, size in (
        ((r, 0, h), (t, r + t, h)),
        ((-r, 0, h), (t, r + t, h)),
        ((0, r, h), (r + t, t, h)),
        ((0, -r, h), (r + t, t, h)),
    ):
        b.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(pos), size=list(size),
                   rgba=[0.2, 0.35, 0.7, 1.0])
    b.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, 0.0005],
               size=[r, r, 0.0005], contype=0, conaffinity=0, rgba=[0.15, 0.25, 0.5, 1])


def closed_opening(model: mujoco.MjModel) -> float:
    """Finger joint position (m) at which the pads' inner faces touch the box's sides.

    The fingers slide along their frame's x; a pad's inner face is at its x minus half-width.
    """
    left = model.geom(PAD_GEOMS[0])
    return BOX_HALF - float(left.pos[0] - left.size[0])


def solve_tool_pose(
    model: mujoco.MjModel, data: mujoco.MjData, robot: RobotSpec, pos: np.ndarray, yaw: float,
    iters: int = 150,
) -> float:
    """Damped least-squares IK from ``data.qpos``: returns the final position error, m.

    Moves ``data``'s arm joints so the tool site is at ``pos`` (world, m), pointing down with
    the fingers closing along the box face normal of yaw ``yaw`` (rad).
    """
    site = model.site(robot.tool_site).id
    qadr = [int(model.joint(j).qposadr[0]) for j in robot.arm_joints]
    dofs = [int(model.joint(j).dofadr[0]) for j in robot.arm_joints]
    xd = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    rd = np.column_stack([xd, np.cross(down, xd), down])
    jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    for _ in range(iters):
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        r = data.site_xmat[site].reshape(3, 3)
        err = np.concatenate([pos - data.site_xpos[site],
                              0.5 * np.cross(r, rd, axis=0).sum(axis=1)])
        if np.abs(err).max() < 1e-4:
            break
        mujoco.mj_jacSite(model, data, jp, jr, site)
        jac = np.vstack([jp[:, dofs], jr[:, dofs]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), err)
        data.qpos[qadr] += np.clip(dq, -0.2, 0.2)
    mujoco.mj_kinematics(model, data)
    return float(np.linalg.norm(pos - data.site_xpos[site]))


def held_box_table(
    model: mujoco.MjModel, robot: RobotSpec, cfg: PickPlaceConfig, rows: int = 96, seed: int = 7
) -> np.ndarray:
    """Full ``qpos`` rows (rows, nq) of curriculum starts, the tool over the box's centre.

    A quarter each: the box held between the closed fingers on the table in the pick area;
    held 3-22 cm up somewhere between the pick area and the bin; held 12-22 cm above the
    bin's inside; and the open gripper around the box on the table (the grasp still to do).
    Random yaw within the config's range.  Rows whose IK misses by more than 5 mm are
    dropped.  Solved on the host once (about 0.4 s).
    """
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    home = np.asarray(robot.default_pose, float)
    qadr = [int(model.joint(j).qposadr[0]) for j in robot.joint_names]
    grip = model.joint(robot.gripper_joints[0])
    mirror = [
        int(model.jnt_qposadr[model.eq_obj1id[e]])
        for e in range(model.neq)
        if model.eq_type[e] == mujoco.mjtEq.mjEQ_JOINT and model.eq_obj2id[e] == grip.id
    ]
    box_adr = int(model.joint(f"{BOX}_joint").qposadr[0])
    lo, hi, bin_xy = np.array(cfg.box_low), np.array(cfg.box_high), np.array(cfg.bin_xy)
    opening = closed_opening(model) - 0.0005
    out = []
    for i in range(rows):
        kind = i % 4
        pick = lo + (hi - lo) * rng.random(2)
        if kind in (0, 3):
            box = np.array([*pick, BOX_HALF])
        elif kind == 1:
            f = rng.random()
            box = np.array([*(pick + f * (bin_xy - pick)), rng.uniform(0.05, 0.22)])
        else:
            off = rng.uniform(-0.04, 0.04, 2)
            box = np.array([*(bin_xy + off), rng.uniform(cfg.wall_height + 0.04, 0.22)])
        yaw = rng.uniform(-cfg.yaw_range, cfg.yaw_range)
        data.qpos[:] = model.qpos0
        data.qpos[qadr] = home
        tool = box + np.array([0.0, 0.0, GRASP_DEPTH])
        if solve_tool_pose(model, data, robot, tool, yaw) > 0.005:
            continue
        q = data.qpos.copy()
        q[int(grip.qposadr[0])] = opening if kind < 3 else float(model.jnt_range[grip.id, 1])
        q[mirror] = q[int(grip.qposadr[0])]
        q[box_adr : box_adr + 3] = box
        q[box_adr + 3 : box_adr + 7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        out.append(q)
    if not out:
        raise ValueError(f"robot {robot.name!r}: no held-box start pose was reachable")
    return np.stack(out)
