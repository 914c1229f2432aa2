"""The rsl_rl trainer's ``VecEnv`` over :class:`BatchedEnv` (rsl-rl-lib 5.x API; needs tensordict).

Observations are a ``TensorDict`` with the groups ``"policy"`` (robot signals only: what the
exported file will see) and ``"critic"`` (the policy's terms first, then the privileged ones),
so a runner configured with ``obs_groups={"actor": ["policy"], "critic": ["critic"]}`` trains an
asymmetric actor-critic.  ``extras["time_outs"]`` marks episodes cut by the time limit (not by
failure), which rsl_rl's PPO bootstraps with the critic's value.  ``extras["episode"]`` holds, for
the episodes that ended in the step, each reward term's episode sum as ``reward/<name>``, the
success (``Episode/success``), the task's metrics (``Episode/<metric>``) and its stage funnel
(``funnel/<stage>``, 1.0 where the episode reached the stage); rsl_rl's logger averages them
over an iteration and writes them to TensorBoard.

Every tensor stays on the env's device.
"""

from __future__ import annotations

from typing import Any

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from karakuri.sim.env import BatchedEnv


class RslVecEnv(VecEnv):
    """rsl_rl's view of a batched env; one :meth:`step` steps every world.

    Args:
        env: The batched env (any backend, any device).
    """

    def __init__(self, env: BatchedEnv) -> None:
        self.env = env
        self.num_envs = env.num_worlds
        self.num_actions = env.action_size
        self.max_episode_length = env.task.episode_steps
        self.device = env.device
        self.cfg: dict[str, Any] = {
            "task": env.task.name,
            "robot": env.robot.name,
            "num_worlds": env.num_worlds,
            "ctrl_dt": env.task.ctrl_dt,
            "episode_steps": env.task.episode_steps,
        }
        self._obs: TensorDict | None = None

    @property
    def episode_length_buf(self) -> torch.Tensor:
        """Control steps into the current episode, per world. Shape: (num_envs,), int64."""
        return self.env.step_count

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        # rsl_rl's init_at_random_ep_len spreads the episode ends over the first rollouts
        self.env.step_count.copy_(value.to(self.env.step_count))

    def _wrap(self, obs: dict[str, torch.Tensor]) -> TensorDict:
        return TensorDict(
            {"policy": obs["policy"], "critic": obs["critic"]},
            batch_size=[self.num_envs],
            device=self.device,
        )

    def reset(self) -> TensorDict:
        """Reset every world; returns the first observations."""
        self._obs = self._wrap(self.env.reset())
        return self._obs

    def get_observations(self) -> TensorDict:
        """The current observations (resets every world on the first call)."""
        return self._obs if self._obs is not None else self.reset()

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        """Step every world once.

        Args:
            actions: Raw actions; the env clips them to [-1, 1]. Shape: (num_envs, num_actions).

        Returns:
            observations, rewards (num_envs,), dones (num_envs,) int64 (1 where the episode
            ended; the observation is then the new episode's first), extras.
        """
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._obs = self._wrap(obs)
        extras: dict[str, Any] = {"time_outs": truncated.float()}
        if "episode" in info:
            extras["episode"] = self._episode_log(info["episode"])
        return self._obs, reward, (terminated | truncated).long(), extras

    def close(self) -> None:
        """Release the env."""
        self.env.close()

    @staticmethod
    def _episode_log(ep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        log = {}
        for k, v in ep.items():
            if k in ("return", "length"):
                continue  # rsl_rl's logger tracks these itself
            log[k if k.startswith(("reward/", "funnel/")) else f"Episode/{k}"] = v.float()
        return log
