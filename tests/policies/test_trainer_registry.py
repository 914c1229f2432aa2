"""The trainer registry: one entry per trainer, lookups that name the valid ones, lazy imports.

A trainer added as one module and one ``TRAINERS`` entry trains, evaluates and exports
through the same paths as the shipped ones (the fake below is registered at that seam).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from karakuri.launch.cli import main
from karakuri.policies.normalizer import Normalizer
from karakuri.policies.run_dir import RunDirError, TrainConfig, load_config, write_config
from karakuri.policies.train import train
from karakuri.policies.trainers import registry
from karakuri.policies.trainers.base import LoadedActor, TrainResult
from karakuri.sim.registry import make_env


def test_unknown_trainer_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown trainer 'ppo2'; valid: \['auto', 'dagger', "
                                         r"'rsl_rl', 'sb3'\]"):
        registry.get_trainer("ppo2")


def test_auto_resolves_by_backend() -> None:
    assert TrainConfig().resolved_trainer == "sb3"
    assert TrainConfig(backend="warp").resolved_trainer == "rsl_rl"
    assert TrainConfig(backend="warp", trainer="sb3").resolved_trainer == "sb3"
    # a task with a scripted teacher distils it on the CPU backend; PPO stays one flag away
    assert TrainConfig(task="pick_place").resolved_trainer == "dagger"
    assert TrainConfig(task="pick_place", trainer="sb3").resolved_trainer == "sb3"
    assert TrainConfig(task="pick_place", backend="warp").resolved_trainer == "rsl_rl"
    assert set(registry.TRAINERS) >= {"sb3", "rsl_rl", "dagger"}


def test_cli_unknown_trainer_is_refused_before_a_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(["train", "reach", "--trainer", "ppo2", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "karakuri train: unknown trainer 'ppo2'" in err and "'sb3'" in err
    assert "Traceback" not in err and not run.exists()


def _imported_after(code: str) -> set[str]:
    code += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return {m.split(".")[0] for m in json.loads(out.strip().splitlines()[-1])}


def test_sim_imports_no_trainer_library() -> None:
    code = ("import importlib, pkgutil, karakuri.sim as s\n"
            "for m in pkgutil.walk_packages(s.__path__, 'karakuri.sim.'):\n"
            "    try:\n"
            "        importlib.import_module(m.name)\n"
            "    except ModuleNotFoundError as e:  # the warp backend without the gpu extra\n"
            "        assert e.name in ('mujoco_warp', 'warp'), e")
    assert not _imported_after(code) & {"stable_baselines3", "gymnasium", "rsl_rl", "tensordict"}


def test_the_registry_and_run_dir_import_no_trainer_library() -> None:
    code = ("import karakuri.policies.trainers.registry, karakuri.policies.run_dir, "
            "karakuri.launch.commands.train")
    assert not _imported_after(code) & {"stable_baselines3", "rsl_rl", "torch"}


# ------------------------------------------------------------ one file + one entry = a trainer
class _FakeTrainer:
    """A trainer module's surface: writes a config and a zero actor; no learning."""

    @staticmethod
    def train(cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
        run_dir = Path(cfg.run_dir)
        run_dir.mkdir(parents=True)
        write_config(cfg, run_dir)
        (run_dir / "fake.json").write_text("{}")
        return TrainResult(run_dir, {"train_wall_s": 0.0, "env_steps": 0},
                           eval_seed=cfg.eval_seed, eval_episodes=cfg.eval_episodes)

    @staticmethod
    def load_actor(run_dir: str | Path) -> LoadedActor:
        if not (Path(run_dir) / "fake.json").exists():
            raise RunDirError(f"{run_dir}: fake.json is missing")
        obs = make_env("reach", num_worlds=1).obs_size
        net = nn.Linear(obs, 6)
        nn.init.zeros_(net.weight)
        nn.init.zeros_(net.bias)
        return LoadedActor(Normalizer(mean=np.zeros(obs), var=np.ones(obs), eps=0.0, clip=None),
                           net)


def test_a_registered_trainer_trains_and_evaluates(tmp_path: Path, monkeypatch) -> None:
    from karakuri.policies.evaluate import evaluate_run

    monkeypatch.setitem(registry.TRAINERS, "fake", lambda: _FakeTrainer)
    cfg = TrainConfig(task="reach", trainer="fake", eval_episodes=2, run_dir=str(tmp_path / "r"))
    run = train(cfg)
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes"] == 2 and result["seed"] == cfg.eval_seed
    assert result["env_steps"] == 0 and 0.0 <= result["success_rate"] <= 1.0
    assert load_config(run) == cfg
    assert registry.trainer_of(run) is _FakeTrainer
    (run / "fake.json").unlink()
    with pytest.raises(RunDirError, match="fake.json is missing"):  # eval asks the trainer
        evaluate_run(run, episodes=1)


def test_an_actor_of_the_wrong_size_is_named(tmp_path: Path, monkeypatch) -> None:
    from karakuri.policies.evaluate import evaluate_run

    monkeypatch.setitem(registry.TRAINERS, "fake", lambda: _FakeTrainer)
    run = train(TrainConfig(task="reach", trainer="fake", eval_episodes=1,
                            run_dir=str(tmp_path / "r")))
    real = _FakeTrainer.load_actor(run)
    small = LoadedActor(Normalizer(mean=np.zeros(3), var=np.ones(3)), real.actor)
    monkeypatch.setattr(_FakeTrainer, "load_actor", staticmethod(lambda run_dir: small))
    with pytest.raises(RunDirError, match="the actor reads 3 observations"):
        evaluate_run(run, episodes=1)
