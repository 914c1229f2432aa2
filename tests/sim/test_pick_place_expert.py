"""The scripted pick_place teacher: it solves the task from the evaluation's starts, acts
within the action bounds, and its action depends on the state alone (so DAgger can label any
state a student visits)."""

from __future__ import annotations

import pytest
import torch

from karakuri.sim.registry import make_env
from karakuri.sim.tasks.pick_place_expert import PickPlaceExpert
from karakuri.sim.teachers import teacher_for


@pytest.fixture(scope="module")
def env():
    e = make_env("pick_place", num_worlds=32, seed=12345, randomize=False)
    yield e
    e.close()


def test_teacher_succeeds_through_every_stage(env) -> None:
    teacher = teacher_for(env)
    assert isinstance(teacher, PickPlaceExpert)
    env.reset()
    for _ in range(env.task.episode_steps):
        a = teacher.act()
        assert a.shape == (32, env.action_size) and float(a.abs().max()) <= 1.0
        _, _, term, trunc, info = env.step(a)
    ep = info["episode"]
    assert ep["success"].shape == (32,) and float(ep["success"].mean()) >= 0.9
    for stage in env.task.stages:
        assert float(ep[f"funnel/{stage}"].mean()) >= 0.9, stage


def test_teacher_action_is_a_function_of_the_state(env) -> None:
    env.reset()
    for _ in range(30):
        env.step(teacher_for(env).act())
    a, b = PickPlaceExpert(env).act(), PickPlaceExpert(env).act()
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_teacher_needs_pick_place() -> None:
    reach = make_env("reach", num_worlds=1, randomize=False)
    with pytest.raises(TypeError, match="needs the pick_place task, got 'reach'"):
        PickPlaceExpert(reach)
    with pytest.raises(ValueError, match="task 'reach' has no scripted teacher"):
        teacher_for(reach)
    reach.close()

