"""A task's scene as one MuJoCo world: the plant a virtual MCU simulates in sim-in-the-loop.

Sim-in-the-loop runs the exported policy against a single ``MjData`` stepped by the virtual
MCU.  For tasks with objects (pick_place's box, handover's moving hand) that plant must hold
the task's scene, and the policy's perception input (``object_pose``, ``hand_pos``) must be
read from it the way the task reads it in training.  :class:`ScenePlant` does both with the
task's own code: it compiles the scene with :func:`karakuri.sim.env.build_model`, binds the
task to one world, and evaluates ``signals``, ``reset_worlds``, ``success`` and ``metrics`` on
a read-only one-world snapshot of the ``MjData`` (:class:`OneWorld`).  No second implementation of
a task's geometry exists to drift from the training one.  Only copying the state
(:meth:`OneWorld.snapshot`) and laying out objects happen while the virtual MCU waits.
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch

from karakuri.robot.mjcf_index import dof_span, joint_names, qpos_span
from karakuri.robot.spec import RobotSpec
from karakuri.sim.env import build_model
from karakuri.sim.registry import make_task
from karakuri.sim.task import TaskContext


class OneWorld:
    """A read-only snapshot of one ``MjData`` behind the ``Physics`` protocol.

    :meth:`snapshot` copies the state arrays (microseconds, so the plant's lock is held only
    that long); the properties give float32 tensors shaped ``(1, k)``, so task code written for
    a batch runs on it unchanged.  Stepping and model changes belong to the virtual MCU that
    owns the data, so they raise.
    """

    num_worlds = 1
    device = torch.device("cpu")

    def __init__(self, model: mujoco.MjModel, arrays: dict[str, np.ndarray]) -> None:
        self.model = model
        self._t = {k: torch.from_numpy(np.asarray(v, np.float32)[None, :]) for k, v in
                   arrays.items()}

    @classmethod
    def snapshot(cls, model: mujoco.MjModel, data: mujoco.MjData) -> OneWorld:
        """Copy ``data``'s state, sensors and controls now."""
        return cls(model, {k: getattr(data, k).copy() for k in
                           ("qpos", "qvel", "ctrl", "sensordata", "actuator_force")})

    @property
    def dt(self) -> float:
        """Physics time step, s."""
        return float(self.model.opt.timestep)

    @property
    def qpos(self) -> torch.Tensor:
        """Shape: (1, nq)."""
        return self._t["qpos"]

    @property
    def qvel(self) -> torch.Tensor:
        """Shape: (1, nv)."""
        return self._t["qvel"]

    @property
    def ctrl(self) -> torch.Tensor:
        """Shape: (1, nu) (a copy: writing it does not reach the plant)."""
        return self._t["ctrl"]

    @property
    def sensordata(self) -> torch.Tensor:
        """Shape: (1, nsensordata)."""
        return self._t["sensordata"]

    @property
    def actuator_force(self) -> torch.Tensor:
        """Shape: (1, nu), N·m or N."""
        return self._t["actuator_force"]

    def step(self, n_substeps: int) -> None:
        """Refused: the virtual MCU steps this world."""
        raise NotImplementedError("OneWorld is a read-only view; the virtual MCU steps it")

    def reset_worlds(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Refused: use :meth:`ScenePlant.layout`, which only moves the task's objects."""
        raise NotImplementedError("OneWorld is a read-only view; use ScenePlant.layout")

    def set_model_params(self, mask: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Refused: sim-in-the-loop runs the nominal model."""
        raise NotImplementedError("OneWorld runs the nominal model")


class ScenePlant:
    """A registered task's scene for one world, and its perception, layout and judgement.

    Args:
        task: Registered task name, e.g. ``"pick_place"``.
        robot: The robot it runs on.
        seed: Seeds the episode layouts and the reading noise.
        noise: Std of Gaussian noise added to every :meth:`read`, in the signal's unit.
    """

    def __init__(self, task: str, robot: RobotSpec, seed: int = 0, noise: float = 0.0) -> None:
        self.task = make_task(task, robot)
        self.model = build_model(robot, self.task)
        gen = torch.Generator().manual_seed(seed)
        self.task.bind(TaskContext(self.model, 1, torch.device("cpu"), gen))
        self.noise = noise
        self._rng = np.random.default_rng(seed)
        robot_joints = set(joint_names(mujoco.MjModel.from_xml_path(robot.model_path)))
        m = self.model
        objects = [j for j, name in enumerate(joint_names(m)) if name not in robot_joints]
        self.object_qpos = np.array([a for j in objects for a in qpos_span(m, j)], dtype=np.int64)
        self.object_qvel = np.array([a for j in objects for a in dof_span(m, j)], dtype=np.int64)
        self.action_size = self.task.action_map.size

    @property
    def signals(self) -> dict[str, int]:
        """The task's robot-side perception signals and their sizes, e.g. {"object_pose": 4}."""
        return dict(self.task.extra_signals)

    def read(self, world: OneWorld, signal: str) -> np.ndarray:
        """``signal`` as the task computes it from a snapshot, plus the reading noise.

        Also updates the task's per-episode monitors (peak speed, peak force) from this state.

        Args:
            world: A snapshot of the plant (:meth:`OneWorld.snapshot`).
            signal: A name of :attr:`signals`.

        Returns:
            Shape: (k,), float32, in the signal's unit.
        """
        sig = self.task.signals(world)
        if signal not in sig:
            raise KeyError(f"task {self.task.name!r} has no signal {signal!r}; it has "
                           f"{sorted(sig)}")
        self.task.after_step(world)  # the task's episode monitors see this tick's state
        x = sig[signal][0].numpy().astype(np.float32)
        if self.noise > 0:
            x = x + self._rng.normal(0.0, self.noise, x.shape).astype(np.float32)
        return x

    def layout(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Place the task's objects for a new episode (the robot's joints are left alone)."""
        world = OneWorld.snapshot(model, data)
        start = torch.ones(1, dtype=torch.bool)
        qpos, qvel = self.task.reset_worlds(start, world)
        data.qpos[self.object_qpos] = qpos[0, self.object_qpos].double().numpy()
        data.qvel[self.object_qvel] = qvel[0, self.object_qvel].double().numpy()
        mujoco.mj_forward(model, data)
        self.task.after_reset(start, OneWorld.snapshot(model, data))

    def success(self, world: OneWorld) -> bool:
        """The task's success in a snapshot of the plant."""
        return bool(self.task.success(world)[0])

    def metrics(self, world: OneWorld) -> dict[str, float]:
        """The task's episode metrics in a snapshot (monitors as sampled by :meth:`read`)."""
        return {k: float(v[0]) for k, v in self.task.metrics(world).items()}

