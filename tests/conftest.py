"""Shared fixtures: a reach policy trained with the defaults and exported, once per session.

The end-to-end tests (export round trip, sim-in-the-loop parity over the pty, the ROS 2 link)
use a real trained policy, not a hand-made one, so they show that training's result survives
export and deployment.  Training runs once per session (about two minutes on two cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Some test modules import mujoco before karakuri; importing karakuri first chooses MuJoCo's
# OpenGL platform (EGL on a headless box) before anything imports mujoco.
import karakuri  # noqa: F401


@pytest.fixture(autouse=True)
def _audit_log_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Deploys in tests append to a per-session audit log, never to the user's own."""
    monkeypatch.setenv("KARAKURI_AUDIT_LOG",
                       str(tmp_path_factory.getbasetemp() / "audit" / "audit.jsonl"))


@pytest.fixture(scope="session")
def trained_reach(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reach run trained with the default TrainConfig (its eval.json included)."""
    from karakuri.policies.run_dir import TrainConfig
    from karakuri.policies.train import train

    run = tmp_path_factory.mktemp("trained") / "reach"
    return train(TrainConfig(task="reach", run_dir=str(run), progress=False))


@pytest.fixture(scope="session")
def reach_policy(trained_reach: Path) -> Path:
    """The trained reach run exported with ``karakuri export`` (its policy.onnx)."""
    from karakuri.policies.export_run import export_run

    out = trained_reach / "policy.onnx"
    export_run(trained_reach, out)
    return out
