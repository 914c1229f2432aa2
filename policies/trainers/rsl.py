r"""The ``rsl_rl`` trainer: rsl_rl's PPO over the batched env, thousands of worlds on a GPU.

``karakuri train reach --backend warp --device cuda --num-envs 4096`` lands here (the ``auto``
trainer of the warp backend).  A run directory matches an SB3 run where it can::

    RUN_DIR/config.json          the TrainConfig and the code version (policies/run_dir.py)
    RUN_DIR/rsl_rl.json          the rsl_rl runner configuration and the normalizer's eps
    RUN_DIR/model.pt             final rsl_rl checkpoint: actor and critic with their observation
                                 normalizers, optimizer, iteration
    RUN_DIR/checkpoints/         model_<iteration>.pt every ``checkpoint_every`` env steps
    RUN_DIR/tb/                  TensorBoard: rsl_rl's Train/ Loss/ Perf/, reward/<term>,
                                 Episode/success and the task's metrics
    RUN_DIR/eval.json            final evaluation on fixed seeds (cpu backend) and the timings:
                                 compile_s (warp kernels and graph capture), setup_s, train_wall_s
                                 (the learning loop alone), env_steps, env_steps_per_s

Multi-GPU: start one process per GPU with torchrun; rsl_rl reads ``WORLD_SIZE``/``RANK``/
``LOCAL_RANK``, averages gradients over NCCL and each rank steps its own ``num_envs`` worlds::

    torchrun --nproc_per_node 2 -m karakuri.launch.cli train reach --backend warp \\
        --device cuda --num-envs 4096 --run-dir runs/reach-2gpu

Only rank 0 writes the run directory.  A single-GPU run needs none of this.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from karakuri.policies.normalizer import Normalizer
from karakuri.policies.run_dir import (
    RunDirError,
    TrainConfig,
    checkpoints_dir,
    default_run_dir,
    resume_config,
    write_config,
)
from karakuri.policies.trainers.base import LoadedActor, TrainResult
from karakuri.sim.registry import make_env

ACTIVATION = "elu"


def rsl_config(cfg: TrainConfig, check_for_nan: bool = False) -> dict[str, Any]:
    """rsl_rl runner configuration for ``cfg``: PPO with an asymmetric actor-critic.

    The actor reads the ``policy`` group (robot signals), the critic the ``critic`` group (the
    same plus privileged terms); both normalize their inputs.  Rollouts of
    ``98304 // num_envs`` steps (8 to 32) keep a batch of about 100 k transitions from 4,096 to
    16,384 worlds, so an iteration's four minibatches stay large enough for a GPU.
    """
    return {
        "num_steps_per_env": int(min(32, max(8, 98_304 // cfg.num_envs))),
        "save_interval": 1,  # replaced by train() from checkpoint_every
        "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
        "check_for_nan": check_for_nan,  # the env and the physics raise named errors already
        "logger": "tensorboard",
        "actor": {
            "class_name": "MLPModel",
            "hidden_dims": list(cfg.net),
            "activation": ACTIVATION,
            "obs_normalization": True,
            "distribution_cfg": {
                "class_name": "GaussianDistribution",
                "init_std": 0.5,
                "std_type": "log",
            },
        },
        "critic": {
            "class_name": "MLPModel",
            "hidden_dims": list(cfg.net),
            "activation": ACTIVATION,
            "obs_normalization": True,
        },
        "algorithm": {
            "class_name": "PPO",
            "num_learning_epochs": 8,  # 600 k steps on CPU: 99.5 % (8 epochs), 99.0 % (5)
            "num_mini_batches": 4,
            "clip_param": 0.2,
            "gamma": 0.97,
            "lam": 0.95,
            "value_loss_coef": 1.0,
            "entropy_coef": 0.001,
            "learning_rate": 1e-3,
            "max_grad_norm": 1.0,
            "schedule": "adaptive",
            "desired_kl": 0.01,
            # returns reach ~100 here: a value clipped to move 0.2 per update learns too slowly
            # (reach, cpu backend, 256 worlds, 600 k steps, 5 epochs: 62.5 % clipped, 99.0 % not)
            "use_clipped_value_loss": False,
        },
    }


def _distributed() -> tuple[int, int, int]:
    """(world size, global rank, local rank) from torchrun's environment."""
    return (
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def train(cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Train (or resume) an rsl_rl run into its directory (no final evaluation: the caller's).

    Under torchrun every rank trains; only rank 0 writes the run (the others' result has no
    ``stats``).
    """
    cfg, world, rank = _resolve(cfg, resume)
    run_dir = Path(cfg.run_dir)
    torch.manual_seed(cfg.seed + rank)
    vec, setup_s, compile_s = _warm_env(cfg, rank)
    if rank == 0:  # only once the env is up: a bad device leaves no half-made run behind
        checkpoints_dir(run_dir).mkdir(parents=True, exist_ok=True)
        write_config(cfg, run_dir, resumed=resume is not None)
    rcfg = rsl_config(cfg)
    steps_per_iter = cfg.num_envs * rcfg["num_steps_per_env"] * world
    rcfg["save_interval"] = max(1, cfg.checkpoint_every // steps_per_iter)
    runner = _make_runner(vec, rcfg, run_dir, cfg.device)
    if rank == 0:
        eps = float(runner.alg.get_policy().obs_normalizer.eps)
        (run_dir / "rsl_rl.json").write_text(
            json.dumps({"runner": rcfg, "obs_norm_eps": eps, "activation": ACTIVATION}, indent=2)
        )
    done = 0
    if resume is not None:
        runner.load(str(latest_rsl_checkpoint(run_dir)), map_location=cfg.device)
        done = runner.current_learning_iteration + 1  # rsl_rl stores the last finished one
        runner.current_learning_iteration = done
    total = math.ceil(cfg.total_steps / steps_per_iter)
    train_s = _learn(runner, vec, total - done, cfg.progress)
    vec.close()
    if rank != 0:
        return TrainResult(run_dir)
    runner.save_final(str(run_dir / "model.pt"))
    stats = dict(
        trainer="rsl_rl",
        compile_s=round(compile_s, 2),
        setup_s=round(setup_s, 2),
        train_wall_s=round(train_s, 2),
        env_steps=int(total * steps_per_iter),
        env_steps_per_s=round((total - done) * steps_per_iter / max(train_s, 1e-9)),
        num_envs=cfg.num_envs * world,
        gpus=world,
        device=str(vec.device),
        backend=cfg.backend,
    )
    return TrainResult(run_dir, stats, eval_seed=cfg.eval_seed, eval_episodes=cfg.eval_episodes)


def _resolve(cfg: TrainConfig, resume: str | Path | None) -> tuple[TrainConfig, int, int]:
    """The config to run (a resumed run's own, longer budget), world size and rank."""
    cfg = resume_config(cfg, resume)
    world, rank, local = _distributed()
    if world > 1:
        if not cfg.run_dir:
            raise ValueError("under torchrun pass --run-dir, so every rank writes the same run")
        if not cfg.device.startswith("cuda"):
            raise ValueError(f"multi-GPU training needs --device cuda, got {cfg.device!r}")
        cfg = replace(cfg, device=f"cuda:{local}")
    run_dir = cfg.run_dir or str(default_run_dir(cfg, "rsl_rl"))
    return replace(cfg, run_dir=run_dir), world, rank


def _warm_env(cfg: TrainConfig, rank: int) -> tuple[Any, float, float]:
    """The rsl_rl env after one reset and step: (env, setup s, kernel compile/capture s)."""
    from karakuri.policies.trainers.rsl_env import RslVecEnv

    t0 = time.perf_counter()
    env = make_env(
        cfg.task, cfg.robot or None, num_worlds=cfg.num_envs, backend=cfg.backend,
        device=cfg.device, seed=cfg.seed + rank, randomize=cfg.randomize,
    )  # fmt: skip
    env.task.training = True  # training-only resets (pick_place's curriculum); eval never sets it
    vec = RslVecEnv(env)
    vec.reset()  # the first reset and step compile the warp kernels and capture the graphs
    vec.step(torch.zeros(env.num_worlds, env.action_size, device=env.device))
    vec.reset()
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    return vec, time.perf_counter() - t0, float(getattr(env.physics, "compile_s", 0.0))


def _learn(runner: Any, vec: Any, iterations: int, progress: bool) -> float:
    """Run ``iterations`` PPO iterations; returns their wall time, s (GPU work included)."""
    out = contextlib.nullcontext() if progress else contextlib.redirect_stdout(io.StringIO())
    t0 = time.perf_counter()
    if iterations > 0:
        with out:
            runner.learn(num_learning_iterations=iterations, init_at_random_ep_len=True)
    if vec.device.type == "cuda":
        torch.cuda.synchronize(vec.device)
    train_s = time.perf_counter() - t0
    check = getattr(vec.env.physics, "check", None)
    if check is not None:
        check()  # an overflow in the last step would otherwise go unreported
    return train_s


def _make_runner(vec: Any, rcfg: dict, run_dir: Path, device: str) -> Any:
    """An rsl_rl OnPolicyRunner that logs to RUN_DIR/tb and checkpoints to RUN_DIR/checkpoints."""
    from rsl_rl.runners import OnPolicyRunner

    class Runner(OnPolicyRunner):
        def save(self, path: str, infos: dict | None = None) -> None:
            super().save(str(checkpoints_dir(run_dir) / Path(path).name), infos)

        def save_final(self, path: str) -> None:
            OnPolicyRunner.save(self, path)

    out = io.StringIO()  # rsl_rl prints both networks at construction
    with contextlib.redirect_stdout(out):
        return Runner(vec, json.loads(json.dumps(rcfg)), log_dir=str(run_dir / "tb"), device=device)


def latest_rsl_checkpoint(run_dir: str | Path) -> Path:
    """The newest rsl_rl checkpoint of a run: model.pt, else the last checkpoints/model_<it>.pt."""
    run_dir = Path(run_dir)
    if (run_dir / "model.pt").exists():
        return run_dir / "model.pt"
    ckpts = sorted(
        checkpoints_dir(run_dir).glob("model_*.pt"), key=lambda p: int(p.stem.split("_")[1])
    )
    if not ckpts:
        raise FileNotFoundError(f"{run_dir} has no model.pt and no checkpoints/model_*.pt")
    return ckpts[-1]


class RslNormalize(nn.Module):
    """rsl_rl's frozen observation normalizer: ``(obs - mean) / (std + eps)``.

    Args:
        mean: Shape: (obs_size,).
        std: Shape: (obs_size,).
        eps: Added to ``std``.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float().reshape(-1))
        self.register_buffer("std", std.float().reshape(-1))
        self.eps = float(eps)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Shape: (B, obs_size) -> (B, obs_size)."""
        return (obs - self.mean) / (self.std + self.eps)


class ClampedActor(nn.Module):
    """The actor's mean action clipped to [-1, 1] (the env clips the same way)."""

    def __init__(self, mlp: nn.Sequential) -> None:
        super().__init__()
        self.net = mlp

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Shape: normalized obs (B, obs_size) -> action (B, a)."""
        return torch.clamp(self.net(obs), -1.0, 1.0)


def load_rsl_actor(run_dir: str | Path) -> tuple[RslNormalize, ClampedActor]:
    """The deterministic actor of a run and its observation normalizer, on CPU, without rsl_rl.

    The checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain
    containers, nothing executed.  (``--resume`` goes through rsl_rl's own loader.)

    Raises:
        RunDirError: the checkpoint holds anything else, or no actor.
    """
    run_dir = Path(run_dir)
    meta_path = run_dir / "rsl_rl.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{run_dir} is not an rsl_rl run: rsl_rl.json is missing")
    meta = json.loads(meta_path.read_text())
    ckpt = latest_rsl_checkpoint(run_dir)
    try:  # tensors and plain containers only: a run directory is data, never code
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        actor = state["actor_state_dict"]
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, EOFError) as e:
        raise RunDirError(f"{ckpt} is not an rsl_rl checkpoint of tensors (eval and export load "
                          f"weights only, never pickled objects): {e}") from e
    linear = sorted(
        {int(k.split(".")[1]) for k in actor if k.startswith("mlp.") and k.endswith(".weight")}
    )
    if meta["activation"] != "elu":
        raise ValueError(f"{run_dir}: activation {meta['activation']!r} is not supported here")
    layers: list[nn.Module] = []
    for i in range(linear[-1] + 1):
        if i in linear:
            out_f, in_f = actor[f"mlp.{i}.weight"].shape
            layers.append(nn.Linear(in_f, out_f))
        else:
            layers.append(nn.ELU())
    mlp = nn.Sequential(*layers)
    mlp.load_state_dict({k[len("mlp.") :]: v for k, v in actor.items() if k.startswith("mlp.")})
    norm = RslNormalize(
        actor["obs_normalizer._mean"], actor["obs_normalizer._std"], meta["obs_norm_eps"]
    )
    return norm.eval(), ClampedActor(mlp).eval()


def load_actor(run_dir: str | Path) -> LoadedActor:
    """The deterministic actor of an rsl_rl run (weights only, see :func:`load_rsl_actor`).

    rsl_rl's ``(obs - mean) / (std + eps)`` is :meth:`Normalizer.from_std`.
    """
    norm, actor = load_rsl_actor(run_dir)
    normalizer = Normalizer.from_std(norm.mean.double().numpy(), norm.std.double().numpy(),
                                     norm.eps)
    return LoadedActor(normalizer=normalizer, actor=actor)
