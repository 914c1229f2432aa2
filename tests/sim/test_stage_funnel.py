"""The stage funnel: in the episode stats, aggregated by evaluation, in eval.json, the printout
and the training logs.  The per-task stage counts on scripted episodes are in
test_pick_place_task.py and test_handover_task.py."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from karakuri.launch.cli import main
from karakuri.policies.evaluate import evaluate, funnel_table
from karakuri.robot.registry import load_robot
from karakuri.sim.env import BatchedEnv
from karakuri.sim.registry import make_env
from karakuri.sim.tasks.handover import Handover, HandoverConfig

# The care arm holding the cup upright at the handover point of the hand at rest, rad.
AT_HAND = torch.tensor((0.8042, 0.2262, 2.2833, 0.9103, -1.1485, 1.0853))


def test_a_task_without_stages_reports_no_funnel() -> None:
    env = make_env("reach", num_worlds=2, seed=0, randomize=False)
    assert env.task.stages == ()
    result = evaluate(env, lambda sig: torch.zeros(2, env.action_size))
    assert "funnel" not in result and not any(k.startswith("funnel") for k in result)
    assert funnel_table(result) == ""
    env.close()


def test_evaluation_counts_the_episodes_that_reached_each_stage() -> None:
    """Worlds 0 and 1 move the cup to the (still) hand and hold it; 2 and 3 stay home."""
    task = Handover(load_robot("care_arm"), HandoverConfig(hand_amplitude=(0.0, 0.0, 0.0)))
    env = BatchedEnv(task, 4, seed=3, randomize=False)

    def act(sig: dict[str, torch.Tensor]) -> torch.Tensor:
        a = (AT_HAND - sig["joint_pos"][:, :6]) / task.cfg.action_scale
        a = a / a.abs().amax(dim=-1, keepdim=True).clamp(min=1.0)
        a[2:] = 0.0
        return a

    result = evaluate(env, act)
    env.close()
    stages = ("approached", "at_hand", "upright", "held")
    assert result["funnel"] == {"episodes": 4, "count": dict.fromkeys(stages, 2),
                                "fraction": dict.fromkeys(stages, 0.5)}
    assert list(result["funnel"]["count"]) == list(stages)  # in the task's order
    assert result["success_rate"] == 0.5
    table = funnel_table(result).splitlines()
    assert table[0] == "stage funnel (4 episodes):"
    assert [row.split()[:3] for row in table[1:]] == [
        [s, "2", "50.0"] for s in (*stages, "success")]
    assert table[1].endswith("#" * 10)


def test_the_table_shows_where_the_funnel_narrows() -> None:
    result = {"success_rate": 0.0, "funnel": {
        "episodes": 200, "count": {"reached": 200, "grasped": 50, "lifted": 0},
        "fraction": {"reached": 1.0, "grasped": 0.25, "lifted": 0.0}}}
    rows = funnel_table(result, width=8).splitlines()[1:]
    assert [r.split() for r in rows] == [
        ["reached", "200", "100.0", "%", "########"], ["grasped", "50", "25.0", "%", "##"],
        ["lifted", "0", "0.0", "%"], ["success", "0", "0.0", "%"]]


@pytest.mark.slow
def test_train_and_eval_of_pick_place_report_the_funnel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny untrained pick_place run: eval.json, the eval printout and TensorBoard."""
    run = tmp_path / "pp"
    # the default trainer (dagger): one iteration of 32 worlds x one 400-step episode
    assert main(["train", "pick_place", "--run-dir", str(run), "--num-envs", "32",
                 "--total-steps", "12800", "--eval-episodes", "4", "--net", "16", "16",
                 "--no-progress"]) == 0
    stages = ["reached", "grasped", "lifted", "carried", "placed", "released", "cleared"]
    ev = json.loads((run / "eval.json").read_text())
    assert ev["funnel"]["episodes"] == 4 and list(ev["funnel"]["fraction"]) == stages
    counts = list(ev["funnel"]["count"].values())
    assert all(a >= b for a, b in itertools.pairwise(counts))
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "3"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["funnel"]["episodes"] == 3  # stdout stays one JSON document
    lines = err.splitlines()
    assert lines[0] == "stage funnel (3 episodes):"
    assert [ln.split()[0] for ln in lines[1:]] == [*stages, "success"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run.glob("tb_*/events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {f"funnel/{s}" for s in stages} <= set(acc.Tags()["scalars"])
    values = [acc.Scalars(f"funnel/{s}")[-1].value for s in stages]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in itertools.pairwise(values))
