"""Tasks by name: ``make_task(name, robot)`` and ``make_env(name, robot=..., ...)``."""

from __future__ import annotations

from collections.abc import Callable

from karakuri.robot.registry import load_robot
from karakuri.robot.spec import RobotSpec
from karakuri.sim.env import BatchedEnv
from karakuri.sim.task import Task


def _reach(robot: RobotSpec) -> Task:
    from karakuri.sim.tasks.reach import Reach

    return Reach(robot)


def _pick_place(robot: RobotSpec) -> Task:
    from karakuri.sim.tasks.pick_place import PickPlace

    return PickPlace(robot)


def _handover(robot: RobotSpec) -> Task:
    from karakuri.sim.tasks.handover import Handover

    return Handover(robot)


# Task name -> factory taking the robot spec.
TASKS: dict[str, Callable[[RobotSpec], Task]] = {
    "reach": _reach,
    "pick_place": _pick_place,
    "handover": _handover,
}

# Task name -> robots it is defined for (the first is the default).
TASK_ROBOTS: dict[str, tuple[str, ...]] = {
    "reach": ("industrial_arm",),
    "pick_place": ("industrial_arm",),
    "handover": ("care_arm",),
}


def make_task(name: str, robot: str | RobotSpec | None = None) -> Task:
    """Build a task on a robot (the task's default robot when None).

    Raises:
        ValueError: unknown task name, listing the valid ones.
    """
    try:
        factory = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {list(TASKS)}") from None
    spec = robot if isinstance(robot, RobotSpec) else load_robot(robot or TASK_ROBOTS[name][0])
    return factory(spec)


def make_env(
    name: str,
    robot: str | RobotSpec | None = None,
    num_worlds: int = 64,
    backend: str = "cpu",
    device: str = "cpu",
    seed: int = 0,
    randomize: bool = True,
) -> BatchedEnv:
    """A :class:`BatchedEnv` for a task by name."""
    return BatchedEnv(
        make_task(name, robot),
        num_worlds,
        backend=backend,
        device=device,
        seed=seed,
        randomize=randomize,
    )
