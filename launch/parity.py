"""Sim-in-the-loop parity: the loop's success next to sim's, on the same commands.

A policy file is deployed against the virtual MCU, then evaluated in batched simulation on
exactly the commands the deployment ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

import torch

from karakuri.launch.deploy import DeployResult, deploy
from karakuri.launch.schema import load_launch

#: A correct system's chance, per episode, that the loop ends on the other side of the success
#: line from sim on the same command (timing jitter moves a final distance near the radius).
#: Measured: 3 of 88 SIL episodes (3.4 %) in docs/own-robot.md, on arms at 91-97 % in sim.
FLIP_RATE = 0.05
#: The chance a correct system may fail a parity check.
PARITY_ALPHA = 0.01


def allowed_gap(episodes: int, flip_rate: float = FLIP_RATE, alpha: float = PARITY_ALPHA) -> int:
    """The most episodes loop and sim successes may differ by, for ``episodes`` episodes.

    ``|loop successes - sim successes|`` is at most the number of episodes whose outcomes
    differ, Binomial(``episodes``, ``flip_rate``) for a correct system; this is the smallest
    ``k`` with P(that > k) <= ``alpha`` (12 episodes: 3; 40: 6).
    """
    below = 0.0
    for k in range(episodes + 1):
        below += comb(episodes, k) * flip_rate**k * (1 - flip_rate) ** (episodes - k)
        if 1.0 - below <= alpha:
            return k
    return episodes


@dataclass(frozen=True)
class ParityResult:
    """Success in the loop and in simulation on the same commands.

    Attributes:
        loop_success: Success rate of the deployed episodes, 0..1.
        sim_success: Success rate of the same policy file in sim on the same commands, 0..1.
        episodes: Episodes compared.
        deploy: The deployment's result (timing summary, link counters, ...).
        sim: The sim evaluation's result dict.
    """

    loop_success: float
    sim_success: float
    episodes: int
    deploy: DeployResult
    sim: dict[str, Any]

    @property
    def gap_pp(self) -> float:
        """|loop - sim| in percentage points."""
        return abs(self.loop_success - self.sim_success) * 100

    @property
    def gap_episodes(self) -> int:
        """|loop - sim| in episodes (compare with :func:`allowed_gap`)."""
        return round(abs(self.loop_success - self.sim_success) * self.episodes)


def sil_parity(
    launch: str | Path,
    policy: str | Path | None = None,
    telemetry: str | Path | None = None,
    log: Any = print,
    **overrides: Any,
) -> ParityResult:
    """Deploy ``launch`` (optionally with another policy file) and compare with sim.

    Raises:
        RuntimeError: the deployment judged no episode (it needs a visible plant: SIL).
    """
    from karakuri.policies.evaluate import evaluate_source

    cfg = load_launch(launch)
    changes: dict[str, Any] = dict(overrides)
    if policy is not None:
        changes["policy"] = Path(policy)
    if telemetry is not None:
        changes["telemetry"] = Path(telemetry)
    cfg = dataclasses.replace(cfg, **changes)
    result = deploy(cfg, log=log)
    judged = [e for e in result.summary.episodes if e.success is not None]
    if not judged:
        raise RuntimeError(f"{launch}: no episode was judged; parity needs a sim-in-the-loop link")
    commands = torch.tensor([e.command for e in judged], dtype=torch.float32)
    sim = evaluate_source(cfg.policy, commands=commands, robot=cfg.robot)  # a sidecar too
    loop = sum(bool(e.success) for e in judged) / len(judged)
    return ParityResult(loop, sim["success_rate"], len(judged), result, sim)
