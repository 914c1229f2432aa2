"""``karakuri bench sim``: env steps/s of the batched backend next to a subprocess baseline.

The baseline is the usual way to parallelize a MuJoCo gymnasium env: a lean single-world
env (numpy, ``mj_step`` in a Python loop, no torch) in SB3's ``SubprocVecEnv``, one process
per env, stepping the same compiled model with the same number of physics steps per control
step.  Both sides are measured in the same run on the same machine; the ratio is printed.

With ``--backend warp`` (e.g. ``--device cuda --worlds 1024 4096 16384 32768``) each world
count also gets the physics alone (the captured decimated step, no task or torch work), the
time its first reset and step spent compiling kernels and capturing graphs, and the cpu backend
at ``--baseline-worlds`` on the same machine as a second baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np


@dataclass(frozen=True)
class SimBenchConfig:
    """Simulation benchmark settings.

    Attributes:
        task: Task to step.
        robot: Robot (the task's default when empty).
        backend: Physics backend of the batched env (``cpu`` or ``warp``).
        device: Torch device of the batched env.
        worlds: World counts of the batched env.
        subproc_envs: Process counts of the SubprocVecEnv baseline.
        steps: Control steps timed per measurement (after a warm-up).
        repeats: Measurements per configuration (the median is reported).
        baseline_worlds: World counts of the cpu-backend baseline (with ``--backend warp``).
    """

    task: str = "reach"
    robot: str = ""
    backend: str = "cpu"
    device: str = "cpu"
    worlds: tuple[int, ...] = (64, 256, 1024)
    subproc_envs: tuple[int, ...] = (2, 16)
    steps: int = 100
    repeats: int = 3
    baseline_worlds: tuple[int, ...] = (256, 1024)


def register(kinds: argparse._SubParsersAction) -> None:
    """Add ``bench sim``."""
    from karakuri.launch.cli_config import add_dataclass_args

    p = kinds.add_parser("sim", help="batched env steps/s vs gymnasium + SubprocVecEnv")
    add_dataclass_args(p, SimBenchConfig)
    p.set_defaults(func=_run)


def bench_batched(
    cfg: SimBenchConfig, worlds: int, backend: str | None = None, device: str | None = None
) -> tuple[float, float]:
    """Median env steps/s (and physics steps/s) of the batched env with random actions."""
    env_rate, phys, _, _ = _bench_batched(cfg, worlds, backend or cfg.backend, device or cfg.device)
    return env_rate, phys


def _bench_batched(
    cfg: SimBenchConfig, worlds: int, backend: str, device: str
) -> tuple[float, float, float, float]:
    """(env steps/s, physics steps/s within them, physics steps/s alone, compile s); medians."""
    import torch

    from karakuri.sim.registry import make_env

    env = make_env(
        cfg.task,
        cfg.robot or None,
        num_worlds=worlds,
        backend=backend,
        device=device,
        randomize=False,
    )
    env.reset()
    g = torch.Generator(device=env.device).manual_seed(0)

    def action() -> torch.Tensor:
        return torch.rand(worlds, env.action_size, generator=g, device=env.device) * 2 - 1

    for _ in range(10):
        env.step(action())
    rates = []
    for _ in range(cfg.repeats):
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(cfg.steps):
            env.step(action())
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(worlds * cfg.steps / (time.perf_counter() - t0))
    n_sub = env.n_substeps
    alone = []
    for _ in range(cfg.repeats):  # the same physics without the task: controls held
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(cfg.steps):
            env.physics.step(n_sub)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        alone.append(worlds * n_sub * cfg.steps / (time.perf_counter() - t0))
    compile_s = float(getattr(env.physics, "compile_s", 0.0))
    env.close()
    med = statistics.median(rates)
    return med, med * n_sub, statistics.median(alone), compile_s


class _NumpyEnv(gym.Env):
    """A lean single-world gymnasium env over the task's compiled model (the baseline)."""

    def __init__(
        self,
        xml: str,
        n_substeps: int,
        ctrl_idx: list[int],
        qpos_idx: list[int],
        scale: float,
        episode_steps: int,
    ) -> None:
        self.m = mujoco.MjModel.from_xml_string(xml)
        self.d = mujoco.MjData(self.m)
        self.n_sub, self.ctrl_idx, self.qpos_idx = n_substeps, ctrl_idx, qpos_idx
        self.scale, self.episode_steps, self.t = scale, episode_steps, 0
        self.rng = np.random.default_rng(0)
        n_obs = 2 * len(qpos_idx) + 3
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (len(ctrl_idx) - 1,), np.float32)
        self.target = np.zeros(3)

    def _obs(self) -> np.ndarray:
        q = self.d.qpos[self.qpos_idx]
        dq = self.d.qvel[self.qpos_idx]
        return np.concatenate([q, dq, self.target]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        """Home pose, new target."""
        mujoco.mj_resetData(self.m, self.d)
        mujoco.mj_forward(self.m, self.d)
        self.target = self.rng.uniform([0.3, -0.1, 0.15], [0.6, 0.4, 0.45])
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple:
        """Delta joint targets, ``n_sub`` physics steps, distance reward."""
        q = self.d.qpos[self.qpos_idx]
        self.d.ctrl[self.ctrl_idx[:-1]] = q[:-1] + self.scale * np.clip(action, -1, 1)
        for _ in range(self.n_sub):
            mujoco.mj_step(self.m, self.d)
        self.t += 1
        tool = self.d.sensordata[:3]
        reward = -float(np.linalg.norm(self.target - tool))
        return self._obs(), reward, False, self.t >= self.episode_steps, {}

    def close(self) -> None:
        """Nothing to release."""


def bench_subproc(cfg: SimBenchConfig, n_envs: int) -> float:
    """Median env steps/s of the numpy env in SB3's SubprocVecEnv with ``n_envs`` processes."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from karakuri.sim.env import build_spec
    from karakuri.sim.registry import make_env

    ref = make_env(cfg.task, cfg.robot or None, num_worlds=1, randomize=False)
    spec = build_spec(ref.robot, ref.task)
    spec.compile()
    xml = spec.to_xml()
    args = (
        xml,
        ref.n_substeps,
        ref.ctrl_idx.tolist(),
        ref.qpos_idx.tolist(),
        float(ref.action_map.scale[0]),
        ref.task.episode_steps,
    )
    ref.close()
    venv = SubprocVecEnv([lambda: _NumpyEnv(*args) for _ in range(n_envs)], start_method="fork")
    venv.reset()
    rng = np.random.default_rng(0)
    a = lambda: rng.uniform(-1, 1, (n_envs, venv.action_space.shape[0])).astype(np.float32)  # noqa: E731
    for _ in range(10):
        venv.step(a())
    rates = []
    steps = max(20, cfg.steps * 4 // max(1, n_envs // 4))
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            venv.step(a())
        rates.append(n_envs * steps / (time.perf_counter() - t0))
    venv.close()
    return statistics.median(rates)


def _run(args: argparse.Namespace) -> int:
    from karakuri.launch.cli_config import dataclass_from_args

    cfg = dataclass_from_args(SimBenchConfig, args)
    print(f"task {cfg.task}, backend {cfg.backend} on {cfg.device}; medians of {cfg.repeats} runs")
    if cfg.backend == "warp":
        return _run_warp(cfg)
    print(f"{'configuration':<40}{'env steps/s':>14}{'physics steps/s':>18}")
    best = 0.0
    for n in cfg.worlds:
        env_rate, phys = bench_batched(cfg, n)
        best = max(best, env_rate)
        print(f"{f'karakuri batched, {n} worlds':<40}{env_rate:>14,.0f}{phys:>18,.0f}")
    base = _print_subproc(cfg)
    print(f"ratio (best batched / best SubprocVecEnv): {best / base:.1f}x")
    return 0


def _print_subproc(cfg: SimBenchConfig) -> float:
    base = 0.0
    for n in cfg.subproc_envs:
        rate = bench_subproc(cfg, n)
        base = max(base, rate)
        print(f"{f'gymnasium + SubprocVecEnv, {n} procs':<40}{rate:>14,.0f}")
    return base


def _run_warp(cfg: SimBenchConfig) -> int:
    """Warp rows with physics alone and compile time, then the cpu backend and subprocesses."""
    head = f"{'configuration':<34}{'env steps/s':>13}{'physics/s':>13}{'alone/s':>13}"
    print(f"{head}{'compile s':>11}")
    best_env = best_phys = 0.0
    for n in cfg.worlds:
        env_rate, phys, alone, comp = _bench_batched(cfg, n, "warp", cfg.device)
        best_env, best_phys = max(best_env, env_rate), max(best_phys, alone)
        row = f"{f'warp, {n} worlds':<34}{env_rate:>13,.0f}{phys:>13,.0f}{alone:>13,.0f}"
        print(f"{row}{comp:>11.1f}")
    cpu_env = cpu_phys = 0.0
    for n in cfg.baseline_worlds:
        env_rate, phys, alone, _ = _bench_batched(cfg, n, "cpu", "cpu")
        cpu_env, cpu_phys = max(cpu_env, env_rate), max(cpu_phys, alone)
        print(f"{f'cpu backend, {n} worlds':<34}{env_rate:>13,.0f}{phys:>13,.0f}{alone:>13,.0f}")
    base = _print_subproc(cfg)
    print(
        f"ratio (best warp / best cpu backend): {best_env / cpu_env:.1f}x env steps/s, "
        f"{best_phys / cpu_phys:.1f}x physics alone"
    )
    print(f"ratio (best warp / best SubprocVecEnv): {best_env / base:.1f}x")
    return 0
