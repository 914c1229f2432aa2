"""The SB3 trainer's env adapters over :class:`BatchedEnv` (gymnasium and SB3 APIs).

- :class:`GymEnv`: a single-world ``gymnasium.Env`` (``check_env`` passes), with rendering.
- :class:`SB3VecEnv`: an SB3 ``VecEnv`` that wraps the batched env directly, with no
  subprocesses: one call steps every world.

They live with the trainer that needs them, so :mod:`karakuri.sim` imports no RL library;
rsl_rl's adapter is :mod:`karakuri.policies.trainers.rsl_env`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from karakuri.sim.env import BatchedEnv
from karakuri.sim.registry import make_env


def _boxes(env: BatchedEnv, critic: bool) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    n_obs = env.critic_obs_size if critic else env.obs_size
    obs = gym.spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float32)
    act = gym.spaces.Box(-1.0, 1.0, shape=(env.action_size,), dtype=np.float32)
    return obs, act


class SB3VecEnv(VecEnv):
    """SB3 VecEnv over all worlds of a :class:`BatchedEnv`.

    Observations are the critic's (policy terms first, then privileged ones) when
    ``critic_obs`` is true, so an asymmetric actor-critic can mask the privileged part for the
    actor; otherwise the policy's.  ``infos`` carry ``terminal_observation``,
    ``TimeLimit.truncated``, ``episode`` {r, l} and ``is_success`` as SB3 expects.
    """

    def __init__(self, env: BatchedEnv, critic_obs: bool = True) -> None:
        self.env = env
        self.critic_obs = critic_obs
        obs_space, act_space = _boxes(env, critic_obs)
        self.render_mode = None
        super().__init__(env.num_worlds, obs_space, act_space)
        self._actions: torch.Tensor | None = None
        self.env_last_terms: dict[str, float] = {}
        #: The stage funnel of the episodes that ended in the last step: ``funnel/<stage>`` to
        #: (number of them that reached the stage, number ended); empty when none ended.
        self.env_last_funnel: dict[str, tuple[float, int]] = {}

    def _pick(self, obs: dict[str, torch.Tensor]) -> np.ndarray:
        return obs["critic" if self.critic_obs else "policy"].cpu().numpy()

    def reset(self) -> np.ndarray:
        """Reset every world."""
        return self._pick(self.env.reset())

    def step_async(self, actions: np.ndarray) -> None:
        """Keep the actions for :meth:`step_wait`."""
        self._actions = torch.as_tensor(actions, dtype=torch.float32)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step every world once."""
        assert self._actions is not None
        obs, rew, term, trunc, info = self.env.step(self._actions)
        self.env_last_terms = {k: v for k, v in info.items() if k.startswith("reward/")}
        self.env_last_funnel = {}
        dones = (term | trunc).cpu().numpy()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = self._pick(info["final_obs"])
            ep = {k: v.cpu().numpy() for k, v in info["episode"].items()}
            self.env_last_funnel = {k: (float(v.sum()), v.size) for k, v in ep.items()
                                    if k.startswith("funnel/")}
            trunc_np = trunc.cpu().numpy()
            for j, i in enumerate(np.flatnonzero(dones)):
                infos[i] = {
                    "terminal_observation": final[i],
                    "TimeLimit.truncated": bool(trunc_np[i]),
                    "episode": {"r": float(ep["return"][j]), "l": int(ep["length"][j])},
                    "is_success": bool(ep["success"][j] > 0.5),
                }
        return self._pick(obs), rew.cpu().numpy(), dones, infos

    def close(self) -> None:
        """Release the env."""
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Attribute of the batched env (or of this adapter), once per world."""
        owner = self.env if hasattr(self.env, attr_name) else self
        return [getattr(owner, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set an attribute on the batched env."""
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any
    ) -> list[Any]:
        """Call a method of the batched env once."""
        out = getattr(self.env, method_name)(*args, **kwargs)
        return [out] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """No gymnasium wrappers inside."""
        return [False] * len(self._get_indices(indices))

    def seed(self, seed: int | None = None) -> list[int | None]:  # type: ignore[override]
        """Reseed the batched env's generator."""
        if seed is not None:
            self.env.generator.manual_seed(seed)
        return [seed] * self.num_envs

    def get_images(self) -> list[np.ndarray]:
        """Rendering goes through :class:`GymEnv`."""
        return []


class GymEnv(gym.Env):
    """One world of a task as a ``gymnasium.Env`` (policy observations only)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        task_name: str = "reach",
        robot: str | None = None,
        render_mode: str | None = None,
        randomize: bool = False,
    ) -> None:
        self.env = make_env(task_name, robot, num_worlds=1, randomize=randomize)
        self.observation_space, self.action_space = _boxes(self.env, critic=False)
        self.render_mode = render_mode
        self._renderer: Any = None
        self.metadata = {**self.metadata, "render_fps": round(1 / self.env.task.ctrl_dt)}

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        """Start an episode (``seed`` reseeds the task's sampling)."""
        super().reset(seed=seed)
        if seed is not None:
            self.env.generator.manual_seed(seed)
        return self.env.reset()["policy"][0].cpu().numpy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One control step; the episode's last observation is returned at its end."""
        a = torch.as_tensor(np.asarray(action, dtype=np.float32).reshape(1, -1))
        obs, rew, term, trunc, info = self.env.step(a)
        out: dict[str, Any] = {}
        if "final_obs" in info:
            obs = info["final_obs"]
            out["is_success"] = bool(info["episode"]["success"][0] > 0.5)
        return obs["policy"][0].cpu().numpy(), float(rew[0]), bool(term[0]), bool(trunc[0]), out

    def render(self) -> np.ndarray | None:
        """An RGB frame of world 0 (needs an OpenGL context, e.g. ``MUJOCO_GL=egl``)."""
        from karakuri.sim.render import render_world

        if self.render_mode != "rgb_array":
            return None
        frame, self._renderer = render_world(self.env, 0, self._renderer)
        return frame

    def close(self) -> None:
        """Release the renderer and the env."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.env.close()
