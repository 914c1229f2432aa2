"""The trainer contract: what the registry, evaluation and export need from a trainer module.

A trainer module (``sb3.py``, ``rsl.py``) trains a :class:`~karakuri.policies.run_dir.TrainConfig`
into a run directory and loads the run's deterministic actor back from plain data (nothing in
a run directory is unpickled or executed by eval or export).  Evaluation composes the loaded
actor with the task's observation assembler; export composes it into the policy file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from karakuri.policies.run_dir import RunDirError, TrainConfig

if TYPE_CHECKING:  # the registry imports this module: no torch until a trainer is chosen
    from torch import nn

    from karakuri.policies.normalizer import Normalizer


@dataclass(frozen=True)
class LoadedActor:
    """A run's deterministic actor and its policy-observation normalizer.

    Evaluation and export compose both with the task's terms and action map into the one
    policy module (:func:`karakuri.policies.export_graph.policy_module_for`).

    Attributes:
        normalizer: The observation normalizer, converted from the trainer's own form
            (:class:`~karakuri.policies.normalizer.Normalizer`), size obs_size.
        actor: Normalized policy observation (B, obs_size) -> action (B, a) in [-1, 1].
    """

    normalizer: Normalizer
    actor: nn.Module

    @property
    def obs_size(self) -> int:
        """Policy observations the actor reads."""
        return self.normalizer.size

    def check_obs_size(self, run_dir: str | Path, obs_size: int) -> LoadedActor:
        """This actor, after checking it reads ``obs_size`` observations (the task's).

        Raises:
            RunDirError: it reads another number.
        """
        if self.obs_size != obs_size:
            raise RunDirError(f"{run_dir}: the actor reads {self.obs_size} observations, the "
                              f"task's policy observation has {obs_size}")
        return self


@dataclass(frozen=True)
class TrainResult:
    """What a trainer's ``train`` returns.

    Attributes:
        run_dir: The run directory written.
        stats: Timings and counts for ``eval.json`` (``train_wall_s``, ``env_steps``, ...);
            None in a process that does not write the run (a non-zero torchrun rank).
        eval_seed: Seed of the final evaluation.
        eval_episodes: Episodes of the final evaluation.
    """

    run_dir: Path
    stats: dict[str, Any] | None = field(default=None)
    eval_seed: int = 0
    eval_episodes: int = 1


class Trainer(Protocol):
    """A trainer module (duck-typed: the registry returns the module itself)."""

    def train(self, cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
        """Train (or resume) a run into its directory; no final evaluation."""
        ...

    def load_actor(self, run_dir: str | Path) -> LoadedActor:
        """The run's latest deterministic actor, from plain data only.

        Raises:
            RunDirError: the files are missing or malformed (named).
        """
        ...
