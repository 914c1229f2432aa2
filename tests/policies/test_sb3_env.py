"""The SB3 trainer's gymnasium and VecEnv adapters over the batched env."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.utils.env_checker import check_env

from karakuri.policies.trainers.sb3_env import GymEnv, SB3VecEnv
from karakuri.sim.registry import make_env


def test_gymnasium_check_env_passes() -> None:
    env = GymEnv("reach")
    check_env(env, skip_render_check=True)
    env.close()


def test_gym_env_reports_success_at_episode_end() -> None:
    env = GymEnv("reach")
    env.reset(seed=0)
    info: dict = {}
    for _ in range(env.env.task.episode_steps):
        _, _, term, trunc, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert trunc and not term and "is_success" in info


def test_sb3_vecenv_steps_every_world_at_once() -> None:
    venv = SB3VecEnv(make_env("reach", num_worlds=5), critic_obs=True)
    obs = venv.reset()
    assert obs.shape == (5, venv.env.critic_obs_size)
    n = venv.env.task.episode_steps
    for _ in range(n):
        obs, rew, done, infos = venv.step(np.zeros((5, venv.env.action_size), np.float32))
    assert done.all()
    assert all("terminal_observation" in i and i["TimeLimit.truncated"] for i in infos)
    assert all("episode" in i and i["episode"]["l"] == n for i in infos)
    venv.close()


def test_cpu_backend_matches_single_world_mujoco() -> None:
    import mujoco

    env = make_env("reach", num_worlds=3, seed=0)
    env.reset()
    m = env.model
    d = mujoco.MjData(m)
    d.qpos[:] = env.physics.qpos[1].double().numpy()
    d.qvel[:] = env.physics.qvel[1].double().numpy()
    ctrl = torch.rand(3, m.nu)
    env.physics.ctrl[:] = ctrl
    d.ctrl[:] = ctrl[1].double().numpy()
    env.physics.step(10)
    for _ in range(10):
        mujoco.mj_step(m, d)
    np.testing.assert_allclose(env.physics.qpos[1].numpy(), d.qpos, atol=1e-5)
    np.testing.assert_allclose(env.physics.sensordata[1].numpy(), d.sensordata, atol=1e-5)
    # actuator forces as MuJoCo reports them, gravity compensation through the actuators included
    mujoco.mj_forward(m, d)
    np.testing.assert_allclose(env.physics.actuator_force[1].numpy(), d.actuator_force, atol=1e-3)
    assert np.abs(d.actuator_force).max() > 1.0  # not trivially zero
