"""A training run's config and directory: what every trainer writes and eval/export read.

A run directory holds, whatever the trainer::

    RUN_DIR/config.json     the TrainConfig, the code version and the provenance record
    RUN_DIR/eval.json       the final evaluation on fixed seeds, and the training timings
    RUN_DIR/checkpoints/    periodic checkpoints (the trainer's own format)
    RUN_DIR/tb/ (or tb_1/)  TensorBoard logs

and the trainer's own files (``actor.npz``/``actor.json`` for SB3, ``model.pt`` and
``rsl_rl.json`` for rsl_rl: see :mod:`karakuri.policies.trainers`).  Which trainer wrote a run
is its config's :attr:`TrainConfig.resolved_trainer`.

No trainer library, no torch: the launch layer and the trainer registry read configs through
this module without importing what trained them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, get_args

from karakuri.sim.teachers import TEACHERS

#: Seed of the fixed-seed evaluation (training's final eval, ``karakuri eval``, the video).
EVAL_SEED = 12345
#: Episodes of the fixed-seed evaluation.
EVAL_EPISODES = 200

Algo = Literal["ppo", "sac"]
Backend = Literal["cpu", "warp"]


class RunDirError(ValueError):
    """A run directory lacks the plain weight files eval and export read, or they are malformed.

    The message names the file and how to fix it.
    """


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Attributes:
        task: Registered task name.
        robot: Robot name or sidecar path (the task's default when empty).
        algo: ``ppo`` or ``sac``.
        num_envs: Worlds stepped together.
        total_steps: Environment steps (summed over worlds) to train for.
        seed: Seeds the env, the network init and the sampling.
        run_dir: Where the run is written (default: runs/<task>-<algo>-<time>).
        checkpoint_every: Save a checkpoint every this many env steps.
        eval_episodes: Episodes of the final evaluation (fixed seeds).
        eval_seed: Seed of the final evaluation's episodes.
        randomize: Domain randomization during training.
        net: Hidden layer widths of the actor and critic.
        progress: Show a progress bar.
        backend: Physics backend: ``cpu`` (C MuJoCo on all cores) or ``warp`` (MuJoCo Warp).
        device: Torch device of the env and the learner (``cpu`` or ``cuda``).
        trainer: A registered trainer (``sb3``: Stable-Baselines3, CPU; ``rsl_rl``;
            ``dagger``: distils the task's scripted teacher); ``auto`` picks rsl_rl for the
            warp backend, else dagger for a task with a teacher
            (:data:`karakuri.sim.teachers.TEACHERS`), else sb3.
    """

    task: str = "reach"
    robot: str = ""
    algo: Algo = "ppo"
    num_envs: int = 256
    total_steps: int = 500_000
    seed: int = 0
    run_dir: str = ""
    checkpoint_every: int = 200_000
    eval_episodes: int = EVAL_EPISODES
    eval_seed: int = EVAL_SEED
    randomize: bool = False
    net: tuple[int, ...] = (128, 128)
    progress: bool = True
    backend: Backend = "cpu"
    device: str = "cpu"
    trainer: str = "auto"

    def __post_init__(self) -> None:
        for name, kind in (("algo", Algo), ("backend", Backend)):
            if getattr(self, name) not in get_args(kind):
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid: "
                                 f"{sorted(get_args(kind))}")
        for k in ("num_envs", "total_steps", "checkpoint_every", "eval_episodes"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not self.net or any(int(w) < 1 for w in self.net):
            raise ValueError(f"net must be one or more hidden layer widths >= 1 (e.g. --net 128 "
                             f"128), got {list(self.net)}")

    @property
    def resolved_trainer(self) -> str:
        """The trainer that will run: ``auto`` resolved by backend (checked by the registry)."""
        if self.trainer != "auto":
            return self.trainer
        if self.backend == "warp":
            return "rsl_rl"
        return "dagger" if self.task in TEACHERS else "sb3"


def default_run_dir(cfg: TrainConfig, name: str | None = None) -> Path:
    """``runs/<task>-<name>-<YYYYmmdd-HHMMSS>``; ``name`` defaults to the config's algo."""
    return Path("runs") / f"{cfg.task}-{name or cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}"


def config_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/config.json``."""
    return Path(run_dir) / "config.json"


def eval_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/eval.json``."""
    return Path(run_dir) / "eval.json"


def checkpoints_dir(run_dir: str | Path) -> Path:
    """``RUN_DIR/checkpoints``."""
    return Path(run_dir) / "checkpoints"


def load_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig a run was started with.

    Raises:
        FileNotFoundError: ``RUN_DIR/config.json`` is missing.
    """
    path = config_path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a training run: {path.name} is missing")
    data = json.loads(path.read_text())["config"]
    data["net"] = tuple(data["net"])
    return TrainConfig(**data)


def resume_config(cfg: TrainConfig, resume: str | Path | None) -> TrainConfig:
    """The config to run: ``cfg``, or a resumed run's own config with the longer step budget.

    A resumed run keeps everything it was started with except ``total_steps`` (the larger of
    the two) and ``progress`` (this invocation's); its ``run_dir`` is ``resume``.
    """
    if resume is None:
        return cfg
    prev = load_config(resume)
    return replace(prev, total_steps=max(cfg.total_steps, prev.total_steps),
                   run_dir=str(resume), progress=cfg.progress)


def write_config(cfg: TrainConfig, run_dir: str | Path, resumed: bool = False) -> None:
    """Write ``RUN_DIR/config.json``: the config, the code version and the provenance record.

    The provenance record is taken before the file is rewritten, so a resumed run records the
    hash of the run it continued.
    """
    from karakuri.policies.provenance import training_record
    from karakuri.policies.version import code_version

    prov = training_record(run_dir, resumed)
    config_path(run_dir).write_text(json.dumps(
        {"config": asdict(cfg), "code_version": code_version(), "provenance": prov}, indent=2))


def write_eval(run_dir: str | Path, result: dict) -> None:
    """Write ``RUN_DIR/eval.json``."""
    eval_path(run_dir).write_text(json.dumps(result, indent=2))
