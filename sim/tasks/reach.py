"""Reach: bring the tool site to a random target in a workspace box, and hold it there.

Observations are what a real arm provides: joint positions and velocities, the target (the
``command`` signal, metres in the base frame) and the last action.  Actions are deltas of the
arm's joint position targets from the measured pose; the gripper is held open.  Success: the
tool is within ``success_radius`` of the target at the end of the episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import mujoco
import torch

from karakuri.robot.spec import RobotSpec
from karakuri.sim.physics import Physics
from karakuri.sim.rewards import tolerance
from karakuri.sim.task import ActionMap, ObsTerm, Randomization, Task, TaskContext

TOOL_SENSOR = "reach_tool_pos"


@dataclass(frozen=True)
class ReachConfig:
    """Reach settings.

    Attributes:
        ctrl_dt: Control period, s (a whole multiple of the physics dt).
        episode_s: Episode length, s.
        target_low: Lower corner of the target box, m, base frame.
        target_high: Upper corner of the target box, m, base frame.
        action_scale: Joint target change per unit action, rad.
        init_noise: Half-width of the uniform noise on the initial arm pose, rad.
        success_radius: Tool-to-target distance counted as success, m.
        randomize: Domain randomization ranges.
    """

    ctrl_dt: float = 0.02
    episode_s: float = 1.5
    target_low: tuple[float, float, float] = (0.30, -0.10, 0.15)
    target_high: tuple[float, float, float] = (0.60, 0.40, 0.45)
    action_scale: float = 0.05
    init_noise: float = 0.05
    success_radius: float = 0.02
    randomize: Randomization = field(default_factory=Randomization)

    def __post_init__(self) -> None:
        if any(lo >= hi for lo, hi in zip(self.target_low, self.target_high, strict=True)):
            raise ValueError(
                f"target_low {self.target_low} must be below target_high {self.target_high}"
            )
        if self.success_radius <= 0 or self.action_scale <= 0:
            raise ValueError("success_radius and action_scale must be > 0")


class Reach(Task):
    """The reach task (see module docstring)."""

    name = "reach"
    extra_signals: ClassVar[dict[str, int]] = {"command": 3}

    def __init__(self, robot: RobotSpec, config: ReachConfig | None = None) -> None:
        self.cfg = config or ReachConfig()
        super().__init__(robot, self.cfg.ctrl_dt, self.cfg.episode_s)
        if not robot.tool_site:
            raise ValueError(f"reach needs a tool site; robot {robot.name!r} names none")

    @property
    def obs_terms(self) -> list[ObsTerm]:
        """Robot-available terms, then the privileged tool position and error."""
        return [
            ObsTerm(
                "joint_pos_rel", "joint_pos", offset=tuple(self.robot.default_pose), noise=0.005
            ),
            ObsTerm("joint_vel", "joint_vel", scale=0.1, noise=0.05),
            ObsTerm("target", "command"),
            ObsTerm("last_action", "last_action"),
            ObsTerm("tool_pos", "tool_pos", privileged=True),
            ObsTerm("tool_error", "tool_error", scale=5.0, privileged=True),
        ]

    @property
    def reward_scales(self) -> dict[str, float]:
        """Reward term scales."""
        return {"reach": 1.0, "precision": 2.0, "action_rate": -0.05, "joint_vel": -0.002}

    @property
    def action_map(self) -> ActionMap:
        """Deltas on the arm's joints; the gripper is held at its default."""
        r = self.robot
        return ActionMap(
            kind="joint_position_delta",
            joints=tuple(range(r.n_arm)),
            scale=(self.cfg.action_scale,) * r.n_arm,
            hold=tuple(r.default_pose),
            lower=tuple(r.lower),
            upper=tuple(r.upper),
            default_pose=tuple(r.default_pose),
        )

    @property
    def randomization(self) -> Randomization:
        """As configured."""
        return self.cfg.randomize

    def build_scene(self, spec: mujoco.MjSpec) -> None:
        """Add the tool-position sensor and a visual-only target marker."""
        spec.add_sensor(
            name=TOOL_SENSOR,
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname=self.robot.tool_site,
        )
        body = spec.worldbody.add_body(
            name="reach_target",
            mocap=True,
            pos=[
                (lo + hi) / 2
                for lo, hi in zip(self.cfg.target_low, self.cfg.target_high, strict=True)
            ],
        )
        body.add_geom(
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[self.cfg.success_radius, 0, 0],
            contype=0,
            conaffinity=0,
            rgba=[0.1, 0.8, 0.2, 0.5],
        )

    def bind(self, ctx: TaskContext) -> None:
        """Resolve the sensor and allocate per-world targets."""
        m = ctx.model
        sid = m.sensor(TOOL_SENSOR).id
        adr = int(m.sensor_adr[sid])
        self._tool = slice(adr, adr + 3)
        self._gen = ctx.generator
        self._dev = ctx.device
        self.target = torch.zeros(ctx.num_worlds, 3, device=ctx.device)
        self._lo = torch.tensor(self.cfg.target_low, device=ctx.device)
        self._hi = torch.tensor(self.cfg.target_high, device=ctx.device)
        self._qpos0 = torch.as_tensor(m.qpos0, dtype=torch.float32, device=ctx.device)
        self._arm_qadr = torch.tensor(
            [m.jnt_qposadr[m.joint(j).id] for j in self.robot.joint_names], device=ctx.device
        )
        # made here, not per reset: building or slicing by device tensors waits for the GPU
        self._home = torch.tensor(self.robot.default_pose.tolist(), device=ctx.device)
        self._finger = int(m.jnt_qposadr[m.joint(self.robot.joint_names[-1]).id])

    def reset_worlds(
        self, mask: torch.Tensor, physics: Physics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New targets and a noisy home pose for the masked worlds."""
        n = physics.num_worlds
        u = torch.rand(n, 3, device=self._dev, generator=self._gen)
        self.target = torch.where(mask[:, None], self._lo + (self._hi - self._lo) * u, self.target)
        qpos = self._qpos0.expand(n, -1).clone()
        noise = torch.rand(n, self.robot.n_joints, device=self._dev, generator=self._gen) * 2 - 1
        noise[:, self.robot.n_arm :] = 0.0
        qpos[:, self._arm_qadr] = self._home + self.cfg.init_noise * noise
        # the mirrored finger follows the commanded one
        qpos[:, self._finger + 1 :] = qpos[:, self._finger : self._finger + 1]
        return qpos, torch.zeros(n, physics.qvel.shape[1], device=self._dev)

    def set_command(self, command: torch.Tensor) -> None:
        """Fixed targets, m, base frame. Shape: (N, 3)."""
        if command.shape != self.target.shape:
            raise ValueError(
                f"reach targets have shape {tuple(self.target.shape)}, got {tuple(command.shape)}"
            )
        self.target = command.to(self.target)

    def marker_positions(self, world: int) -> dict[str, list[float]]:
        """Mocap marker positions for rendering world ``world`` (the target sphere)."""
        return {"reach_target": self.target[world].tolist()}

    def tool_pos(self, physics: Physics) -> torch.Tensor:
        """Tool site position, m, world frame. Shape: (N, 3)."""
        return physics.sensordata[:, self._tool]

    def signals(self, physics: Physics) -> dict[str, torch.Tensor]:
        """``command`` (the target) and the privileged tool position and error."""
        tool = self.tool_pos(physics)
        return {"command": self.target, "tool_pos": tool, "tool_error": self.target - tool}

    def reward_terms(
        self, physics: Physics, action: torch.Tensor, last_action: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Coarse and fine distance shaping, action smoothness, joint speed."""
        d = torch.linalg.norm(self.target - self.tool_pos(physics), dim=-1)
        return {
            "reach": 1.0 - torch.tanh(d / 0.1),
            "precision": tolerance(d, margin=0.02, bounds=(0.0, 0.005)),
            "action_rate": torch.sum((action - last_action) ** 2, dim=-1),
            "joint_vel": torch.sum(physics.qvel[:, : self.robot.n_arm] ** 2, dim=-1),
        }

    def success(self, physics: Physics) -> torch.Tensor:
        """Tool within ``success_radius`` of the target."""
        return (
            torch.linalg.norm(self.target - self.tool_pos(physics), dim=-1)
            < self.cfg.success_radius
        )

    def metrics(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Final tool-to-target distance, m."""
        return {"final_distance": torch.linalg.norm(self.target - self.tool_pos(physics), dim=-1)}
