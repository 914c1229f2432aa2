"""Run directories are data: eval and export never unpickle or execute anything in them.

A planted payload (a pickle whose ``__reduce__`` creates a marker file when unpickled) sits in
every pickled file of a real run: ``vecnormalize.pkl``, the ``data`` of ``model.zip`` and the
checkpoints'.  ``karakuri eval`` and ``karakuri export`` must still work (they read the plain
``actor.npz``/``actor.json``) and the marker must never appear.  rsl_rl checkpoints are read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import base64
import builtins
import json
import pickle
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from karakuri.launch.cli import main
from karakuri.policies.run_dir import TrainConfig
from karakuri.policies.sb3_actor import RunDirError, actor_module, load_actor
from karakuri.policies.train import train
from karakuri.policies.trainers.sb3 import PPO

TINY = dict(num_envs=16, total_steps=512, checkpoint_every=256, eval_episodes=2, net=(16, 16),
            progress=False)


class Payload:
    """Unpickling this creates ``marker`` (stands for any code an attacker would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return builtins.open, (self.marker, "w")


def plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Payload(marker)))


def plant_model_zip(path: Path, marker: Path) -> None:
    """Put the payload in the SB3 zip's ``data`` (SB3 cloudpickle-loads ``:serialized:``)."""
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    data = json.loads(files["data"])
    data["policy_class"] = {":type:": "<class 'type'>",
                            ":serialized:": base64.b64encode(pickle.dumps(Payload(marker))).decode()}
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)


@pytest.fixture(scope="module")
def honest_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("safety") / "run"
    return train(TrainConfig(run_dir=str(run), **TINY))


