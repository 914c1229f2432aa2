"""Evaluation on fixed seeds: every world runs one full episode with deterministic actions.

``act`` maps the robot signals (exactly what a real robot provides) to raw actions, so the
same evaluation serves an SB3 checkpoint, an rsl_rl run and an exported ``policy.onnx``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from karakuri.policies.export_graph import module_act, policy_module_for
from karakuri.policies.run_dir import EVAL_EPISODES, EVAL_SEED, load_config
from karakuri.policies.trainers.registry import trainer_of
from karakuri.sim.env import BatchedEnv
from karakuri.sim.registry import make_env

ActFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def evaluate(env: BatchedEnv, act: ActFn, commands: torch.Tensor | None = None) -> dict[str, Any]:
    """Run one episode in every world of ``env``; return success rate and metrics.

    Args:
        env: One world per episode.
        act: Robot signals -> raw action.
        commands: Fixed commands (e.g. the targets a deployment used), shape (N, k), instead
            of the task's sampled ones.

    Returns:
        ``{"episodes", "success_rate", "mean_return", "<metric>_mean", ...}``, and for a task
        with stages ``"funnel"``: ``{"episodes", "count": {stage: n}, "fraction": {stage: f}}``
        in the task's stage order (see :func:`funnel_table`).
    """
    env.reset()
    if commands is not None:
        env.task.set_command(commands)
    done_once = torch.zeros(env.num_worlds, dtype=torch.bool)
    results: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for _ in range(env.task.episode_steps):
            sig = {k: v for k, v in env.raw_signals().items() if k in env.robot_signals}
            _, _, _, _, info = env.step(act(sig))
            if "episode" not in info:
                continue
            mask = info["done_mask"].cpu()
            first = mask & ~done_once
            ep = info["episode"]
            for k, v in ep.items():
                buf = results.setdefault(k, torch.full((env.num_worlds,), float("nan")))
                buf[first] = v.cpu().float()[first[mask]]
            done_once |= mask
    out: dict[str, Any] = {
        "episodes": int(done_once.sum()),
        "success_rate": float(results["success"].nanmean()),
        "mean_return": float(results["return"].nanmean()),
    }
    for k, v in results.items():
        if k not in ("success", "return", "length") and not k.startswith(("reward/", "funnel/")):
            out[f"{k}_mean"] = float(v.nanmean())
            out[f"{k}_max"] = float(v[~v.isnan()].max()) if (~v.isnan()).any() else float("nan")
    if env.task.stages:
        out["funnel"] = _funnel(results, env.task.stages, out["episodes"])
    return out


def _funnel(results: dict[str, torch.Tensor], stages: tuple[str, ...], n: int) -> dict[str, Any]:
    """Episodes that reached each stage (in order), as counts and fractions of ``n``."""
    count = {s: int((results[f"funnel/{s}"] > 0.5).sum()) for s in stages}
    return {"episodes": n, "count": count,
            "fraction": {s: c / n if n else float("nan") for s, c in count.items()}}


def funnel_table(result: dict[str, Any], width: int = 20) -> str:
    """The evaluation's stage funnel as a compact text table (empty without a funnel).

    One line per stage: its name, the episodes that reached it, the percentage and a bar of
    ``width`` characters; then the success rate for comparison.
    """
    funnel = result.get("funnel")
    if not funnel:
        return ""
    n = funnel["episodes"]
    name_w = max(len(s) for s in [*funnel["count"], "success"])
    lines = [f"stage funnel ({n} episodes):"]
    rows = [(s, c, funnel["fraction"][s]) for s, c in funnel["count"].items()]
    rows.append(("success", round(result["success_rate"] * n), result["success_rate"]))
    for stage, c, f in rows:
        bar = "#" * round(width * f) if f == f else ""  # f != f: NaN
        lines.append(f"  {stage:<{name_w}} {c:>5} {100 * f:6.1f} %  {bar}".rstrip())
    return "\n".join(lines)


def run_pipeline(run_dir: str | Path, env: BatchedEnv) -> ActFn:
    """The act function of a training run for ``env``'s task (plain data, no pickle).

    The run's trainer (a registry lookup) loads its actor; the actor must read the task's
    policy observation.  Evaluation runs the policy-file module itself
    (:func:`~karakuri.policies.export_graph.policy_module_for`, the one ``karakuri export``
    traces), so the evaluated policy and the exported file are the same computation.

    Raises:
        RunDirError: the run's actor files are missing or malformed, or read another size.
    """
    loaded = trainer_of(run_dir).load_actor(run_dir).check_obs_size(run_dir, env.obs_size)
    return module_act(policy_module_for(env, loaded.normalizer, loaded.actor))


def evaluate_run(
    run_dir: str | Path, episodes: int = EVAL_EPISODES, seed: int = EVAL_SEED
) -> dict[str, Any]:
    """Evaluate a training run's latest policy on ``episodes`` fixed-seed episodes."""
    return evaluate_source(run_dir, episodes=episodes, seed=seed)


