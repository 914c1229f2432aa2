"""rsl_rl training at tiny sizes on CPU: the VecEnv adapter, run layout, resume, export parity."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

if os.environ.get("KARAKURI_NO_GPU_EXTRA") == "1":  # set by make when EXTRAS leaves out gpu
    pytest.skip("KARAKURI_NO_GPU_EXTRA=1: the gpu extra is deliberately not installed",
                allow_module_level=True)

from karakuri.launch.cli import main as cli
from karakuri.policies.evaluate import evaluate_source
from karakuri.policies.run_dir import TrainConfig
from karakuri.policies.train import train
from karakuri.policies.trainers.rsl import latest_rsl_checkpoint, load_rsl_actor
from karakuri.policies.trainers.rsl_env import RslVecEnv
from karakuri.sim.registry import make_env

TINY = TrainConfig(
    task="reach",
    num_envs=32,
    total_steps=2 * 32 * 32,  # two iterations of 32 steps per world
    checkpoint_every=1,
    eval_episodes=16,
    trainer="rsl_rl",
    net=(32, 32),
    progress=False,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)  # two shared cores: OpenMP spinning slows small updates 10x
    return train(replace(TINY, run_dir=str(tmp_path_factory.mktemp("rsl") / "run")))


def test_adapter_speaks_rsl_rl_vecenv() -> None:
    env = make_env("reach", num_worlds=4, seed=0)
    vec = RslVecEnv(env)
    obs = vec.get_observations()
    assert set(obs.keys()) == {"policy", "critic"}
    assert obs["policy"].shape == (4, env.obs_size)
    assert obs["critic"].shape == (4, env.critic_obs_size)
    torch.testing.assert_close(obs["critic"][:, : env.obs_size], obs["policy"])
    vec.episode_length_buf = torch.full((4,), env.task.episode_steps - 1)
    obs, rew, dones, extras = vec.step(torch.zeros(4, vec.num_actions))
    assert rew.shape == (4,) and dones.dtype == torch.long and bool(dones.all())
    assert torch.equal(extras["time_outs"], torch.ones(4))  # time limit, not failure
    ep = extras["episode"]
    assert {f"reward/{k}" for k in env.task.reward_scales} <= set(ep)
    assert ep["Episode/success"].shape == (4,)
    assert "Episode/final_distance" in ep
    _, _, dones, extras = vec.step(torch.zeros(4, vec.num_actions))
    assert not dones.any() and "episode" not in extras
    vec.close()


def test_run_directory_matches_the_sb3_layout(run: Path) -> None:
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["trainer"] == "rsl_rl" and cfg["code_version"]
    assert (run / "model.pt").exists()
    assert len(list((run / "checkpoints").glob("model_*.pt"))) == 2
    assert list((run / "tb").glob("events.out.tfevents.*"))
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes"] == 16 and 0.0 <= result["success_rate"] <= 1.0
    assert result["env_steps"] == 2 * 32 * 32
    for key in ("compile_s", "setup_s", "train_wall_s", "env_steps_per_s"):
        assert result[key] >= 0
    meta = json.loads((run / "rsl_rl.json").read_text())
    assert meta["runner"]["obs_groups"] == {"actor": ["policy"], "critic": ["critic"]}


def test_parameters_change_with_learning_and_resume_continues(run: Path, tmp_path) -> None:
    first = torch.load(run / "checkpoints" / "model_0.pt", weights_only=False)
    final = torch.load(run / "model.pt", weights_only=False)
    assert final["iter"] == 1
    w0, w1 = first["actor_state_dict"]["mlp.0.weight"], final["actor_state_dict"]["mlp.0.weight"]
    assert not torch.equal(w0, w1)
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    (resumed / "model.pt").unlink()  # resume from the last periodic checkpoint
    train(replace(TINY, total_steps=3 * 32 * 32), resume=resumed)
    again = torch.load(resumed / "model.pt", weights_only=False)
    assert again["iter"] == 2  # one more iteration, numbered after the restored ones
    assert json.loads((resumed / "eval.json").read_text())["env_steps"] == 3 * 32 * 32
    norm, _ = load_rsl_actor(resumed)
    assert not torch.equal(norm.mean, torch.zeros_like(norm.mean))  # normalizer restored


def test_export_then_eval_of_the_file_matches_the_run(run: Path, tmp_path, capsys) -> None:
    out = tmp_path / "policy.onnx"
    assert cli(["export", str(run), "-o", str(out)]) == 0
    from_run = evaluate_source(run, episodes=16, seed=7)
    capsys.readouterr()
    assert cli(["eval", str(out), "--episodes", "16", "--seed", "7"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert from_file["success_rate"] == from_run["success_rate"]
    assert from_file["final_distance_mean"] == pytest.approx(
        from_run["final_distance_mean"], abs=1e-4
    )
    assert from_file["mean_return"] == pytest.approx(from_run["mean_return"], abs=1e-3)


def test_latest_checkpoint_without_one_is_a_named_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no model.pt and no checkpoints"):
        latest_rsl_checkpoint(tmp_path)


def test_torchrun_without_a_run_dir_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="under torchrun pass --run-dir"):
        train(TINY)


def test_cli_trains_on_the_warp_backend(tmp_path, capsys) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "warp"
    argv = ["train", "reach", "--backend", "warp", "--device", "cpu", "--num-envs", "8"]
    argv += ["--total-steps", "512", "--eval-episodes", "8", "--net", "16", "--no-progress"]
    assert cli([*argv, "--run-dir", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "kernel compilation and graph capture took" in printed
    result = json.loads((run / "eval.json").read_text())
    assert result["backend"] == "warp" and result["compile_s"] > 0
    assert result["env_steps"] == 2 * 8 * 32
