"""pick_place and handover end to end on CPU: a short run improves the return, its export runs
sim-in-the-loop over the pty with the plant as the perception system.

Slow: each task trains for a couple of minutes on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from karakuri.launch.deploy import deploy
from karakuri.launch.schema import load_launch
from karakuri.policies.export_run import export_run
from karakuri.policies.onnx_policy import OnnxPolicy
from karakuri.policies.run_dir import TrainConfig
from karakuri.policies.train import train

pytestmark = pytest.mark.slow
LAUNCH = Path(__file__).resolve().parents[2] / "launch"
STEPS = {"handover": 150_000, "pick_place": 250_000}


@pytest.fixture(scope="module", params=sorted(STEPS))
def short_run(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict, dict]:
    """(task, run dir, eval after one PPO iteration, eval after STEPS[task] env steps)."""
    task = request.param
    run = tmp_path_factory.mktemp(task) / "run"
    # PPO (sb3) for both: pick_place's default trainer distils its teacher instead
    # (tests/policies/test_dagger_trainer.py), which has no "one PPO iteration" to start from
    cfg = dict(task=task, num_envs=64, seed=0, eval_episodes=32, progress=False,
               checkpoint_every=10**9, run_dir=str(run), trainer="sb3")
    train(TrainConfig(total_steps=1, **cfg))  # one rollout and one update: the start
    before = json.loads((run / "eval.json").read_text())
    train(TrainConfig(total_steps=STEPS[task], **cfg), resume=run)
    after = json.loads((run / "eval.json").read_text())
    return task, run, before, after


def test_short_cpu_run_improves_the_return(short_run) -> None:
    task, _, before, after = short_run
    assert after["env_steps"] >= STEPS[task]
    gain = after["mean_return"] - before["mean_return"]
    assert gain > 0.1 * abs(before["mean_return"]) + 5.0, (before, after)
    if task == "handover":
        assert {"peak_zone_speed_max", "peak_contact_force_max", "violation_mean"} <= set(after)


def test_export_runs_sim_in_the_loop(short_run, tmp_path: Path) -> None:
    task, run, _, _ = short_run
    out = tmp_path / "policy.onnx"
    export_run(run, out)
    policy = OnnxPolicy(out)
    signal = {"pick_place": "object_pose", "handover": "hand_pos"}[task]
    assert signal in policy.input_names and policy.metadata.task == task
    data = yaml.safe_load((LAUNCH / f"{task}_sil.yaml").read_text())
    data.update(policy=str(out), telemetry=str(tmp_path / "sil.mcap"),
                realtime={"sched_fifo_priority": 0, "mlockall": False})
    data["command"]["plant_signal"]["count"] = 2
    data["command"]["reset_s"] = 0.5
    path = tmp_path / "launch.yaml"
    path.write_text(yaml.safe_dump(data))
    lines: list[str] = []
    summary = deploy(load_launch(path), log=lines.append).summary
    assert summary.fault is None, summary.format()
    assert summary.stopped_by == "all 2 episodes done"
    assert [e.success is not None for e in summary.episodes] == [True, True]
    assert sum(line.startswith("episode ") for line in lines) == 2
    assert (tmp_path / "sil.mcap").stat().st_size > 0
