"""The ``sb3`` trainer: CPU cores with Stable-Baselines3 (PPO or SAC) over the batched env.

A run directory holds everything needed to resume, evaluate and export::

    RUN_DIR/config.json          the TrainConfig and the code version (policies/run_dir.py)
    RUN_DIR/actor.npz            final deterministic actor + policy-observation normalizer as
    RUN_DIR/actor.json           plain data (numpy arrays, JSON): what eval and export read
    RUN_DIR/model.zip            final policy + optimizer + step count (SB3 format, for resume)
    RUN_DIR/vecnormalize.pkl     observation normalizer statistics (SB3 format, for resume)
    RUN_DIR/checkpoints/         periodic model_<steps>_steps.zip + vecnormalize_<steps>_steps.pkl
                                 + actor_<steps>_steps.npz/.json
    RUN_DIR/tb/                  TensorBoard logs (reward/<term>, eval/success_rate, ...)
    RUN_DIR/eval.json            final evaluation on fixed seeds (written by
                                 :func:`karakuri.policies.train.train`)

Eval and export read only the plain files (:mod:`karakuri.policies.sb3_actor`): a run
directory from elsewhere cannot run code through them.  ``--resume`` unpickles SB3's files
and so trusts the directory.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from karakuri.policies.run_dir import (
    TrainConfig,
    checkpoints_dir,
    default_run_dir,
    resume_config,
    write_config,
)
from karakuri.policies.sb3_actor import load_actor as load_plain_actor
from karakuri.policies.sb3_actor import save_actor
from karakuri.policies.trainers.base import LoadedActor, TrainResult
from karakuri.policies.trainers.sb3_env import SB3VecEnv
from karakuri.sim.registry import make_env

ALGOS = {"ppo": PPO, "sac": SAC}


class _MaskExtractor(FlattenExtractor):
    """Zero the privileged tail of the observation, so the actor sees robot signals only."""

    def __init__(self, observation_space: Any, keep: int) -> None:
        super().__init__(observation_space)
        mask = torch.zeros(observation_space.shape[0])
        mask[:keep] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return super().forward(obs) * self.mask


class AsymmetricPolicy(ActorCriticPolicy):
    """PPO actor-critic whose actor reads only the first ``actor_obs_size`` observations.

    The critic also sees the privileged terms (sim-only state), which speeds up learning; the
    actor's first layer never gets them, so the exported policy needs robot signals only.
    """

    def __init__(self, *args: Any, actor_obs_size: int, **kwargs: Any) -> None:
        self.actor_obs_size = actor_obs_size
        kwargs["share_features_extractor"] = False
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        self.pi_features_extractor = _MaskExtractor(self.observation_space, self.actor_obs_size)
        super()._build(lr_schedule)


class _Checkpoints(CheckpointCallback):
    """SB3's periodic checkpoints, plus the actor as plain data (``actor_<steps>_steps.npz``)."""

    def __init__(self, obs_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.obs_size = obs_size

    def _on_step(self) -> bool:
        super()._on_step()
        if self.n_calls % self.save_freq == 0:
            save_plain_actor(self.model, self.model.get_vec_normalize_env(), self.obs_size,
                             Path(self.save_path) / f"actor_{self.num_timesteps}_steps")
        return True


def save_plain_actor(model: Any, vec: VecNormalize, obs_size: int, path: Path) -> Path:
    """Write ``model``'s actor and ``vec``'s statistics as ``path``.npz/.json (no pickle)."""
    return save_actor(model, vec.obs_rms, vec.epsilon, vec.clip_obs, obs_size, path,
                      steps=model.num_timesteps)


class _RewardTermLogger(BaseCallback):
    """Log each reward term (``reward/<name>``) and the stage funnel of finished episodes.

    The funnel (``funnel/<stage>``) is recorded once per rollout: the fraction of the episodes
    that ended in the rollout which reached the stage.
    """

    def __init__(self) -> None:
        super().__init__()
        self._funnel: dict[str, list] = {}  # funnel/<stage> -> [reached, ended] this rollout

    def _on_step(self) -> bool:
        env: SB3VecEnv = self.training_env.venv  # type: ignore[attr-defined]
        for k, v in env.env_last_terms.items():
            self.logger.record_mean(k, v)
        for k, (reached, ended) in env.env_last_funnel.items():
            total = self._funnel.setdefault(k, [0.0, 0])
            total[0] += reached
            total[1] += ended
        return True

    def _on_rollout_start(self) -> None:
        self._funnel = {}

    def _on_rollout_end(self) -> None:
        for k, (reached, ended) in self._funnel.items():
            self.logger.record(k, reached / ended)


def _ppo_kwargs(cfg: TrainConfig, actor_obs: int) -> dict[str, Any]:
    return dict(
        policy=AsymmetricPolicy,
        n_steps=max(8, 8192 // cfg.num_envs),
        batch_size=1024,
        n_epochs=8,
        learning_rate=1e-3,
        gamma=0.97,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.0,
        max_grad_norm=1.0,
        policy_kwargs=dict(
            actor_obs_size=actor_obs,
            net_arch=dict(pi=list(cfg.net), vf=list(cfg.net)),
            activation_fn=nn.ELU,
            log_std_init=-1.0,
            optimizer_kwargs=dict(fused=True),  # one kernel per step: ~9 % off a CPU run
        ),
    )


def _sac_kwargs(cfg: TrainConfig, actor_obs: int) -> dict[str, Any]:
    return dict(
        policy="MlpPolicy",
        learning_rate=1e-3,
        buffer_size=1_000_000,
        batch_size=1024,
        gamma=0.97,
        train_freq=1,
        gradient_steps=max(1, cfg.num_envs // 64),
        learning_starts=5000,
        policy_kwargs=dict(net_arch=list(cfg.net)),
    )


def build_vec_env(
    cfg: TrainConfig,
    num_envs: int | None = None,
    seed: int | None = None,
    randomize: bool | None = None,
) -> SB3VecEnv:
    """The SB3 VecEnv for a config (critic observations when the algo is PPO)."""
    env = make_env(
        cfg.task,
        cfg.robot or None,
        num_worlds=num_envs or cfg.num_envs,
        backend=cfg.backend,
        device=cfg.device,
        seed=cfg.seed if seed is None else seed,
        randomize=cfg.randomize if randomize is None else randomize,
    )
    env.task.training = True  # training-only resets (pick_place's curriculum); eval never sets it
    return SB3VecEnv(env, critic_obs=cfg.algo == "ppo")


def train(cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Train (or resume) an SB3 run into its directory (no final evaluation: the caller's)."""
    cfg = resume_config(cfg, resume)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    cfg = replace(cfg, run_dir=str(run_dir))
    torch.manual_seed(cfg.seed)
    # One torch thread: the nets are small, and torch's OpenMP workers spin-wait after each op,
    # stealing the cores from the physics threads (profiled: a 6-element Adam sqrt took 9 ms
    # with two torch threads beside the rollout pool and other processes).
    torch.set_num_threads(1)
    venv = build_vec_env(cfg)  # first: a bad robot or task leaves no half-made run behind
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(cfg, run_dir, resumed=resume is not None)
    model, vec = _load_or_create(cfg, venv, run_dir, resume)
    ckpt = _Checkpoints(
        venv.env.obs_size,
        save_freq=max(1, cfg.checkpoint_every // cfg.num_envs),
        save_path=str(checkpoints_dir(run_dir)),
        name_prefix="model",
        save_vecnormalize=True,
    )
    remaining = cfg.total_steps - model.num_timesteps
    t0 = time.perf_counter()
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=CallbackList([ckpt, _RewardTermLogger()]),
            reset_num_timesteps=resume is None,
            progress_bar=cfg.progress,
            tb_log_name="tb",
            log_interval=1,
        )
    train_s = time.perf_counter() - t0
    model.save(run_dir / "model.zip")
    vec.save(str(run_dir / "vecnormalize.pkl"))
    save_plain_actor(model, vec, venv.env.obs_size, run_dir / "actor")
    vec.close()
    stats = {"train_wall_s": round(train_s, 2), "env_steps": int(model.num_timesteps)}
    return TrainResult(run_dir, stats, eval_seed=cfg.eval_seed, eval_episodes=cfg.eval_episodes)


def load_actor(run_dir: str | Path) -> LoadedActor:
    """The deterministic actor of an SB3 run, from ``actor.npz``/``actor.json`` only.

    Raises:
        RunDirError: the files are missing or malformed (named).
    """
    norm, actor = load_plain_actor(run_dir)
    return LoadedActor(normalizer=norm, actor=actor)


def _load_or_create(
    cfg: TrainConfig, venv: SB3VecEnv, run_dir: Path, resume: str | Path | None
) -> tuple[Any, VecNormalize]:
    algo = ALGOS[cfg.algo]
    if resume is not None:
        model_path, norm_path = latest_checkpoint(run_dir)
        vec = VecNormalize.load(str(norm_path), venv)
        vec.training = True
        model = algo.load(model_path, env=vec, device="cpu", tensorboard_log=str(run_dir))
        return model, vec
    vec = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=0.97)
    kwargs = _ppo_kwargs(cfg, venv.env.obs_size) if cfg.algo == "ppo" else _sac_kwargs(cfg, 0)
    policy = kwargs.pop("policy")
    model = algo(
        policy, vec, seed=cfg.seed, device="cpu", tensorboard_log=str(run_dir), verbose=0, **kwargs
    )
    return model, vec


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, Path]:
    """The newest (model, normalizer) pair of a run: final files, else the last checkpoint."""
    run_dir = Path(run_dir)
    if (run_dir / "model.zip").exists() and (run_dir / "vecnormalize.pkl").exists():
        return run_dir / "model.zip", run_dir / "vecnormalize.pkl"
    ckpts = sorted(
        checkpoints_dir(run_dir).glob("model_*_steps.zip"), key=lambda p: int(p.stem.split("_")[1])
    )
    if not ckpts:
        raise FileNotFoundError(f"{run_dir} has no model.zip and no checkpoints/")
    steps = ckpts[-1].stem.split("_")[1]
    return ckpts[-1], checkpoints_dir(run_dir) / f"model_vecnormalize_{steps}_steps.pkl"
