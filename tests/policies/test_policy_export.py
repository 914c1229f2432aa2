from __future__ import annotations

import types

import numpy as np
import onnx
import pytest
import torch
from policy_file_helpers import exported, robot_signals, torch_act, toy_module, toy_spec

from karakuri.policies import export as export_mod
from karakuri.policies.export import (
    ActionMap,
    ExportError,
    Normalizer,
    ObsTerm,
    build_policy_module,
    export_policy,
    make_metadata,
)
from karakuri.policies.metadata import PolicyMetadata
from karakuri.policies.onnx_policy import OnnxPolicy


@pytest.mark.parametrize("kind", ["joint_position_delta", "joint_position"])
def test_round_trip_matches_torch(kind: str) -> None:
    path, module, _ = exported(kind)
    policy = OnnxPolicy(path)
    for batch in (1, 5):
        sig = robot_signals(batch, seed=batch)
        sig["last_action"] = np.random.default_rng(batch).uniform(-1, 1, (batch, 6)).astype(
            np.float32)
        want_target, want_action = torch_act(module, sig)
        got = policy.act(sig)
        assert got.shape == (batch, 7)
        np.testing.assert_allclose(got, want_target, atol=1e-5, rtol=0)
        np.testing.assert_allclose(policy.last_outputs()["action"], want_action, atol=1e-5,
                                   rtol=0)


