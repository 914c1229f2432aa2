"""Public arms train reach with the defaults, export, and deploy in SIL (slow: minutes each).

Each arm is given by its sidecar alone (robot/descriptions/thirdparty/), trained by the
default TrainConfig on CPU, evaluated on 200 fixed-seed episodes, exported, and deployed over
the pty against the virtual MCU on 40 targets from its own workspace (12 resolve only
8.3 pp steps).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from own_robot_helpers import ARMS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(ARMS))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from karakuri.policies.export_run import export_run
    from karakuri.policies.run_dir import TrainConfig
    from karakuri.policies.train import train

    arm = request.param
    run = tmp_path_factory.mktemp(arm) / "run"
    train(TrainConfig(task="reach", robot=str(ARMS[arm]), run_dir=str(run), progress=False))
    export_run(run, run / "policy.onnx")
    return arm, run


def test_default_training_reaches_90_percent_on_200_episodes(trained: tuple) -> None:
    _, run = trained
    ev = json.loads((run / "eval.json").read_text())
    assert ev["episodes"] == 200 and ev["seed"] == 12345
    assert ev["success_rate"] >= 0.9, ev


def test_exported_file_evaluates_with_the_sidecar(trained: tuple) -> None:
    from karakuri.policies.evaluate import evaluate_source

    arm, run = trained
    onnx = evaluate_source(run / "policy.onnx", episodes=200, robot=str(ARMS[arm]))
    ev = json.loads((run / "eval.json").read_text())
    assert onnx["success_rate"] == pytest.approx(ev["success_rate"], abs=0.01)


def test_sil_within_a_binomial_bound_of_sim(trained: tuple, tmp_path: Path) -> None:
    from karakuri.launch.parity import allowed_gap, sil_parity
    from karakuri.robot.registry import load_robot
    from karakuri.sim.registry import make_env

    arm, run = trained
    env = make_env("reach", load_robot(ARMS[arm]), num_worlds=40, seed=5, randomize=False)
    env.reset()
    targets = env.task.target.tolist()
    episode_s = env.task.cfg.episode_s
    env.close()
    launch = tmp_path / "sil.yaml"
    launch.write_text(yaml.safe_dump({
        "robot": str(ARMS[arm]),
        "policy": str(run / "policy.onnx"),
        "link": {"kind": "sil"},
        "command": {"targets": targets, "hold_s": episode_s, "reset_s": 2.0},
        "soft_start_s": 0.5,
        "success_radius_m": 0.02,
    }))
    par = sil_parity(launch, telemetry=tmp_path / "sil.mcap", log=lambda s: None)
    assert par.episodes == 40 and par.deploy.summary.fault is None
    # at most allowed_gap(40) = 6 episodes: a correct system (each episode flipping with
    # probability <= 5 %, launch/parity.py: FLIP_RATE) fails this with probability <= 1 %
    assert par.gap_episodes <= allowed_gap(40) == 6, (par.loop_success, par.sim_success)
    assert torch.isfinite(torch.tensor(par.sim["final_distance_mean"]))
