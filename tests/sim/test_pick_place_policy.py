"""The pick_place policy file shipped with the project (policies/pretrained/pick_place.onnx)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from karakuri.policies.evaluate import evaluate_source
from karakuri.policies.onnx_policy import OnnxPolicy
from karakuri.robot.registry import load_robot
from karakuri.sim.registry import make_env

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "pretrained" / "pick_place.onnx"
#: Until a CPU run reaches the 90 % target no file is shipped (docs/tasks.md, issue 14).
pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason=f"no policy file at {SHIPPED}")


def test_the_shipped_file_is_small_and_fits_the_task_and_robot() -> None:
    """It loads for the industrial arm at 50 Hz, names pick_place, reads exactly the task's
    robot signals with their sizes, and maps them to seven finite joint targets in range."""
    assert SHIPPED.stat().st_size < 1_000_000
    robot = load_robot("industrial_arm")
    policy = OnnxPolicy(SHIPPED, expected_spec=robot, rate_hz=50.0)
    assert policy.metadata.task == "pick_place"
    env = make_env("pick_place", num_worlds=2, seed=0, randomize=False)
    sizes = {k: v.shape[-1] for k, v in env.raw_signals().items() if k in env.robot_signals}
    assert set(policy.input_names) == set(env.robot_signals)
    for name in policy.input_names:
        assert tuple(policy.metadata.inputs[name]["shape"])[-1] == sizes[name]
    env.reset()
    sig = {k: v.numpy()[:1] for k, v in env.raw_signals().items() if k in policy.input_names
           and k != "last_action"}
    target = policy.act(sig)
    assert target.shape == (1, robot.n_joints) and np.isfinite(target).all()
    assert (target >= robot.lower - 1e-6).all() and (target <= robot.upper + 1e-6).all()
    evaluation = policy.metadata.provenance["evaluation"]  # eval.json of the run, shipped along
    assert evaluation["episodes"] == 200 and evaluation["success_rate"] >= 0.9
    env.close()


@pytest.mark.slow
def test_the_shipped_file_succeeds_in_90_percent_of_200_fixed_seed_episodes() -> None:
    result = evaluate_source(SHIPPED, episodes=200)
    assert result["episodes"] == 200
    assert result["success_rate"] >= 0.9, result["funnel"]