def onnx_act(path: str | Path, env: BatchedEnv) -> ActFn:
    """An act function running a policy file through the edge runtime (:class:`OnnxPolicy`).

    It returns the file's ``action`` output: the env applies the action map itself, and the
    file's ``joint_target`` is held to the same map by the export's checks.
    """
    from karakuri.policies.onnx_policy import OnnxPolicy

    policy = OnnxPolicy(path, expected_spec=env.robot, rate_hz=1.0 / env.task.ctrl_dt)

    def act(signals: dict[str, torch.Tensor]) -> torch.Tensor:
        policy.act({k: v.detach().cpu().numpy() for k, v in signals.items()})
        return torch.from_numpy(policy.last_outputs()["action"].copy())

    return act


def pipeline_for(source: str | Path, env: BatchedEnv) -> ActFn:
    """The act function of a run directory or of a ``policy.onnx``."""
    source = Path(source)
    if source.suffix == ".onnx":
        return onnx_act(source, env)
    return run_pipeline(source, env)


def task_of(source: str | Path) -> tuple[str, str]:
    """(task, robot) of a run directory or a policy file (from its metadata)."""
    source = Path(source)
    if source.suffix == ".onnx":
        from karakuri.policies.onnx_policy import OnnxPolicy

        meta = OnnxPolicy(source).metadata
        if not meta.task:
            raise ValueError(f"{source} names no task; was it written by karakuri export?")
        return meta.task, meta.robot_name
    cfg = load_config(source)
    return cfg.task, cfg.robot


def evaluate_source(
    source: str | Path,
    episodes: int = EVAL_EPISODES,
    seed: int = EVAL_SEED,
    commands: torch.Tensor | None = None,
    robot: str = "",
    randomize: bool = False,
) -> dict[str, Any]:
    """Evaluate a run directory or a policy file on fixed seeds (or on given commands).

    ``robot`` (a name or sidecar path) replaces the robot the source names; ``randomize``
    evaluates with the task's domain randomization (``randomize: true`` in the result).
    """
    task, stored = task_of(source)
    robot = robot or stored
    n = episodes if commands is None else commands.shape[0]
    env = make_env(task, robot or None, num_worlds=n, seed=seed, randomize=randomize)
    try:
        result = evaluate(env, pipeline_for(source, env), commands=commands)
    finally:
        env.close()
    result.update(task=task, seed=seed, source=str(source))
    if randomize:
        result["randomize"] = True
    return result


def record_video(
    source: str | Path, out: str | Path, episodes: int = 3, seed: int = EVAL_SEED, robot: str = ""
) -> Path:
    """Render ``episodes`` episodes of world 0 to an mp4 (the ``overview`` camera if any)."""
    from karakuri.sim.render import render_world, write_video

    task, stored = task_of(source)
    robot = robot or stored
    env = make_env(task, robot or None, num_worlds=1, seed=seed, randomize=False)
    act = pipeline_for(source, env)
    names = {env.model.camera(i).name for i in range(env.model.ncam)}
    camera = "overview" if "overview" in names else -1  # a user's model may have none
    frames, renderer = [], None
    try:
        env.reset()
        with torch.no_grad():
            for _ in range(episodes * env.task.episode_steps):
                frame, renderer = render_world(env, 0, renderer, camera=camera)
                frames.append(frame)
                sig = {k: v for k, v in env.raw_signals().items() if k in env.robot_signals}
                env.step(act(sig))
    finally:
        if renderer is not None:
            renderer.close()
        env.close()
    return write_video(frames, out, fps=round(1 / env.task.ctrl_dt))