def test_file_passes_checker_and_holds_metadata() -> None:
    path, module, meta = exported("joint_position_delta")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == list(module.input_names)
    assert [o.name for o in model.graph.output] == ["joint_target", "action"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    props = {p.key: p.value for p in model.metadata_props}
    assert PolicyMetadata.from_props(props) == meta
    # One clean graph: assembly, normalizer, two Gemm layers, action map; no Python left.
    ops = {n.op_type for n in model.graph.node}
    assert {"Gemm", "Concat", "Clip"} <= ops and len(model.graph.node) < 25


def test_export_refuses_to_write_when_onnx_differs(monkeypatch, tmp_path) -> None:
    module, spec = toy_module()
    real = export_mod._to_onnx

    def corrupted(m, *a, **kw):
        model = real(m, *a, **kw)
        w = next(t for t in model.graph.initializer if len(t.dims) == 2)
        arr = onnx.numpy_helper.to_array(w).copy()
        arr[0, 0] += 1e-2
        w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
        return model

    monkeypatch.setattr(export_mod, "_to_onnx", corrupted)
    target = tmp_path / "policy.onnx"
    with pytest.raises(ExportError, match=r"refusing to write .*> atol 1e-05.*nothing was written"):
        export_policy(module, target, make_metadata(module, spec), n_random=32)
    assert list(tmp_path.iterdir()) == []  # no file, no temp file


def test_export_compares_recorded_states_and_reports(tmp_path) -> None:
    module, spec = toy_module("joint_position", seed=3, normalize=False)
    rec = robot_signals(10)
    rec["last_action"] = np.zeros((10, 6), np.float32)
    report = export_policy(module, tmp_path / "p.onnx", make_metadata(module, spec), rec,
                           n_random=16)
    assert report.n_recorded == 10 and report.n_random == 16
    assert 0 <= report.max_abs_error <= 1e-5 and "wrote" in str(report)
    del rec["command"]
    with pytest.raises(ValueError, match="recorded states lack signal 'command'"):
        export_policy(module, tmp_path / "q.onnx", make_metadata(module, spec), rec)


def test_action_map_semantics() -> None:
    spec = toy_spec()
    module, _ = toy_module("joint_position_delta")
    sig = robot_signals(64, seed=1)
    sig["last_action"] = np.zeros((64, 6), np.float32)
    target, action = torch_act(module, sig)
    assert np.all(np.abs(action) <= 1.0)
    want = np.clip(sig["joint_pos"][:, :6] + 0.5 * action, spec.lower[:6], spec.upper[:6])
    np.testing.assert_allclose(target[:, :6], want, atol=1e-6)
    np.testing.assert_allclose(target[:, 6], 0.02)  # gripper held, not fed by joint_pos

    am = ActionMap("joint_position", scale=[1.0, 2.0], lower=[-1, -1, -1], upper=[1, 1, 1],
                   default_pose=[0.1, 0.2, 0.3], joints=(2, 0), clip_action=None)
    m = build_policy_module([ObsTerm("command", "command", 2)], None, torch.nn.Identity(), am)
    t, a = m(torch.tensor([[0.5, 0.1], [5.0, -5.0]]))
    np.testing.assert_allclose(t.numpy(), [[0.3, 0.2, 0.8], [-1.0, 0.2, 1.0]], atol=1e-6)
    np.testing.assert_allclose(a.numpy(), [[0.5, 0.1], [5.0, -5.0]])  # no clip_action


def test_normalizer_matches_vecnormalize_formula() -> None:
    rng = np.random.default_rng(0)
    venv = types.SimpleNamespace(norm_obs=True, epsilon=1e-8, clip_obs=3.0,
                                 obs_rms=types.SimpleNamespace(mean=rng.normal(size=4),
                                                               var=rng.uniform(0, 2, 4)))
    norm = Normalizer.from_vecnormalize(venv)
    am = ActionMap("joint_position", 1.0, lower=[-50] * 4, upper=[50] * 4, default_pose=[0] * 4,
                   clip_action=None)
    m = build_policy_module([ObsTerm("x", "command", 4)], norm, torch.nn.Identity(), am)
    obs = rng.normal(scale=3, size=(8, 4))
    want = np.clip((obs - venv.obs_rms.mean) / np.sqrt(venv.obs_rms.var + 1e-8), -3, 3)
    np.testing.assert_allclose(m(torch.tensor(obs, dtype=torch.float32))[1].numpy(), want,
                               atol=1e-5)
    venv.norm_obs = False
    with pytest.raises(ValueError, match="norm_obs=False"):
        Normalizer.from_vecnormalize(venv)


def test_build_names_what_does_not_fit() -> None:
    spec = toy_spec()
    am = ActionMap.for_robot(spec, "joint_position", 0.5)
    terms = [ObsTerm("joint_pos_rel", "joint_pos", 7)]
    with pytest.raises(ValueError, match=r"actor maps obs \(B, 7\) to \(2, 3\).*\(B, 7\)"):
        build_policy_module(terms, None, torch.nn.Linear(7, 3), am)
    with pytest.raises(ValueError, match=r"normalizer has 5 entries.*joint_pos_rel"):
        build_policy_module(terms, Normalizer(np.zeros(5), np.ones(5)), torch.nn.Linear(7, 7), am)
    priv = [*terms, ObsTerm("cube_pos", "cube_pos", 3, privileged=True)]
    with pytest.raises(ValueError, match=r"'cube_pos'.*privileged"):
        build_policy_module(priv, None, torch.nn.Linear(10, 7), am)
    with pytest.raises(ValueError, match="last_action has size 3"):
        build_policy_module([ObsTerm("a", "last_action", 3)], None, torch.nn.Linear(3, 7), am)
    with pytest.raises(Exception, match="no joint 'nope'"):
        ActionMap.for_robot(spec, "joint_position", 0.5, joints=["nope"])


@pytest.mark.slow
def test_sb3_actor_is_the_deterministic_action() -> None:
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.policies import ActorCriticPolicy

    obs_space = gym.spaces.Box(-10, 10, (5,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    policy = ActorCriticPolicy(obs_space, act_space, lambda _: 3e-4, net_arch=[16, 16])
    actor = export_mod.sb3_actor(policy)
    obs = torch.randn(4, 5)
    with torch.no_grad():
        want = policy.get_distribution(obs).mode()
        np.testing.assert_allclose(actor(obs).numpy(), want.numpy(), atol=1e-6)


def test_observation_is_terms_then_normalizer() -> None:
    module, spec = toy_module(normalize=True)
    sig = {**robot_signals(16, seed=5),
           "last_action": np.random.default_rng(5).uniform(-1, 1, (16, 6)).astype(np.float32)}
    xs = [torch.from_numpy(sig[n]) for n in module.input_names]
    raw = np.concatenate([sig["joint_pos"] - spec.default_pose, sig["joint_vel"] * 0.1,
                          sig["command"], sig["last_action"]], axis=1)
    np.testing.assert_allclose(module.observation(*xs).numpy(), raw, atol=1e-6)
    rng = np.random.default_rng(0)  # toy_module's normalizer statistics
    mean, var = rng.normal(size=23), rng.uniform(0.1, 2.0, 23)
    want = np.clip((raw - mean) / np.sqrt(var + 1e-8), -5, 5)
    np.testing.assert_allclose(module.normalized_observation(*xs).numpy(), want, atol=2e-6)
    model = onnx.load(exported()[0])
    assert {i.name for i in model.graph.initializer}.isdisjoint({"obs_offset", "obs_scale"})


def test_one_normalizer_converts_each_trainers_form() -> None:
    from karakuri.policies.normalizer import NormalizeObs

    rng = np.random.default_rng(3)
    mean, std = rng.normal(size=5), rng.uniform(0.1, 2.0, 5)
    obs = rng.normal(scale=3, size=(7, 5))
    # rsl_rl: (obs - mean) / (std + eps), unclipped
    rsl = Normalizer.from_std(mean, std, eps=1e-2)
    got = NormalizeObs(rsl)(torch.tensor(obs, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, (obs - mean) / (std + 1e-2), rtol=1e-5, atol=1e-5)
    # the run directory's plain-data form round-trips exactly
    sb3 = Normalizer(mean, std**2, eps=1e-8, clip=4.0)
    arrays, scalars = sb3.to_arrays()
    back = Normalizer.from_arrays(arrays, scalars)
    assert np.array_equal(back.mean, sb3.mean) and np.array_equal(back.var, sb3.var)
    assert (back.eps, back.clip) == (1e-8, 4.0)
    with pytest.raises(ValueError, match="var \\+ eps must be > 0"):
        Normalizer(np.zeros(2), np.zeros(2), eps=0.0)