@pytest.fixture()
def planted(honest_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the run with a payload in every pickled file; (run, marker)."""
    run, marker = tmp_path / "planted", tmp_path / "PWNED"
    shutil.copytree(honest_run, run)
    pickles = [run / "vecnormalize.pkl", *run.glob("checkpoints/*.pkl")]
    zips = [run / "model.zip", *run.glob("checkpoints/*.zip")]
    assert len(pickles) >= 2 and len(zips) >= 2
    for p in pickles:
        plant_pickle(p, marker)
    for z in zips:
        plant_model_zip(z, marker)
    return run, marker


def test_the_planted_payload_is_live(planted: tuple[Path, Path]) -> None:
    run, marker = planted  # unpickling either file runs it: the tests below can fail
    with open(run / "vecnormalize.pkl", "rb") as f:
        pickle.load(f)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(Exception):  # noqa: B017 - whatever SB3 makes of the payload's result
        PPO.load(run / "model.zip", device="cpu")
    assert marker.exists()


def test_eval_reads_plain_data_only(planted: tuple[Path, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    run, marker = planted
    assert main(["eval", str(run), "--episodes", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    assert not marker.exists()


def test_export_module_reads_plain_data_only(planted: tuple[Path, Path]) -> None:
    from karakuri.policies.evaluate import run_pipeline
    from karakuri.policies.export_run import run_policy_module
    from karakuri.sim.registry import make_env

    run, marker = planted
    env = make_env("reach", num_worlds=2, seed=0, randomize=False)
    run_policy_module(run, env)
    run_pipeline(run, env)
    env.close()
    assert not marker.exists()


@pytest.mark.slow
def test_export_cli_on_a_planted_run(planted: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    run, marker = planted
    out = tmp_path / "p.onnx"
    assert main(["export", str(run), "-o", str(out)]) == 0, capsys.readouterr()
    assert out.stat().st_size > 1000
    assert not marker.exists()


def test_plain_actor_is_the_sb3_actor_exactly(honest_run: Path) -> None:
    model = PPO.load(honest_run / "model.zip", device="cpu")
    norm, actor = load_actor(honest_run)
    k = norm.mean.shape[0]
    want = actor_module(model, k)
    obs = torch.from_numpy(np.random.default_rng(0).normal(size=(64, k)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(actor(obs), want(obs))
    with open(honest_run / "vecnormalize.pkl", "rb") as f:  # our own honest file
        vec = pickle.load(f)
    np.testing.assert_array_equal(norm.mean, vec.obs_rms.mean[:k])
    np.testing.assert_array_equal(norm.var, vec.obs_rms.var[:k])
    assert (norm.eps, norm.clip) == (vec.epsilon, vec.clip_obs)


def test_checkpoints_have_plain_actors(honest_run: Path) -> None:
    steps = sorted(int(p.stem.split("_")[1]) for p in honest_run.glob("checkpoints/actor_*.npz"))
    zips = sorted(int(p.stem.split("_")[1]) for p in honest_run.glob("checkpoints/model_*.zip"))
    assert steps and steps == zips


def test_an_object_array_in_actor_npz_is_refused(honest_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run, marker = tmp_path / "run", tmp_path / "PWNED"
    shutil.copytree(honest_run, run)
    with open(run / "actor.npz", "wb") as f:
        np.savez(f, obs_mean=np.array([Payload(marker)], dtype=object))
    assert main(["eval", str(run), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "actor.npz" in err and "Traceback" not in err
    assert not marker.exists()


def test_a_run_without_plain_actor_says_how_to_write_it(
    honest_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "old"
    shutil.copytree(honest_run, run)
    for p in [run / "actor.npz", run / "actor.json", *run.glob("checkpoints/actor_*")]:
        p.unlink()
    assert main(["eval", str(run), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "no actor.npz" in err and f"--resume {run} --total-steps 1" in err
    with pytest.raises(RunDirError):
        load_actor(run)
    # the fix it names works: resume (trusting the directory) writes the plain files
    assert main(["train", "reach", "--resume", str(run), "--total-steps", "1",
                 "--no-progress"]) == 0
    assert (run / "actor.npz").exists()
    assert main(["eval", str(run), "--episodes", "2"]) == 0


# ----------------------------------------------------------------------------- rsl_rl runs
def _fake_rsl_run(run: Path, extra: object = None) -> None:
    """An rsl_rl run directory as its trainer writes it, with a 2-layer actor (no rsl_rl needed)."""
    run.mkdir()
    cfg = TrainConfig(task="reach", trainer="rsl_rl", net=(8,), run_dir=str(run))
    (run / "config.json").write_text(json.dumps({"config": asdict(cfg), "code_version": "t"}))
    (run / "rsl_rl.json").write_text(json.dumps({"obs_norm_eps": 1e-2, "activation": "elu"}))
    obs, act = 4, 2
    actor = {"mlp.0.weight": torch.randn(8, obs), "mlp.0.bias": torch.zeros(8),
             "mlp.2.weight": torch.randn(act, 8), "mlp.2.bias": torch.zeros(act),
             "obs_normalizer._mean": torch.zeros(1, obs), "obs_normalizer._std": torch.ones(1, obs)}
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))]).state_dict()
    state = {"actor_state_dict": actor, "critic_state_dict": {}, "optimizer_state_dict": opt,
             "iter": 3, "infos": extra}
    torch.save(state, run / "model.pt")


def test_rsl_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    from karakuri.policies.trainers.rsl import load_rsl_actor

    _fake_rsl_run(tmp_path / "run")
    norm, actor = load_rsl_actor(tmp_path / "run")
    assert actor(torch.zeros(1, 4)).shape == (1, 2) and norm.mean.shape == (4,)


def test_rsl_checkpoint_with_a_payload_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from karakuri.policies.trainers.rsl import load_rsl_actor

    marker = tmp_path / "PWNED"
    _fake_rsl_run(tmp_path / "run", extra=Payload(marker))
    with pytest.raises(RunDirError, match="model.pt"):
        load_rsl_actor(tmp_path / "run")
    assert not marker.exists()
    torch.load(tmp_path / "run" / "model.pt", weights_only=False)  # the payload is live
    assert marker.exists()
