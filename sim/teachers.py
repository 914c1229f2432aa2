"""``TEACHERS``: task name -> its scripted teacher, for distillation trainers.

A teacher is a function ``teacher(env) -> act`` where ``act()`` returns the action it takes in
each world's current state, shape (B, a), in [-1, 1].  It may read the simulator's true state
(it is privileged): only the student, trained on the task's policy observations, becomes a
policy file.  This module imports nothing heavy, so the trainer registry can ask which tasks
have a teacher without importing MuJoCo or torch.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from karakuri.sim.env import BatchedEnv

#: Task name -> ``module:function`` of its teacher (imported when asked for).
TEACHERS: dict[str, str] = {
    "pick_place": "karakuri.sim.tasks.pick_place_expert:expert_for",
}


def teacher_for(env: BatchedEnv) -> Any:
    """The scripted teacher of ``env``'s task (an object with ``act() -> (B, a) tensor``).

    Raises:
        ValueError: the task has none (the message lists the tasks that do).
    """
    name = env.task.name
    if name not in TEACHERS:
        raise ValueError(f"task {name!r} has no scripted teacher; tasks with one: "
                         f"{sorted(TEACHERS)} (train it with --trainer sb3 or rsl_rl)")
    module, func = TEACHERS[name].split(":")
    make: Callable[[BatchedEnv], Any] = getattr(import_module(module), func)
    return make(env)
