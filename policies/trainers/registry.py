"""``TRAINERS``: trainer name -> its module (:class:`~karakuri.policies.trainers.base.Trainer`).

Adding a trainer is one file beside ``sb3.py`` (``train`` and ``load_actor``, with its env
adapter) and one entry here.  Each entry imports its module only when asked for, so choosing
one trainer never imports another's library.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from karakuri.policies.run_dir import TrainConfig, load_config
from karakuri.policies.trainers.base import Trainer


def _sb3() -> Trainer:
    from karakuri.policies.trainers import sb3

    return sb3  # type: ignore[return-value]


def _rsl_rl() -> Trainer:
    from karakuri.policies.trainers import rsl

    return rsl  # type: ignore[return-value]


def _dagger() -> Trainer:
    from karakuri.policies.trainers import dagger

    return dagger  # type: ignore[return-value]


#: Registered trainers (``TrainConfig.trainer``; ``auto`` resolves to one of these).
TRAINERS: dict[str, Callable[[], Trainer]] = {"sb3": _sb3, "rsl_rl": _rsl_rl,
                                              "dagger": _dagger}


def get_trainer(name: str) -> Trainer:
    """The trainer module registered as ``name``.

    Raises:
        ValueError: no trainer has that name (the message lists the valid ones).
    """
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; valid: {['auto', *sorted(TRAINERS)]}")
    return TRAINERS[name]()


def trainer_for(cfg: TrainConfig) -> Trainer:
    """The trainer a config runs (``auto`` resolved by backend)."""
    return get_trainer(cfg.resolved_trainer)


def trainer_of(run_dir: str | Path) -> Trainer:
    """The trainer that wrote a run directory (from its ``config.json``)."""
    return trainer_for(load_config(run_dir))
