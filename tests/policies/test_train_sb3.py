"""SB3 training on the batched env: a tiny run learns, writes a run dir, and resumes exactly."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from karakuri.policies.run_dir import TrainConfig
from karakuri.policies.train import train
from karakuri.policies.trainers.sb3 import PPO, latest_checkpoint

TINY = dict(
    num_envs=16,
    total_steps=2048,
    checkpoint_every=1024,
    eval_episodes=8,
    net=(32, 32),
    progress=False,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(run_dir=str(run), **TINY))
    return run


def test_tiny_run_writes_everything(tiny_run: Path) -> None:
    for name in ("config.json", "model.zip", "vecnormalize.pkl", "actor.npz", "actor.json",
                 "eval.json"):
        assert (tiny_run / name).exists(), name
    assert list((tiny_run / "checkpoints").glob("model_*_steps.zip"))
    assert list(tiny_run.glob("tb_*/events.out.tfevents.*"))
    ev = json.loads((tiny_run / "eval.json").read_text())
    assert ev["episodes"] == 8 and 0.0 <= ev["success_rate"] <= 1.0
    assert ev["env_steps"] >= 2048


def test_a_learning_step_changes_parameters(tmp_path: Path) -> None:
    cfg = TrainConfig(run_dir=str(tmp_path / "r"), **{**TINY, "total_steps": 16 * 16})
    from karakuri.policies.trainers.sb3 import _load_or_create, build_vec_env

    venv = build_vec_env(cfg)
    model, _ = _load_or_create(cfg, venv, tmp_path, None)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=256)
    after = list(model.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_resume_restores_policy_optimizer_normalizer_and_steps(
    tiny_run: Path, tmp_path: Path
) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    saved = PPO.load(run / "model.zip", device="cpu")
    with open(run / "vecnormalize.pkl", "rb") as f:
        saved_norm = pickle.load(f)
    obs = (
        np.random.default_rng(0)
        .normal(size=(5, saved.observation_space.shape[0]))
        .astype(np.float32)
    )
    want, _ = saved.predict(obs, deterministic=True)

    train(TrainConfig(**TINY), resume=run)  # total_steps already reached: loads and re-saves
    again = PPO.load(run / "model.zip", device="cpu")
    got, _ = again.predict(obs, deterministic=True)
    np.testing.assert_array_equal(want, got)
    assert again.num_timesteps == saved.num_timesteps
    so, ao = saved.policy.optimizer.state_dict(), again.policy.optimizer.state_dict()
    for k in so["state"]:
        torch.testing.assert_close(so["state"][k]["exp_avg"], ao["state"][k]["exp_avg"])
    with open(run / "vecnormalize.pkl", "rb") as f:
        norm = pickle.load(f)
    np.testing.assert_array_equal(norm.obs_rms.mean, saved_norm.obs_rms.mean)


def test_resume_continues_counting_steps(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "more"
    shutil.copytree(tiny_run, run)
    train(TrainConfig(**{**TINY, "total_steps": 4096}), resume=run)
    assert json.loads((run / "eval.json").read_text())["env_steps"] >= 4096
    assert PPO.load(run / "model.zip").num_timesteps >= 4096


def test_latest_checkpoint_falls_back_to_checkpoints(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "ck"
    shutil.copytree(tiny_run, run)
    (run / "model.zip").unlink()
    model, norm = latest_checkpoint(run)
    assert model.parent.name == "checkpoints" and norm.exists()


def test_bad_config_values_are_named() -> None:
    with pytest.raises(ValueError, match="unknown algo 'dqn'"):
        TrainConfig(algo="dqn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        TrainConfig(num_envs=0)


@pytest.mark.slow
def test_sac_tiny_run(tmp_path: Path) -> None:
    run = tmp_path / "sac"
    train(TrainConfig(algo="sac", run_dir=str(run), **{**TINY, "total_steps": 1024}))
    assert (run / "eval.json").exists()
