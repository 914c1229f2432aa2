"""The task contract: what every task must define, and the hooks it may override.

A task is written once in torch over batched tensors (leading world dimension N) and runs on
every physics backend and on CPU or CUDA tensors.  Observations are assembled from *signals*:
named raw tensors a real robot provides (``joint_pos``, ``joint_vel``, ``command``,
``last_action``, optional sensors) plus privileged sim-only signals for the critic.  The same
:class:`ObsTerm` list builds the observation in simulation and inside the exported policy
file (:mod:`karakuri.sim.terms`), so a robot never sees an observation built differently
from training.

A task MUST define (abstract): ``name``; ``obs_terms``; ``action_map``; ``reward_scales``
and ``reward_terms`` (the same names); ``reset_worlds``; ``success``.

A task MAY override (defaults in brackets): ``build_scene`` [the bare robot], ``bind``
[nothing to resolve], ``signals`` [none beyond the joints and last action],
``extra_signals`` [none], ``randomization`` [none], ``terminated`` [never], ``metrics``
[none], ``stages`` and ``stage_flags`` [single stage], ``set_command`` [no command], and the
lifecycle hooks ``after_reset`` and ``after_step`` [no-ops].

Call order in :class:`karakuri.sim.env.BatchedEnv`, each control step: physics steps, then
``after_step`` (per-episode monitors are updated there, once per step), then
``reward_terms``, ``stage_flags``, ``terminated``; when an episode ends, ``success`` and
``metrics``, then ``reset_worlds`` (sample the initial states) and, once the physics holds
them, ``after_reset``.  ``reward_terms`` and the other readers have no side effects: the SIL
plant (:mod:`karakuri.sim.scene_plant`) calls ``after_step`` once per tick and reads
``signals``, ``success`` and ``metrics`` without computing rewards.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import mujoco
import torch

from karakuri.robot.spec import RobotSpec
from karakuri.sim.physics import Physics
from karakuri.sim.terms import ActionMap, ObsTerm

__all__ = ["ActionMap", "ObsTerm", "Randomization", "Task", "TaskContext"]


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

    def sensor(self, name: str) -> slice:
        """The columns of sensor ``name`` in ``physics.sensordata`` (adr to adr + dim)."""
        sid = self.model.sensor(name).id
        adr = int(self.model.sensor_adr[sid])
        return slice(adr, adr + int(self.model.sensor_dim[sid]))


class Task(abc.ABC):
    """One task on one robot (the module docstring says what it must and may define).

    Lifecycle: ``build_scene(spec)`` edits the robot's MjSpec (objects, sensors) before
    compiling; ``bind(ctx)`` resolves names to indices; then the env calls, per episode,
    ``reset_worlds`` and ``after_reset``, and per control step ``after_step``,
    ``reward_terms``, ``stage_flags`` and ``terminated`` (``success`` and ``metrics`` at the
    end of an episode).
    """

    name: ClassVar[str]
    #: Names and sizes of the non-joint robot signals, e.g. {"command": 3}.
    extra_signals: ClassVar[dict[str, int]] = {}
    #: Stages of a multi-stage task in the order a success passes them, e.g. ("reached",
    #: "grasped"); evaluation reports the fraction of episodes that got to each (the funnel).
    #: Empty for single-stage tasks.
    stages: ClassVar[tuple[str, ...]] = ()
    #: Apply the deploy safety filter's clip, velocity and acceleration limits to the
    #: simulated targets (:mod:`karakuri.sim.runtime_limits`): for a task whose actions ask for
    #: more than the robot's limits let through, so training and evaluation see what the robot
    #: will do.
    deploy_limits: ClassVar[bool] = False

    def __init__(self, robot: RobotSpec, ctrl_dt: float, episode_s: float) -> None:
        self.robot = robot
        self.ctrl_dt = ctrl_dt
        self.episode_steps = round(episode_s / ctrl_dt)
        if self.episode_steps < 1:
            raise ValueError(f"episode_s {episode_s} is shorter than one control step {ctrl_dt}")

    # -- what every task must define ------------------------------------------------------
    @property
    @abc.abstractmethod
    def obs_terms(self) -> list[ObsTerm]:
        """Observation terms in order; privileged ones go to the critic only."""

    @property
    @abc.abstractmethod
    def action_map(self) -> ActionMap:
        """How actions become joint targets."""

    @property
    @abc.abstractmethod
    def reward_scales(self) -> dict[str, float]:
        """Reward term name to scale; the names must equal those of :meth:`reward_terms`."""

    @abc.abstractmethod
    def reset_worlds(
        self, mask: torch.Tensor, physics: Physics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample new episodes for the masked worlds (task state such as targets included).

        Returns:
            (qpos (N, nq), qvel (N, nv)) initial states; rows outside ``mask`` are ignored.
        """

    @abc.abstractmethod
    def reward_terms(
        self, physics: Physics, action: torch.Tensor, last_action: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Unscaled reward terms, each shaped (N,); no side effects (see :meth:`after_step`).

        Args:
            physics: The worlds after this step's physics and :meth:`after_step`.
            action: The clipped action of this step. Shape: (N, a).
            last_action: The clipped action of the step before. Shape: (N, a).
        """

    @abc.abstractmethod
    def success(self, physics: Physics) -> torch.Tensor:
        """Task success right now, shape (N,) bool (judged at the end of an episode)."""

    # -- what a task may override ---------------------------------------------------------
    @property
    def randomization(self) -> Randomization:
        """Domain randomization (none by default)."""
        return Randomization()

    def build_scene(self, spec: mujoco.MjSpec) -> None:  # noqa: B027 (no-op default by design)
        """Add the task's objects and named sensors to the robot's MjSpec (none by default)."""

    def bind(self, ctx: TaskContext) -> None:  # noqa: B027 (no-op default by design)
        """Resolve names to indices and allocate per-world buffers (nothing by default)."""

    def signals(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Task signals beyond joint_pos, joint_vel and last_action, each shaped (N, k).

        Robot-available ones (e.g. ``command``) and privileged ones (sim-only state); none by
        default.
        """
        return {}

    def after_reset(self, mask: torch.Tensor, physics: Physics) -> None:  # noqa: B027 (no-op default by design)
        """Hook: the masked worlds now hold their new episode's initial state (no-op).

        Args:
            mask: Worlds that were reset. Shape: (N,) bool.
            physics: The worlds, with :meth:`reset_worlds`' states written.
        """

    def after_step(self, physics: Physics) -> None:  # noqa: B027 (no-op default by design)
        """Hook: once per control step, after physics and before rewards are read (no-op).

        Update per-episode monitors here (peak speed, contact, violations, hold counters):
        the env calls it once per step and the SIL plant once per tick, so a monitor sees
        each state once.  Pure tensor ops: no host sync on a GPU.
        """

    def terminated(self, physics: Physics) -> torch.Tensor:
        """Early termination (failure), shape (N,) bool; never by default."""
        return torch.zeros(physics.num_worlds, dtype=torch.bool, device=physics.device)

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
