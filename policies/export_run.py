"""``karakuri export RUN_DIR``: a training run to one policy file.

The task's observation terms, the run's normalizer, the deterministic actor and the task's
action map are composed by :func:`karakuri.policies.export.build_policy_module`, from the
env's own assembler and action head: evaluation runs this same module, so the file computes
what was evaluated by construction.  States recorded by rolling the module out in sim feed the
exporter's onnxruntime-vs-torch gate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from karakuri.policies import export as ex
from karakuri.policies.export_graph import module_act
from karakuri.policies.provenance import run_provenance
from karakuri.policies.run_dir import load_config
from karakuri.policies.trainers.registry import trainer_of
from karakuri.sim.env import BatchedEnv
from karakuri.sim.registry import make_env


def policy_module_for(
    env: BatchedEnv, normalizer: ex.Normalizer | None, actor: torch.nn.Module
) -> ex.PolicyModule:
    """Compose the policy-file module for ``env``'s task from a normalizer and an actor.

    The task's own terms and action map (one type system): see :func:`ex.policy_module_for`.
    """
    return ex.policy_module_for(env, normalizer, actor)


def record_states(env: BatchedEnv, act, steps: int | None = None) -> dict[str, np.ndarray]:
    """Robot signals seen while ``act`` drives every world of ``env``, stacked.

    Returns:
        ``{signal: (worlds * steps, k)}`` float32.
    """
    env.reset()
    out: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for _ in range(steps or env.task.episode_steps):
            sig = {k: v for k, v in env.raw_signals().items() if k in env.robot_signals}
            for k, v in sig.items():
                out.setdefault(k, []).append(v.cpu().numpy().astype(np.float32))
            env.step(act(sig))
    return {k: np.concatenate(v) for k, v in out.items()}


def run_policy_module(run_dir: str | Path, env: BatchedEnv) -> ex.PolicyModule:
    """The policy-file module of a training run for ``env``'s task (what gets exported).

    The run's trainer (a registry lookup) loads its actor from plain data.
    """
    loaded = trainer_of(run_dir).load_actor(run_dir).check_obs_size(run_dir, env.obs_size)
    return policy_module_for(env, loaded.normalizer, loaded.actor)


def export_run(
    run_dir: str | Path, out: str | Path, atol: float | None = None, worlds: int = 32
) -> ex.ExportReport:
    """Export a run's latest policy to ``out`` (see module docstring).

    ``atol`` is the onnxruntime-vs-torch gate (default: ``export.EXPORT_ATOL``).
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    env = make_env(
        cfg.task, cfg.robot or None, num_worlds=worlds, seed=cfg.eval_seed, randomize=False
    )
    try:
        # Evaluation runs this very module (module_act), so the recorded states are what the
        # evaluated policy saw; no second path to reconcile with the simulation's.
        module = run_policy_module(run_dir, env)
        states = record_states(env, module_act(module))
        meta = ex.make_metadata(
            module,
            env.robot,
            task=cfg.task,
            run_id=run_dir.name,
            control_rate_hz=1.0 / env.task.ctrl_dt,
            provenance=run_provenance(run_dir),
        )
        atol = ex.EXPORT_ATOL if atol is None else atol
        return ex.export_policy(module, out, meta, recorded=states, atol=atol)
    finally:
        env.close()
