"""A scripted pick-and-place teacher: the action a privileged IK controller takes in any state.

It reads the simulator's true state (box pose, finger-pad contacts, the tool's pose) and the
task's own action map, so it is a *teacher* for distillation (:mod:`karakuri.policies.trainers.
dagger`), never a policy input: the student sees only the task's policy observations.  It is
stateless (the phase is decided from the state alone, and the only thing it reads that the
student cannot is the true state, not a memory of its own), so it can label any state a
student visits, which DAgger needs.  (A variant that moved the *target* smoothly from the last
one, to suit the safety filter, made the action depend on the last target, which the student
does not observe: its DAgger run fell to 0 % success by the fifth iteration.)

Phases, per world:

1. box in the bin and not held: open, tool to ``clear_z`` over the bin;
2. held: lift slowly (``slow_step_m``) while the squeeze builds, until the box is
   ``slow_lift_m`` off the table, then the tool up to ``lift_z`` where it is, then over the
   bin at ``carry_z``; once the box is within ``release_m`` of the bin's centre, open (the
   box drops into the bin);
3. otherwise (box on the table): open the hand; tool over the box at ``hover_z`` with the
   fingers across the box's folded yaw; once within ``align_m`` of it (in xy), down to the
   box; once at it, close.  A hand that closed on nothing (a finger under ``missed_m``) opens
   and goes back up.

The arm action is one damped-least-squares step of the tool's position and orientation error
(the same step as the scripted test in ``tests/sim/test_pick_place_task.py``), divided by the
action scale and clipped to [-1, 1]; the gripper action is +1 (open) or -1 (squeeze).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from karakuri.sim.env import BatchedEnv
from karakuri.sim.tasks.pick_place import BOX_HALF, PickPlace


@dataclass(frozen=True)
class ExpertConfig:
    """Heights and tolerances of the scripted teacher, m (world frame).

    Attributes:
        hover_z: Tool height over the box centre before descending.
        grasp_dz: Tool height over the box centre when closing.
        align_m: Horizontal tool-to-box distance under which the tool descends.
        grasp_m: Tool-to-grasp-point distance under which the hand closes.
        lift_z: A held box is lifted straight up until the tool is this high (the box then
            clears the 8 cm bin walls).
        carry_z: Tool height while carrying.
        release_m: Horizontal distance of the box from the bin centre under which it is let
            go (the bin's inside is ``bin_inner`` from the centre).
        clear_z: Tool height over the bin after the release.
        missed_m: A finger closer than this to closed, with nothing held: missed.
        slow_lift_m: A held box is lifted slowly until it is this far off the table: the
            filter ramps the gripper's target at 0.1 m/s, so the squeeze builds over ~0.2 s
            (lifting at full speed at the first touch let the box slip out in the carry).
        slow_step_m: The tool goal's height above the tool while lifting slowly.
        damping: Damping of the least-squares step, (m or rad)^2.
        gain: The step times this: the action is a target relative to the *measured* pose,
            so the servo's sag under gravity leaves an error of about sag / gain.
    """

    hover_z: float = 0.06
    grasp_dz: float = 0.005
    align_m: float = 0.012
    grasp_m: float = 0.012
    lift_z: float = 0.13
    carry_z: float = 0.15
    release_m: float = 0.04
    clear_z: float = 0.26
    missed_m: float = 0.012
    slow_lift_m: float = 0.015
    slow_step_m: float = 0.006
    damping: float = 1e-3
    gain: float = 1.0


class PickPlaceExpert:
    """The teacher for one :class:`BatchedEnv` of the pick_place task (CPU state).

    Args:
        env: The env (its task must be :class:`PickPlace`).
        config: Heights and tolerances.
    """

    def __init__(self, env: BatchedEnv, config: ExpertConfig | None = None) -> None:
        if not isinstance(env.task, PickPlace):
            raise TypeError(f"PickPlaceExpert needs the pick_place task, got {env.task.name!r}")
        self.env, self.cfg = env, config or ExpertConfig()
        m = env.model
        self.model, self.data = m, mujoco.MjData(m)
        self.site = m.site(env.robot.tool_site).id
        self.dofs = [int(m.joint(j).dofadr[0]) for j in env.robot.arm_joints]
        task = env.task
        self.bin_xy = np.array(task.cfg.bin_xy, np.float64)
        self.arm_scale = task.cfg.arm_scale
        self.grip_adr = task._grip_adr

    def act(self) -> torch.Tensor:
        """The teacher's action for every world's current state. Shape: (B, a), in [-1, 1]."""
        env = self.env
        state = env.task._state(env.physics)
        qpos = env.physics.qpos.double().cpu().numpy()
        box = state["box"].double().cpu().numpy()
        yaw = env.task.signals(env.physics)["object_pose"][:, 3].double().cpu().numpy()
        held = state["grasped"].cpu().numpy()
        in_bin = state["in_bin"].cpu().numpy()
        out = np.zeros((env.num_worlds, env.action_size))
        for w in range(env.num_worlds):
            goal, goal_yaw, grip = self._plan(qpos[w], box[w], float(yaw[w]), bool(held[w]),
                                              bool(in_bin[w]))
            step = self._ik_step(goal, goal_yaw)
            out[w, :-1] = np.clip(step / self.arm_scale, -1.0, 1.0)
            out[w, -1] = grip
        return torch.as_tensor(out, dtype=torch.float32, device=env.device)

    def _plan(self, qpos: np.ndarray, box: np.ndarray, yaw: float, held: bool,
              in_bin: bool) -> tuple[np.ndarray, float | None, float]:
        """(tool goal (3,), fingers' yaw or None to keep the current one, gripper action)."""
        c, d = self.cfg, self.data
        d.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, d)
        tool = d.site_xpos[self.site]
        over_bin = np.append(self.bin_xy, c.carry_z)
        if in_bin and not held:
            return np.append(self.bin_xy, c.clear_z), None, 1.0
        if held:
            if box[2] < BOX_HALF + c.slow_lift_m:  # slowly at first: the squeeze builds
                return tool + np.array([0.0, 0.0, c.slow_step_m]), None, -1.0
            if tool[2] < c.lift_z and np.linalg.norm(tool[:2] - self.bin_xy) > 0.05:
                return np.append(tool[:2], c.carry_z), None, -1.0  # up before across
            near_bin = np.linalg.norm(box[:2] - self.bin_xy) < c.release_m
            return over_bin, None, (1.0 if near_bin else -1.0)
        grasp_at = box + np.array([0.0, 0.0, c.grasp_dz])
        hover = box + np.array([0.0, 0.0, c.hover_z])
        xy = float(np.linalg.norm(tool[:2] - box[:2]))
        if qpos[self.grip_adr] < c.missed_m and np.linalg.norm(tool - grasp_at) < 0.05:
            return hover, yaw, 1.0  # closed on nothing: open and back up
        if np.linalg.norm(tool - grasp_at) < c.grasp_m:
            return grasp_at, yaw, -1.0
        if xy < c.align_m or (xy < 2 * c.align_m and tool[2] < hover[2] - 0.01):
            return grasp_at, yaw, 1.0  # down (and once on the way down, on down)
        if xy > 2 * c.align_m and tool[2] < hover[2] - 0.03:
            return np.append(tool[:2], hover[2]), yaw, 1.0  # up first: do not sweep the box
        return hover, yaw, 1.0

    def _ik_step(self, goal: np.ndarray, goal_yaw: float | None) -> np.ndarray:
        """One damped least-squares joint step toward ``goal``, rad (qpos already set)."""
        m, d = self.model, self.data
        r = d.site_xmat[self.site].reshape(3, 3)
        err = np.zeros(6)
        err[:3] = goal - d.site_xpos[self.site]
        # fingers across the box: tool x along (sin, -cos, 0), z down.  The box looks the same
        # every quarter turn, the fingers every half turn: turn to the nearest of the four
        now = math.atan2(-r[0, 0], r[1, 0])  # the yaw the current x matches
        if goal_yaw is None:  # keep the yaw, keep pointing down
            goal_yaw = now
        goal_yaw += round((now - goal_yaw) / (math.pi / 2)) * (math.pi / 2)
        xd = np.array([math.sin(goal_yaw), -math.cos(goal_yaw), 0.0])
        rd = np.column_stack([xd, np.cross([0.0, 0.0, -1.0], xd), [0.0, 0.0, -1.0]])
        err[3:] = 0.5 * sum(np.cross(r[:, i], rd[:, i]) for i in range(3))
        mujoco.mj_comPos(m, d)
        jp, jr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        mujoco.mj_jacSite(m, d, jp, jr, self.site)
        jac = np.vstack([jp[:, self.dofs], jr[:, self.dofs]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + self.cfg.damping * np.eye(6), err)
        return self.cfg.gain * dq


def expert_for(env: BatchedEnv) -> PickPlaceExpert:
    """The teacher of ``env``'s task (only pick_place has one)."""
    return PickPlaceExpert(env)
