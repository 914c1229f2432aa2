"""Reach: bring the tool site to a random target in a workspace box, and hold it there.

Observations are what a real arm provides: joint positions and velocities, the target (the
``command`` signal, metres in the base frame) and the last action.  Actions are deltas of the
arm's joint position targets from the measured pose; the gripper is held open.  Success: the
tool is within ``success_radius`` of the target at the end of the episode.

Targets come from a box (the sidecar's ``tasks: {reach: {target_low, target_high}}``, as for
our industrial arm) or, for any other arm, from the tool positions the arm reaches near its
home pose; action scale and episode length follow the robot's servos and velocity limits
(:mod:`karakuri.sim.tasks.reach_targets`, :func:`reach_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import mujoco
import numpy as np
import torch

from karakuri.robot.spec import RobotSpec
from karakuri.sim.physics import Physics
from karakuri.sim.rewards import tolerance
from karakuri.sim.task import ActionMap, ObsTerm, Randomization, Task, TaskContext
from karakuri.sim.task_helpers import HomePose
from karakuri.sim.tasks import reach_targets as rt
from karakuri.sim.tasks.reach_defaults import SUCCESS_RADIUS_M
from karakuri.sim.terms import robot_obs_terms

TOOL_SENSOR = "reach_tool_pos"


@dataclass(frozen=True)
class ReachConfig:
    """Reach settings.

    Attributes:
        ctrl_dt: Control period, s (a whole multiple of the physics dt).
        episode_s: Episode length, s.
        target_low: Lower corner of the target box, m, base frame.
        target_high: Upper corner of the target box, m, base frame.
        targets: ``box`` (uniform in the box) or ``workspace`` (tool positions the arm
            reaches within ``workspace_radius`` of home, above ``min_height``).
        workspace_radius: Half-width of the joint range around home for workspace targets, rad.
        min_height: Lowest workspace target, m, world z.
        action_scale: Joint target change per unit action, rad (one value, or one per arm
            joint).
        init_noise: Half-width of the uniform noise on the initial arm pose, rad.
        success_radius: Tool-to-target distance counted as success, m.
        randomize: Domain randomization ranges.
    """

    ctrl_dt: float = 0.02
    episode_s: float = 1.5
    target_low: tuple[float, float, float] = (0.30, -0.10, 0.15)
    target_high: tuple[float, float, float] = (0.60, 0.40, 0.45)
    targets: Literal["box", "workspace"] = "box"
    workspace_radius: float = 0.4
    min_height: float = 0.05
    action_scale: float | tuple[float, ...] = 0.05
    init_noise: float = 0.05
    success_radius: float = SUCCESS_RADIUS_M
    randomize: Randomization = field(default_factory=Randomization)

    def __post_init__(self) -> None:
        if any(lo >= hi for lo, hi in zip(self.target_low, self.target_high, strict=True)):
            raise ValueError(
                f"target_low {self.target_low} must be below target_high {self.target_high}"
            )
        scales = np.atleast_1d(np.asarray(self.action_scale, dtype=float))
        if self.success_radius <= 0 or np.any(scales <= 0):
            raise ValueError("success_radius and action_scale must be > 0")
        if self.targets not in ("box", "workspace"):
            raise ValueError(f"targets must be 'box' or 'workspace', got {self.targets!r}")
        if self.workspace_radius <= 0:
            raise ValueError(f"workspace_radius must be > 0 rad, got {self.workspace_radius}")


def reach_config(robot: RobotSpec, **overrides: object) -> ReachConfig:
    """Reach's settings for ``robot``: the sidecar's ``tasks.reach`` values, the rest derived.

    A sidecar box (``target_low`` and ``target_high``) selects box targets; without one the
    targets come from the arm's workspace around home.  ``action_scale`` and ``episode_s``
    not given are derived from the servos and velocity limits (module ``reach_targets``).

    Raises:
        ValueError: a bad sidecar value, naming the key.
    """
    given = dict((robot.extra.get("tasks") or {}).get("reach") or {})
    given.update(overrides)
    ctrl_dt = float(given.get("ctrl_dt", ReachConfig.ctrl_dt))
    kw: dict[str, object] = {}
    if "target_low" in given or "target_high" in given:
        if not ("target_low" in given and "target_high" in given):
            raise ValueError(
                f"robot {robot.name!r}: tasks.reach needs both target_low and target_high"
            )
        kw.update(
            targets="box",
            target_low=tuple(float(v) for v in given["target_low"]),
            target_high=tuple(float(v) for v in given["target_high"]),
        )
    else:
        kw["targets"] = "workspace"
    radius = float(given.get("workspace_radius", ReachConfig.workspace_radius))
    kw["workspace_radius"] = radius
    scale = given.get("action_scale")
    if scale is None:
        kw["action_scale"] = rt.derived_action_scale(robot)
    elif isinstance(scale, (list, tuple)):
        kw["action_scale"] = tuple(float(v) for v in scale)
    else:
        kw["action_scale"] = float(scale)  # type: ignore[arg-type]
    kw["episode_s"] = float(
        given.get("episode_s") or rt.derived_episode_s(robot, radius, ctrl_dt)  # type: ignore[arg-type]
    )
    for k in ("ctrl_dt", "init_noise", "success_radius", "min_height", "randomize"):
        if k in given:
            kw[k] = given[k]
    return ReachConfig(**kw)  # type: ignore[arg-type]


class Reach(Task):
    """The reach task (see module docstring)."""

    name = "reach"
    extra_signals: ClassVar[dict[str, int]] = {"command": 3}

    def __init__(self, robot: RobotSpec, config: ReachConfig | None = None) -> None:
        if not robot.tool_site:
            raise ValueError(
                f"reach needs a tool site; robot {robot.name!r} names none: give tool_site (an "
                "MJCF site) or tool_frame: {parent: BODY, pos: [x, y, z]} in its sidecar"
            )
        self.cfg = config or reach_config(robot)
        super().__init__(robot, self.cfg.ctrl_dt, self.cfg.episode_s)
        scale = np.atleast_1d(np.asarray(self.cfg.action_scale, dtype=float))
        if scale.size not in (1, robot.n_arm):
            raise ValueError(
                f"reach action_scale has {scale.size} values; robot {robot.name!r} has "
                f"{robot.n_arm} arm joints (give one value, or one per arm joint)"
            )
        self._scale = tuple(np.broadcast_to(scale, (robot.n_arm,)).tolist())

    @property
    def obs_terms(self) -> list[ObsTerm]:
        """Robot-available terms, then the privileged tool position and error."""
        return [
            *robot_obs_terms(self.robot, ObsTerm("target", "command")),
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
        return ActionMap.for_robot(self.robot, "joint_position_delta", self._scale,
                                   joints=self.robot.arm_joints)

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
            ]
            if self.cfg.targets == "box"
            else [0.0, 0.0, 0.0],
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
        self._tool = ctx.sensor(TOOL_SENSOR)
        self._gen = ctx.generator
        self._dev = ctx.device
        self.target = torch.zeros(ctx.num_worlds, 3, device=ctx.device)
        self._lo = torch.tensor(self.cfg.target_low, device=ctx.device)
        self._hi = torch.tensor(self.cfg.target_high, device=ctx.device)
        self._pool = self._target_pool(m).to(ctx.device)
        # made here, not per reset: building or slicing by device tensors waits for the GPU
        self._home = HomePose.bind(m, self.robot, ctx.device, self.cfg.init_noise)
        couple = rt.joint_couplings(m, self.robot)
        self._coupled_adr = torch.tensor([c[0] for c in couple], dtype=torch.long,
                                         device=ctx.device)
        self._coupled_src = torch.tensor([c[1] for c in couple], dtype=torch.long,
                                         device=ctx.device)
        self._coupled_poly = torch.tensor(np.array([c[2] for c in couple]).reshape(-1, 5),
                                          dtype=torch.float32, device=ctx.device)
        self._coupled_q0 = torch.tensor([[c[3], c[4]] for c in couple],
                                        dtype=torch.float32, device=ctx.device).reshape(-1, 2)

    def _target_pool(self, model: mujoco.MjModel) -> torch.Tensor:
        """Workspace targets (K, 3), m; for box targets, check the box and return none.

        Raises:
            ValueError: the home pose is outside the box or part of the box is out of reach.
        """
        if self.cfg.targets == "box":
            problems = rt.check_box(model, self.robot, self.cfg.target_low, self.cfg.target_high)
            if problems:
                raise ValueError(f"reach on robot {self.robot.name!r}: " + "; ".join(problems))
            return torch.zeros(1, 3)
        radius = rt.joint_radius(self.robot, self.cfg.workspace_radius, self.cfg.episode_s)
        pool = rt.workspace_pool(model, self.robot, radius, self.cfg.min_height)
        return torch.tensor(pool, dtype=torch.float32)

    def reset_worlds(
        self, mask: torch.Tensor, physics: Physics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New targets and a noisy home pose for the masked worlds."""
        n = physics.num_worlds
        if self.cfg.targets == "box":
            u = torch.rand(n, 3, device=self._dev, generator=self._gen)
            new = self._lo + (self._hi - self._lo) * u
        else:
            pick = torch.randint(
                self._pool.shape[0], (n,), device=self._dev, generator=self._gen
            )
            new = self._pool[pick]
        self.target = torch.where(mask[:, None], new, self.target)
        qpos, q = self._home.sample(n, self._gen)
        # joints an equality ties to a commanded one (a mirrored finger) follow it; every
        # other passive joint keeps its model default
        if self._coupled_adr.numel():
            x = q[:, self._coupled_src] - self._coupled_q0[:, 1]
            powers = torch.stack([x**k for k in range(5)], dim=-1)
            qpos[:, self._coupled_adr] = self._coupled_q0[:, 0] + (
                powers * self._coupled_poly
            ).sum(-1)
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
