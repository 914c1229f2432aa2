"""The DAgger trainer: its buffer, a short run through the registry, eval and export paths,
and the refusals that name what is wrong before a run directory is made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from karakuri.policies.run_dir import TrainConfig
from karakuri.policies.trainers import dagger
from karakuri.policies.trainers.registry import get_trainer


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.lists(st.integers(1, 9), min_size=1, max_size=8))
def test_buffer_keeps_the_newest_pairs_and_their_statistics(size: int, batches: list[int]) -> None:
    buf = dagger.Buffer(size, obs=2, act=1)
    seen: list[float] = []
    for b in batches:
        x = torch.arange(len(seen), len(seen) + b, dtype=torch.float32)
        buf.add(torch.stack([x, -x], 1), x[:, None])
        seen += x.tolist()
    kept = seen[-size:]
    assert buf.n == len(kept)
    assert sorted(buf.obs[: buf.n, 0].tolist()) == sorted(kept)
    torch.testing.assert_close(buf.obs[: buf.n, 0], buf.act[: buf.n, 0])  # pairs stay paired
    norm = buf.normalizer()
    np.testing.assert_allclose(norm.mean, [np.mean(kept), -np.mean(kept)], atol=1e-9)
    np.testing.assert_allclose(norm.var, [np.var(kept)] * 2, atol=1e-9)


def test_student_clamps_to_the_action_bounds() -> None:
    net = dagger.student(5, 3, (8, 8))
    with torch.no_grad():
        out = net(100.0 * torch.randn(64, 5))
    assert out.shape == (64, 3) and float(out.abs().max()) <= 1.0


def test_short_run_writes_an_actor_that_eval_and_export_read(tmp_path: Path) -> None:
    """Two iterations on 4 worlds: the first is the teacher's (beta 1), the second mixes in the
    student; the run directory has what the registry's load_actor, eval and export need."""
    from karakuri.policies.evaluate import evaluate_run, evaluate_source
    from karakuri.policies.export_run import export_run

    run = tmp_path / "run"
    cfg = TrainConfig(task="pick_place", num_envs=4, total_steps=4 * 400 * 2, run_dir=str(run),
                      checkpoint_every=1600, net=(16, 16), progress=False, eval_episodes=2)
    out = dagger.train(cfg, params=dagger.DaggerParams(updates=20, batch_size=256))
    assert out.stats["env_steps"] == 3200 and out.stats["dagger_iterations"] == 2
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["beta"] for r in rows] == [1.0, 0.5]
    assert rows[0]["success"] >= 0.75  # the teacher's own episodes (all 4 ended at step 400)
    assert {f"funnel/{s}" for s in ("reached", "grasped", "cleared")} <= set(rows[0])
    assert sorted(p.name for p in (run / "checkpoints").glob("*.npz")) == [
        "actor_1600_steps.npz", "actor_3200_steps.npz"]
    assert list(run.glob("tb_1/events.out.tfevents.*"))  # the same numbers in TensorBoard
    loaded = get_trainer("dagger").load_actor(run)
    assert loaded.obs_size == 25
    result = evaluate_run(run, episodes=2, seed=0)
    assert 0.0 <= result["success_rate"] <= 1.0 and "funnel" in result
    assert "randomize" not in result
    assert evaluate_source(run, episodes=2, seed=0, randomize=True)["randomize"] is True
    export_run(run, tmp_path / "p.onnx")  # its ORT-vs-torch gate passes
    assert (tmp_path / "p.onnx").stat().st_size > 1000


def test_a_task_without_a_teacher_is_refused_before_a_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"task 'reach' has no scripted teacher; tasks with "
                                         r"one: \['pick_place'\]"):
        dagger.train(TrainConfig(task="reach", num_envs=2, run_dir=str(run), progress=False))
    assert not run.exists()


def test_resume_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="a dagger run cannot be resumed"):
        dagger.train(TrainConfig(task="pick_place"), resume="somewhere")
