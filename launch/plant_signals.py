"""Sim-in-the-loop with a task's scene: the simulated plant as the policy's perception system.

When a launch file names a ``task``, the virtual MCU simulates that task's scene (robot and
objects, :class:`karakuri.sim.scene_plant.ScenePlant`), each episode is judged by the task's
own ``success``, and with ``command.plant_signal`` a policy input such as ``object_pose`` is
read from the plant at every tick, as a camera or person tracker would deliver it on a real
cell.  The control loop stays unaware of it: :class:`PlantFedPolicy` fills that input in and
shows the loop only the inputs it provides itself.

Needs MuJoCo and torch (the task's code computes the signals), so only SIL imports this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from karakuri.launch.schema import LaunchConfig, LaunchError
from karakuri.robot.loop_commands import CommandSource, Episode, PlantSignal
from karakuri.robot.policy import Policy
from karakuri.robot.spec import RobotSpec


class PlantFedPolicy:
    """``policy`` with its input ``signal`` read by ``read`` at every call.

    Args:
        policy: The policy file's runtime (e.g. :class:`OnnxPolicy`).
        signal: The input to feed, e.g. ``"object_pose"``.
        read: Returns the input now. Shape: (k,).
    """

    def __init__(self, policy: Policy, signal: str, read: Callable[[], np.ndarray]) -> None:
        self.policy, self.signal, self._read = policy, signal, read
        self.input_names: tuple[str, ...] = tuple(n for n in policy.input_names if n != signal)

    def act(self, signals: Mapping[str, np.ndarray]) -> np.ndarray:
        """The policy's joint command with ``signal`` read now. Shape: (1, n_joints)."""
        merged = dict(signals)
        merged[self.signal] = np.asarray(self._read(), np.float32)[None, :]
        return self.policy.act(merged)

    def reset(self) -> None:
        """Reset the wrapped policy."""
        self.policy.reset()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)  # metadata, spec, describe, last_outputs


@dataclass
class SceneWiring:
    """What :func:`wire_scene` hands the control loop."""

    policy: Policy
    commands: CommandSource | None
    evaluator: Callable[[Episode], bool | None]
    on_episode_start: Callable[[Episode], None] | None


def scene_for(cfg: LaunchConfig, spec: RobotSpec, policy: Policy) -> Any:
    """The :class:`ScenePlant` of ``cfg.task``, checked against the policy file's task."""
    from karakuri.sim.registry import TASKS
    from karakuri.sim.scene_plant import ScenePlant

    if cfg.task not in TASKS:
        raise LaunchError(f"{cfg.source}: task: unknown task {cfg.task!r}; valid: {list(TASKS)}")
    trained = getattr(getattr(policy, "metadata", None), "task", "")
    if trained and trained != cfg.task:
        raise LaunchError(f"{cfg.source}: task: {cfg.task!r} but the policy {cfg.policy} was "
                          f"trained on {trained!r}; fix one of them")
    src = cfg.command.source() if cfg.command is not None else None
    seed, noise = (src.seed, src.noise) if isinstance(src, PlantSignal) else (0, 0.0)
    return ScenePlant(cfg.task, spec, seed=seed, noise=noise)


def wire_scene(cfg: LaunchConfig, policy: Policy, scene: Any, plant: Any,
               log: Callable[[str], None]) -> SceneWiring:
    """Bind ``command.plant_signal`` to the plant and judge episodes with the task.

    Args:
        cfg: The launch file.
        policy: The loaded policy.
        scene: The :class:`ScenePlant` the virtual MCU simulates.
        plant: The virtual MCU (its ``plant_call`` reads and lays out the scene).
        log: Where each episode's outcome and metrics are printed.
    """
    from karakuri.sim.scene_plant import OneWorld

    call = plant.plant_call
    commands = cfg.command.source() if cfg.command is not None else None
    on_start = None
    if isinstance(commands, PlantSignal):
        sig = commands.signal
        if sig not in policy.input_names:
            raise LaunchError(f"{cfg.source}: command.plant_signal.signal: the policy has no "
                              f"input {sig!r}; its inputs: {list(policy.input_names)}")
        if sig not in scene.signals:
            raise LaunchError(f"{cfg.source}: command.plant_signal.signal: task {cfg.task!r} "
                              f"provides {sorted(scene.signals)}, not {sig!r}")
        commands = commands.bind(read=lambda: scene.read(call(OneWorld.snapshot), sig),
                                 layout=lambda: call(scene.layout))
        policy = PlantFedPolicy(policy, sig, commands.sample)
        on_start = commands.start

    def evaluate(ep: Episode) -> bool:
        world = call(OneWorld.snapshot)
        ok, metrics = scene.success(world), scene.metrics(world)
        log(f"episode {ep.index}: {'success' if ok else 'failure'}; "
            + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items()))
        return ok

    return SceneWiring(policy, commands, evaluate, on_start)
