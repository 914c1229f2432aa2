"""Sim-in-the-loop parity: the loop's success next to sim's, on the same commands.

A policy file is deployed against the virtual MCU, then evaluated in batched simulation on
exactly the commands the deployment ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from karakuri.launch.deploy import DeployResult, deploy
from karakuri.launch.schema import load_launch


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
