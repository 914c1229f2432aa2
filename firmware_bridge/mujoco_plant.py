"""The one MuJoCo plant: a robot (or a task's scene) driven through its position actuators.

The "motors and encoders" every simulated robot behind a link needs: the virtual MCU
(``virtual_mcu.py``, whose logic is :class:`~karakuri.firmware_bridge.mcu_core.McuCore`), the
simulated ros2_control robot (``ros2_sim.py``) and the sim-in-the-loop scene (a task's compiled
scene from :class:`karakuri.sim.scene_plant.ScenePlant`, passed as ``model``).  One class steps
the model with position servo targets and reads joint positions, velocities and efforts;
joint indices come from :class:`karakuri.robot.mjcf_index.JointIndex`.  Needs MuJoCo.
"""

from __future__ import annotations

import mujoco
import numpy as np

from karakuri.robot.mjcf_index import JointIndex, MjcfIndexError
from karakuri.robot.spec import RobotSpec


class MujocoPlant:
    """The robot's MJCF, driven through its position actuators. Joints follow the spec's order.

    Args:
        spec: The robot; ``spec.model_path`` must be an MJCF with one position actuator per
            controlled joint (the first actuator on a joint is the one driven, as in training).
        model: A compiled scene to simulate instead of the bare robot: the robot plus a task's
            objects and sensors (``karakuri.sim.env.build_model``).

    Attributes:
        model, data: The MuJoCo model and its one state.
        index: Where the spec's joints live in ``model``.
        qadr, dadr, act: ``index.qpos``, ``index.dof``, ``index.act``. Shape: (n_joints,).
        kp, kv: The servos' position gain (N·m/rad or N/m) and damping (N·m·s/rad or N·s/m).
        site: Id of the spec's tool site, -1 if none.
    """

    def __init__(self, spec: RobotSpec, model: mujoco.MjModel | None = None) -> None:
        if model is None and not spec.model_path:
            raise ValueError(f"robot {spec.name!r}: no model_path; the plant needs an MJCF")
        self.spec = spec
        self.model = m = model if model is not None else mujoco.MjModel.from_xml_path(
            str(spec.model_path))
        self.data = mujoco.MjData(m)
        try:
            self.index = JointIndex.build(m, spec.joint_names)
        except MjcfIndexError as e:
            raise ValueError(f"{spec.model_path}: {e}") from e
        self.qadr, self.dadr, self.act = self.index.qpos, self.index.dof, self.index.act
        self.kp = m.actuator_gainprm[self.act, 0].copy()
        self.kv = -m.actuator_biasprm[self.act, 2]
        if np.any(self.kp <= 0):
            raise ValueError(f"{spec.model_path}: the actuators of "
                             f"{[spec.joint_names[i] for i in np.flatnonzero(self.kp <= 0)]} "
                             "are not position servos (kp <= 0)")
        # With feed-forwards folded into ctrl (see step), ctrl is not a position and the ctrl
        # range must not clip it; a bare position target is clipped here as the model says.
        self._limited = m.actuator_ctrllimited[self.act].astype(bool)
        self._lo = np.where(self._limited, m.actuator_ctrlrange[self.act, 0], -np.inf)
        self._hi = np.where(self._limited, m.actuator_ctrlrange[self.act, 1], np.inf)
        m.actuator_ctrllimited[self.act] = 0
        site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, spec.tool_site) \
            if spec.tool_site else -1
        if spec.tool_site and site < 0:
            raise ValueError(f"{spec.model_path} has no site named {spec.tool_site!r}")
        self.site = int(site)
        self.data.qpos[self.qadr] = spec.default_pose
        self.data.ctrl[self.act] = spec.default_pose
        mujoco.mj_forward(m, self.data)

    @property
    def dt(self) -> float:
        """Physics step, s."""
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        """Simulation time, s."""
        return float(self.data.time)

    def reset(self, q: np.ndarray, settle_s: float = 0.0) -> None:
        """Start over at joint pose ``q`` (rad or m, spec order), holding it as the target.

        Args:
            q: Joint positions and servo targets. Shape: (n_joints,).
            settle_s: Then step this long holding ``q``, s, so that equality-coupled joints
                (a mirrored finger) and contacts settle.
        """
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self.qadr] = q
        self.data.ctrl[self.act] = self._clip(q)
        for _ in range(int(settle_s / self.dt)):
            mujoco.mj_step(self.model, self.data)

    def _clip(self, q: np.ndarray) -> np.ndarray:
        """``q`` within the ctrl range where the model limits it (min/max: 2x np.clip's speed)."""
        return np.minimum(np.maximum(q, self._lo), self._hi)

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (rad or m), velocities (rad/s or m/s), actuator efforts (N·m or N).

        Returns:
            Three copies, each Shape: (n_joints,), spec order.
        """
        d = self.data
        return d.qpos[self.qadr].copy(), d.qvel[self.dadr].copy(), d.actuator_force[self.act].copy()

    def tool_position(self) -> np.ndarray:
        """The spec's tool site, world frame, m. Shape: (3,)."""
        if self.site < 0:
            raise ValueError(f"robot {self.spec.name!r} has no tool_site")
        return self.data.site_xpos[self.site].copy()

    def step(self, q_ref: np.ndarray, v_ref: np.ndarray | None = None,
             tau_ff: np.ndarray | None = None) -> None:
        """Apply the servo references, then advance one physics step.

        The servo law is ``clip(kp (q_ref − q) + kv (v_ref − dq) + tau_ff, ±effort limit)``:
        the position actuator computes ``kp (ctrl − q) − kv dq`` and clips it to its force
        range, so ``ctrl = q_ref + (kv v_ref + tau_ff) / kp`` puts both feed-forwards inside
        that clip (as applied joint force they would bypass it).  The actuator keeps MuJoCo's
        implicit damping, which a hand-computed torque would lose.  With no feed-forward
        (a plain position-commanded drive, ros2_control's), ``ctrl = q_ref`` clipped to the
        actuator's ``ctrlrange`` where the model limits it.

        Args:
            q_ref: Position reference, rad or m. Shape: (n_joints,).
            v_ref: Velocity feed-forward, rad/s or m/s. Shape: (n_joints,). None: none.
            tau_ff: Effort feed-forward, N·m or N. Shape: (n_joints,). None: none.
        """
        if v_ref is None and tau_ff is None:
            self.data.ctrl[self.act] = self._clip(q_ref)
        else:
            ff = (0.0 if v_ref is None else self.kv * v_ref) + (0.0 if tau_ff is None else tau_ff)
            self.data.ctrl[self.act] = q_ref + ff / self.kp
        mujoco.mj_step(self.model, self.data)
