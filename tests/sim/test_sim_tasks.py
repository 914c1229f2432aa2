"""Every registered task on every robot it supports: shapes, finite values, determinism."""

from __future__ import annotations

import pytest
import torch

from karakuri.sim.env import BatchedEnv, EnvError
from karakuri.sim.physics import substeps
from karakuri.sim.registry import TASK_ROBOTS, TASKS, make_env, make_task

CASES = [(t, r) for t in sorted(TASKS) for r in TASK_ROBOTS[t]]


def _rollout(task: str, robot: str, seed: int, steps: int = 30, n: int = 4) -> list[torch.Tensor]:
    env = make_env(task, robot, num_worlds=n, seed=seed)
    g = torch.Generator().manual_seed(7)
    out = [env.reset()["critic"]]
    for _ in range(steps):
        a = torch.rand(n, env.action_size, generator=g) * 2 - 1
        obs, rew, term, trunc, _ = env.step(a)
        out += [obs["critic"], rew]
    env.close()
    return out


@pytest.mark.parametrize(("task", "robot"), CASES)
def test_task_shapes_and_finite_values(task: str, robot: str) -> None:
    env = make_env(task, robot, num_worlds=3, seed=0)
    obs = env.reset()
    assert obs["policy"].shape == (3, env.obs_size)
    assert obs["critic"].shape == (3, env.critic_obs_size)
    assert env.critic_obs_size >= env.obs_size
    for _ in range(env.task.episode_steps + 2):  # crosses an auto-reset
        obs, rew, term, trunc, info = env.step(torch.rand(3, env.action_size) * 2 - 1)
        assert rew.shape == (3,) and term.shape == (3,) and trunc.shape == (3,)
        assert torch.isfinite(obs["critic"]).all() and torch.isfinite(rew).all()
    assert set(env.task.reward_scales) == {
        k[len("reward/") :] for k in info if k.startswith("reward/")
    }
    env.close()


@pytest.mark.parametrize(("task", "robot"), CASES)
def test_same_seed_same_trajectory_other_seed_differs(task: str, robot: str) -> None:
    a = _rollout(task, robot, seed=3)
    b = _rollout(task, robot, seed=3)
    c = _rollout(task, robot, seed=4)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize(("task", "robot"), CASES)
def test_policy_observation_uses_robot_signals_only(task: str, robot: str) -> None:
    env = make_env(task, robot, num_worlds=1)
    real = {"joint_pos", "joint_vel", "last_action", *env.task.extra_signals}
    assert set(env.robot_signals) <= real
    assert all(not t.privileged for t in env.policy_terms)
    env.close()


def test_episode_ends_by_truncation_with_final_observation() -> None:
    env = make_env("reach", num_worlds=2, seed=0)
    env.reset()
    for _ in range(env.task.episode_steps):
        _, _, term, trunc, info = env.step(torch.zeros(2, env.action_size))
    assert trunc.all() and not term.any()
    assert info["final_obs"]["policy"].shape == (2, env.obs_size)
    assert set(info["episode"]) >= {"return", "length", "success", "final_distance"}
    assert (info["episode"]["length"] == env.task.episode_steps).all()


def test_zero_action_holds_the_arm_still() -> None:
    # gravity compensation: a target equal to the measured pose holds it
    env = make_env("reach", num_worlds=2, seed=0)
    env.reset()
    q0 = env.raw_signals()["joint_pos"].clone()
    for _ in range(20):
        env.step(torch.zeros(2, env.action_size))
    drift = (env.raw_signals()["joint_pos"] - q0).abs().max()
    assert drift < 0.01


def test_ctrl_dt_must_be_a_whole_multiple_of_dt() -> None:
    assert substeps(0.02, 0.002) == 10
    with pytest.raises(ValueError, match="not a whole multiple"):
        substeps(0.025, 0.002 * 1.5)
    with pytest.raises(ValueError, match="not a whole multiple"):
        substeps(0.021, 0.002)


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'fly'; valid tasks: \['reach'"):
        make_task("fly")


def test_bad_actions_are_refused() -> None:
    env = make_env("reach", num_worlds=2)
    env.reset()
    with pytest.raises(EnvError, match="shape"):
        env.step(torch.zeros(3, env.action_size))
    with pytest.raises(EnvError, match="NaN"):
        env.step(torch.full((2, env.action_size), float("nan")))


def test_randomization_changes_worlds_and_stays_deterministic() -> None:
    from dataclasses import replace

    from karakuri.robot.registry import load_robot
    from karakuri.sim.task import Randomization
    from karakuri.sim.tasks.reach import Reach, ReachConfig

    rnd = Randomization(
        friction=(0.5, 1.5),
        mass=(0.8, 1.2),
        actuator_gain=(0.8, 1.2),
        joint_damping=(0.5, 2.0),
        obs_noise=1.0,
        action_latency_steps=2,
    )
    robot = load_robot("industrial_arm")

    def run(seed: int) -> torch.Tensor:
        env = BatchedEnv(Reach(robot, replace(ReachConfig(), randomize=rnd)), 3, seed=seed)
        env.reset()
        for _ in range(10):
            obs, *_ = env.step(torch.ones(3, env.action_size) * 0.5)
        masses = torch.tensor([m.body_mass[3] for m in env.physics._models])
        env.close()
        return torch.cat([obs["policy"].flatten(), masses])

    a, b = run(1), run(1)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    masses = a[-3:]
    assert masses.unique().numel() == 3
