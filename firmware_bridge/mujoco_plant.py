"""The virtual MCU's plant: a robot's MJCF driven through its position actuators.

This is the "motors and encoders" half of the virtual MCU (``virtual_mcu.py``); the MCU's
logic is :class:`~karakuri.firmware_bridge.mcu_core.McuCore`.  Needs MuJoCo.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from karakuri.robot.spec import RobotSpec


class MujocoPlant:
    """The robot's MJCF, driven through its position actuators. Joints follow the spec's order.

    Args:
        spec: The robot; ``spec.model_path`` must be an MJCF with one position actuator per
            controlled joint.
        model: A compiled scene to simulate instead of the bare robot: the robot plus a task's
            objects and sensors (``karakuri.sim.env.build_model``).
    """

    def __init__(self, spec: RobotSpec, model: mujoco.MjModel | None = None) -> None:
        if model is None and not spec.model_path:
            raise ValueError(f"robot {spec.name!r}: no model_path; the virtual MCU needs an MJCF")
        self.model = model if model is not None else mujoco.MjModel.from_xml_path(
            str(spec.model_path))
        self.data = mujoco.MjData(self.model)
        m = self.model
        jids = [self._id(mujoco.mjtObj.mjOBJ_JOINT, j, spec) for j in spec.joint_names]
        self.qadr = np.array([m.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([m.jnt_dofadr[j] for j in jids])
        act_of = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)
                  if m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT}
        missing = [spec.joint_names[i] for i, j in enumerate(jids) if j not in act_of]
        if missing:
            raise ValueError(f"{spec.model_path}: joints {missing} have no position actuator")
        self.act = np.array([act_of[j] for j in jids])
        self.kp = m.actuator_gainprm[self.act, 0].copy()
        self.kv = -m.actuator_biasprm[self.act, 2]
        if np.any(self.kp <= 0):
            raise ValueError(f"{spec.model_path}: the actuators of "
                             f"{[spec.joint_names[i] for i in np.flatnonzero(self.kp <= 0)]} "
                             "are not position servos (kp <= 0)")
        # The feed-forward is folded into ctrl (see step), which is then not a position: the
        # reference is already clipped to the limits, so the ctrl range must not clip it again.
        m.actuator_ctrllimited[self.act] = 0
        self.site = (self._id(mujoco.mjtObj.mjOBJ_SITE, spec.tool_site, spec)
                     if spec.tool_site else -1)
        self.data.qpos[self.qadr] = spec.default_pose
        self.data.ctrl[self.act] = spec.default_pose
        mujoco.mj_forward(m, self.data)

    def _id(self, kind: Any, name: str, spec: RobotSpec) -> int:
        i = mujoco.mj_name2id(self.model, kind, name)
        if i < 0:
            raise ValueError(f"{spec.model_path} has no {kind.name[6:].lower()} named {name!r}")
        return int(i)

    @property
    def dt(self) -> float:
        """Physics step, s."""
        return float(self.model.opt.timestep)

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (rad or m), velocities (rad/s or m/s), actuator efforts (N·m or N)."""
        d = self.data
        return d.qpos[self.qadr].copy(), d.qvel[self.dadr].copy(), d.actuator_force[self.act].copy()

    def step(self, q_ref: np.ndarray, v_ref: np.ndarray, tau_ff: np.ndarray) -> None:
        """Apply the servo references, then advance one physics step.

        The servo law is ``clip(kp (q_ref − q) + kv (v_ref − dq) + tau_ff, ±effort limit)``:
        the position actuator computes ``kp (ctrl − q) − kv dq`` and clips it to its force
        range, so ``ctrl = q_ref + (kv v_ref + tau_ff) / kp`` puts both feed-forwards inside
        that clip (as applied joint force they would bypass it).  The actuator keeps MuJoCo's
        implicit damping, which a hand-computed torque would lose.

        Args:
            q_ref: Position reference, rad or m. Shape: (n_joints,).
            v_ref: Velocity feed-forward, rad/s or m/s. Shape: (n_joints,).
            tau_ff: Effort feed-forward, N·m or N. Shape: (n_joints,).
        """
        self.data.ctrl[self.act] = q_ref + (self.kv * v_ref + tau_ff) / self.kp
        mujoco.mj_step(self.model, self.data)
