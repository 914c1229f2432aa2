"""DAgger: distil a task's scripted teacher into a policy that reads only its policy observations.

The teacher (:mod:`karakuri.sim.teachers`) reads the simulator's true state; the student is
the same kind of deterministic actor the RL trainers export (an MLP on the normalized policy
observation, actions clamped to [-1, 1]).  Each iteration (Ross et al. 2011, "A Reduction of
Imitation Learning and Structured Prediction to No-Regret Online Learning"):

1. roll out every world for ``rollout_steps`` ticks, each world's action being the teacher's
   with probability ``beta`` and the student's otherwise (``beta`` = 1 in the first
   iteration, then ``beta_decay`` times the last), and label every visited state with the
   teacher's action;
2. add the pairs to a buffer (the oldest dropped past ``buffer_size``), refit the
   observation normalizer on it, and fit the student to the teacher's actions (mean squared
   error, Adam).

So the student learns to recover from its own mistakes, which plain behaviour cloning never
shows it.  The run directory holds ``actor.npz``/``actor.json`` (the plain format of
:func:`karakuri.policies.sb3_actor.write_actor`), checkpoints as
``checkpoints/actor_<steps>_steps.*`` and ``train_log.jsonl`` (one line per iteration: the
stage funnel and success of the episodes that ended, ``beta``, the fit's loss), the same
numbers in TensorBoard (``tb_1/``: ``funnel/<stage>``, ``dagger/success``, ...).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from karakuri.policies.normalizer import Normalizer
from karakuri.policies.run_dir import (
    TrainConfig,
    checkpoints_dir,
    default_run_dir,
    write_config,
)
from karakuri.policies.sb3_actor import Clamp, write_actor
from karakuri.policies.sb3_actor import load_actor as load_plain_actor
from karakuri.policies.trainers.base import LoadedActor, TrainResult
from karakuri.sim.registry import make_env
from karakuri.sim.teachers import teacher_for


@dataclass(frozen=True)
class DaggerParams:
    """The DAgger loop's settings (module docstring).

    Attributes:
        rollout_steps: Ticks per iteration and world (0: one episode).
        beta_decay: ``beta`` of iteration ``i`` is ``beta_decay ** i``.
        buffer_size: Most (observation, teacher action) pairs kept.
        updates: Gradient steps per iteration.
        batch_size: Pairs per gradient step.
        lr: Adam's learning rate.
    """

    rollout_steps: int = 0
    beta_decay: float = 0.5
    buffer_size: int = 3_000_000
    updates: int = 600
    batch_size: int = 4096
    lr: float = 1e-3


class Buffer:
    """A ring of (policy observation, teacher action) pairs, float32."""

    def __init__(self, size: int, obs: int, act: int) -> None:
        self.obs = torch.zeros(size, obs)
        self.act = torch.zeros(size, act)
        self.n = self.head = 0

    def add(self, obs: torch.Tensor, act: torch.Tensor) -> None:
        """Append a batch (B, obs) and (B, act), overwriting the oldest past the size."""
        size, b = self.obs.shape[0], obs.shape[0]
        idx = (self.head + torch.arange(b)) % size
        self.obs[idx], self.act[idx] = obs.float().cpu(), act.float().cpu()
        self.head, self.n = (self.head + b) % size, min(self.n + b, size)

    def normalizer(self) -> Normalizer:
        """The normalizer of the observations held (mean and variance per column)."""
        x = self.obs[: self.n].double()
        return Normalizer(mean=x.mean(0).numpy(), var=x.var(0, unbiased=False).numpy())


def student(obs_size: int, act_size: int, net: tuple[int, ...]) -> nn.Sequential:
    """The student actor: linear/ELU layers of widths ``net``, then a clamp to [-1, 1]."""
    layers: list[nn.Module] = []
    width = obs_size
    for w in net:
        layers += [nn.Linear(width, w), nn.ELU()]
        width = w
    return nn.Sequential(*layers, nn.Linear(width, act_size), Clamp())


def _fit(actor: nn.Module, opt: torch.optim.Optimizer, buf: Buffer, norm: nn.Module,
         p: DaggerParams, gen: torch.Generator) -> float:
    """``p.updates`` Adam steps on random minibatches; the mean loss of the last tenth."""
    losses = []
    for _ in range(p.updates):
        idx = torch.randint(0, buf.n, (min(p.batch_size, buf.n),), generator=gen)
        # the student's pre-clamp output, so actions the teacher saturates still give gradient
        out = actor[:-1](norm(buf.obs[idx]))
        loss = torch.mean((out - buf.act[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses[-max(1, p.updates // 10):]))


def train(cfg: TrainConfig, resume: str | Path | None = None,
          params: DaggerParams | None = None) -> TrainResult:
    """Distil the task's teacher into a run directory (no final evaluation: the caller's).

    Raises:
        ValueError: the task has no teacher, or a resume was asked for (named).
    """
    if resume is not None:
        raise ValueError("a dagger run cannot be resumed: start a new run (it needs its "
                         "teacher's buffer, which is not saved)")
    p = params or DaggerParams()
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg, "dagger")
    cfg = replace(cfg, run_dir=str(run_dir))
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # small nets; torch's workers would steal the physics' cores
    env = make_env(cfg.task, cfg.robot or None, num_worlds=cfg.num_envs, backend=cfg.backend,
                   device=cfg.device, seed=cfg.seed, randomize=cfg.randomize)
    teacher = teacher_for(env)  # first: a task without one leaves no half-made run behind
    checkpoints_dir(run_dir).mkdir(parents=True, exist_ok=True)
    write_config(cfg, run_dir, resumed=False)
    gen = torch.Generator().manual_seed(cfg.seed)
    actor = student(env.obs_size, env.action_size, cfg.net)
    opt = torch.optim.Adam(actor.parameters(), lr=p.lr)
    buf = Buffer(p.buffer_size, env.obs_size, env.action_size)
    norm = Normalizer(mean=np.zeros(env.obs_size), var=np.ones(env.obs_size))
    horizon = p.rollout_steps or env.task.episode_steps
    log_path = run_dir / "train_log.jsonl"
    from torch.utils.tensorboard import SummaryWriter  # beside the RL trainers' logs

    writer = SummaryWriter(str(run_dir / "tb_1"))
    steps, it, next_ckpt, t0 = 0, 0, cfg.checkpoint_every, time.perf_counter()
    obs = env.reset()["policy"]
    while steps < cfg.total_steps:
        beta = p.beta_decay ** it
        stats = _rollout(env, teacher, actor, norm.module(), buf, obs, horizon, beta, gen)
        obs = stats.pop("obs")
        steps += horizon * env.num_worlds
        norm = buf.normalizer()
        loss = _fit(actor, opt, buf, norm.module(), p, gen)
        row = {"iteration": it, "env_steps": steps, "wall_s": round(time.perf_counter() - t0, 1),
               "beta": round(beta, 4), "loss": round(loss, 5), "buffer": buf.n, **stats}
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k not in ("iteration", "env_steps"):
                writer.add_scalar(k if "/" in k else f"dagger/{k}", v, steps)
        writer.flush()
        if cfg.progress:
            funnel = " ".join(f"{k[7:]} {v:.0%}" for k, v in stats.items()
                              if k.startswith("funnel/"))
            print(f"dagger {it}: {steps:,} steps, {row['wall_s']:.0f} s, beta {beta:.3f}, "
                  f"loss {loss:.4f}; ended episodes: success {stats.get('success', 0):.0%}; "
                  f"{funnel}", flush=True)
        if steps >= next_ckpt:
            write_actor(actor, norm, checkpoints_dir(run_dir) / f"actor_{steps}_steps",
                        steps)
            next_ckpt += cfg.checkpoint_every
        it += 1
    write_actor(actor, norm, run_dir / "actor", steps)
    writer.close()
    env.close()
    stats = {"train_wall_s": round(time.perf_counter() - t0, 2), "env_steps": int(steps),
             "dagger_iterations": it}
    return TrainResult(run_dir, stats, eval_seed=cfg.eval_seed, eval_episodes=cfg.eval_episodes)


def _rollout(env: Any, teacher: Any, actor: nn.Module, norm: nn.Module, buf: Buffer,
             obs: torch.Tensor, horizon: int, beta: float,
             gen: torch.Generator) -> dict[str, Any]:
    """Roll out ``horizon`` ticks of every world, labelling each state with the teacher's action.

    Each world's action is the teacher's with probability ``beta``, else the student's.
    Returns the ended episodes' mean success and funnel, and the last observation (``obs``).
    """
    ended: dict[str, list[torch.Tensor]] = {}
    for _ in range(horizon):
        label = teacher.act()
        with torch.no_grad():
            mine = actor(norm(obs.float().cpu())).to(label.device)
        use_teacher = torch.rand(env.num_worlds, generator=gen) < beta
        buf.add(obs, label)
        out, _, term, trunc, info = env.step(torch.where(use_teacher[:, None].to(label.device),
                                                         label, mine))
        obs = out["policy"]
        if bool((term | trunc).any()):
            for k, v in info["episode"].items():
                if k == "success" or k.startswith("funnel/"):
                    ended.setdefault(k, []).append(v.float().cpu())
    stats: dict[str, Any] = {k: round(float(torch.cat(v).mean()), 4) for k, v in ended.items()}
    stats["obs"] = obs
    return stats


def load_actor(run_dir: str | Path) -> LoadedActor:
    """The student of a dagger run, from ``actor.npz``/``actor.json`` only.

    Raises:
        RunDirError: the files are missing or malformed (named).
    """
    norm, actor = load_plain_actor(run_dir)
    return LoadedActor(normalizer=norm, actor=actor)
