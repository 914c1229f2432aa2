"""``train(cfg)``: run the configured trainer, then evaluate on fixed seeds into ``eval.json``.

The trainer is a registry lookup (:mod:`karakuri.policies.trainers.registry`); a resumed run
keeps the trainer it was started with.  The final evaluation is the same as ``karakuri eval``
on the run directory, plus the trainer's timings and counts.
"""

from __future__ import annotations

from pathlib import Path

from karakuri.policies.evaluate import evaluate_run
from karakuri.policies.run_dir import TrainConfig, load_config, write_eval
from karakuri.policies.trainers.registry import trainer_for


def train(cfg: TrainConfig, resume: str | Path | None = None) -> Path:
    """Train (or resume) a run with its trainer; returns its directory.

    Writes ``RUN_DIR/eval.json`` (``evaluate_run`` on ``eval_episodes`` episodes of
    ``eval_seed``, then the trainer's stats) in the process that writes the run.

    Raises:
        ValueError: an unknown trainer, robot or device (named).
    """
    trainer = trainer_for(load_config(resume) if resume is not None else cfg)
    out = trainer.train(cfg, resume=resume)
    if out.stats is None:  # a torchrun rank other than 0
        return out.run_dir
    result = evaluate_run(out.run_dir, episodes=out.eval_episodes, seed=out.eval_seed)
    result.update(out.stats)
    write_eval(out.run_dir, result)
    return out.run_dir
