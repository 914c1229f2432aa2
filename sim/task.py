"""The task contract: reset, named observation terms, named reward terms, termination, success.

A task is written once in torch over batched tensors (leading world dimension) and runs on
every physics backend and on CPU or CUDA tensors.  Observations are assembled from *signals*:
named raw tensors a real robot provides (``joint_pos``, ``joint_vel``, ``command``,
``last_action``, optional sensors) plus privileged sim-only signals for the critic.  The same
:class:`ObsTerm` list builds the observation in simulation and inside the exported policy
file, so a robot can never see an observation built differently from training.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import mujoco
import torch

from karakuri.robot.spec import RobotSpec
from karakuri.sim.physics import Physics


@dataclass(frozen=True)
class ObsTerm:
    """One observation term: ``(signals[signal][..., index] - offset) * scale``.

    Attributes:
        name: Term name, e.g. ``"joint_pos_rel"``.
        signal: The signal it reads, e.g. ``"joint_pos"``.
        scale: Multiplier after the offset (a float or one value per element).
        offset: Subtracted first (a float or one value per element), e.g. the default pose.
        privileged: True for sim-only state (critic only, never in the policy file).
        noise: Std of Gaussian noise added in simulation when randomization is on (unit of
            the signal); the policy file never adds noise.
    """

    name: str
    signal: str
    scale: float | tuple[float, ...] = 1.0
    offset: float | tuple[float, ...] = 0.0
    privileged: bool = False
    noise: float = 0.0


@dataclass(frozen=True)
class ActionMap:
    """How a raw action in [-1, 1] becomes joint position targets.

    Attributes:
        kind: ``"joint_position_delta"`` (target = measured position + scale * a) or
            ``"joint_position"`` (target = default pose + scale * a).
        joints: Indices into the spec's joints that the action drives; the others are held
            at ``hold``.
        scale: Per driven joint, rad (or m) per unit of action.
        hold: Targets for every joint (only the undriven ones are used). Shape: (n_joints,).
        lower: Joint lower limits, rad. Shape: (n_joints,).
        upper: Joint upper limits, rad. Shape: (n_joints,).
        default_pose: Home pose, rad. Shape: (n_joints,).
    """

    kind: str
    joints: tuple[int, ...]
    scale: tuple[float, ...]
    hold: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    default_pose: tuple[float, ...]

    KINDS: ClassVar[tuple[str, ...]] = ("joint_position_delta", "joint_position")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"action kind {self.kind!r} is not one of {self.KINDS}")
        if len(self.scale) != len(self.joints):
            raise ValueError(f"{len(self.scale)} scales for {len(self.joints)} driven joints")

    @property
    def size(self) -> int:
        """Action dimension."""
        return len(self.joints)

    def apply(
        self, action: torch.Tensor, joint_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map raw actions to joint targets, exactly as the policy file does.

        Args:
            action: Raw actions. Shape: (B, size).
            joint_pos: Measured joint positions, rad. Shape: (B, n_joints).

        Returns:
            (joint_target (B, n_joints) clipped to the limits, clipped action (B, size)).
        """
        a = action.clamp(-1.0, 1.0)
        idx, default, hold, scale, lo, hi = self._constants(joint_pos.device, joint_pos.dtype)
        base = joint_pos if self.kind == "joint_position_delta" else default.expand_as(joint_pos)
        target = hold.expand_as(joint_pos).clone()
        target[:, idx] = base[:, idx] + a * scale
        return torch.maximum(torch.minimum(target, hi), lo), a

    def _constants(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The map's tuples as tensors on ``device``, made once per device and dtype.

        Copying them to a GPU at every call would wait for the GPU (a host sync) every step.
        """
        key = (self, device, dtype)
        if key not in _ACTION_CONSTANTS:
            _ACTION_CONSTANTS[key] = (
                torch.tensor(self.joints, device=device),
                *(
                    torch.tensor(v, device=device, dtype=dtype)
                    for v in (self.default_pose, self.hold, self.scale, self.lower, self.upper)
                ),
            )
        return _ACTION_CONSTANTS[key]


_ACTION_CONSTANTS: dict[tuple[ActionMap, torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}


@dataclass(frozen=True)
class Randomization:
    """Domain randomization, re-sampled at every reset on every backend.

    Multipliers are uniform in ``[lo, hi]`` per world (and per element where it makes sense).

    Attributes:
        friction: Multiplier of geom sliding friction.
        mass: Multiplier of body masses.
        actuator_gain: Multiplier of position-servo stiffness (kp; kv is scaled with it).
        joint_damping: Multiplier of joint damping.
        obs_noise: Scale of each term's ``noise`` std (0 turns noise off).
        action_latency_steps: Actions are applied this many control steps late, uniform per
            world in ``[0, max]``.
    """

    friction: tuple[float, float] = (1.0, 1.0)
    mass: tuple[float, float] = (1.0, 1.0)
    actuator_gain: tuple[float, float] = (1.0, 1.0)
    joint_damping: tuple[float, float] = (1.0, 1.0)
    obs_noise: float = 0.0
    action_latency_steps: int = 0

    @property
    def changes_model(self) -> bool:
        """True when any model parameter is randomized."""
        return any(
            r != (1.0, 1.0)
            for r in (self.friction, self.mass, self.actuator_gain, self.joint_damping)
        )


@dataclass
class TaskContext:
    """What a task gets once the scene is compiled: the model, sizes, device, RNG."""

    model: mujoco.MjModel
    num_worlds: int
    device: torch.device
    generator: torch.Generator
    extra: dict[str, Any] = field(default_factory=dict)


class Task(abc.ABC):
    """One task on one robot.  Subclasses set the class attributes and the abstract methods.

    Lifecycle: ``build_scene(spec)`` edits the robot's MjSpec (objects, sensors) before
    compiling; ``bind(ctx)`` resolves names to indices; then the env calls ``reset_worlds``,
    ``signals``, ``reward_terms``, ``stage_flags``, ``terminated`` and ``success`` every
    control step.
    """

    name: ClassVar[str]
    #: Names and sizes of the non-joint signals, e.g. {"command": 3}.
    extra_signals: ClassVar[dict[str, int]] = {}
    #: Stages of a multi-stage task in the order a success passes them, e.g. ("reached",
    #: "grasped"); evaluation reports the fraction of episodes that got to each (the funnel).
    #: Empty for single-stage tasks.
    stages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, robot: RobotSpec, ctrl_dt: float, episode_s: float) -> None:
        self.robot = robot
        self.ctrl_dt = ctrl_dt
        self.episode_steps = round(episode_s / ctrl_dt)
        if self.episode_steps < 1:
            raise ValueError(f"episode_s {episode_s} is shorter than one control step {ctrl_dt}")

    @property
    @abc.abstractmethod
    def obs_terms(self) -> list[ObsTerm]:
        """Observation terms in order; privileged ones go to the critic only."""

    @property
    @abc.abstractmethod
    def reward_scales(self) -> dict[str, float]:
        """Reward term name to scale; the names must equal those of :meth:`reward_terms`."""

    @property
    @abc.abstractmethod
    def action_map(self) -> ActionMap:
        """How actions become joint targets."""

    @property
    def randomization(self) -> Randomization:
        """Domain randomization (none by default)."""
        return Randomization()

    @abc.abstractmethod
    def build_scene(self, spec: mujoco.MjSpec) -> None:
        """Add the task's objects and named sensors to the robot's MjSpec."""

    @abc.abstractmethod
    def bind(self, ctx: TaskContext) -> None:
        """Resolve names to indices and allocate per-world buffers."""

    @abc.abstractmethod
    def reset_worlds(
        self, mask: torch.Tensor, physics: Physics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample new episodes for the masked worlds.

        Returns:
            (qpos (N, nq), qvel (N, nv)) initial states; rows outside ``mask`` are ignored.
        """

    @abc.abstractmethod
    def signals(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Task signals beyond joint_pos, joint_vel and last_action, each shaped (N, k).

        Robot-available ones (e.g. ``command``) and privileged ones (sim-only state).
        """

    @abc.abstractmethod
    def reward_terms(
        self, physics: Physics, action: torch.Tensor, last_action: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Unscaled reward terms, each shaped (N,)."""

    def terminated(self, physics: Physics) -> torch.Tensor:
        """Early termination (failure), shape (N,) bool; never by default."""
        return torch.zeros(physics.num_worlds, dtype=torch.bool, device=physics.device)

    @abc.abstractmethod
    def success(self, physics: Physics) -> torch.Tensor:
        """Task success right now, shape (N,) bool (judged at the end of an episode)."""

    def set_command(self, command: torch.Tensor) -> None:
        """Override the sampled ``command`` signal of every world (e.g. fixed targets).

        Lets an evaluation run on exactly the commands a deployment used.  Shape: (N, k).
        """
        raise NotImplementedError(f"task {self.name!r} has no settable command")

    def metrics(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Extra per-world metrics to report at episode end (e.g. peak speed), each (N,)."""
        return {}

    def stage_flags(self, physics: Physics) -> torch.Tensor:
        """Which of :attr:`stages` each world's state satisfies right now (after a step).

        The env keeps, per episode, the furthest stage reached in order: stage k counts once
        its flag is set at a step when stages 0..k-1 have all been reached (at that step or
        earlier), so the funnel never rises from one stage to the next.  Pure tensor ops: no
        host sync on a GPU.

        Returns:
            Bool flags. Shape: (N, len(stages)); (N, 0) for a task without stages.
        """
        return torch.zeros(physics.num_worlds, 0, dtype=torch.bool, device=physics.device)
