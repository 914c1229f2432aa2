from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from policy_file_helpers import ARM, GRIPPER, exported, robot_signals, torch_act, toy_spec

from karakuri.policies.onnx_policy import OnnxPolicy
from karakuri.robot.policy import Policy, PolicyError


@pytest.fixture(scope="module")
def policy_file():
    return exported("joint_position_delta")


def test_loads_checks_and_describes(policy_file) -> None:
    path, _, meta = policy_file
    policy = OnnxPolicy(path, expected_spec=toy_spec(), rate_hz=50.0)
    assert isinstance(policy, Policy)
    assert policy.provider == "CPUExecutionProvider"
    assert policy.input_names == ("joint_pos", "joint_vel", "command", "last_action")
    assert policy.spec.to_dict() == toy_spec().to_dict()  # the edge box needs no MJCF
    assert policy.metadata == meta
    assert "provider CPUExecutionProvider" in policy.describe()


def test_truncated_file(policy_file, tmp_path) -> None:
    data = policy_file[0].read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(PolicyError, match=r"cut.onnx' is truncated or corrupt"):
        OnnxPolicy(bad)


def test_not_onnx_files(tmp_path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    with pytest.raises(PolicyError, match="is not an ONNX model"):
        OnnxPolicy(text)
    ckpt = tmp_path / "model.pt"
    with zipfile.ZipFile(ckpt, "w") as z:
        z.writestr("data.pkl", b"x")
    with pytest.raises(PolicyError, match=r"torch checkpoint.*karakuri export"):
        OnnxPolicy(ckpt)
    (tmp_path / "empty.onnx").touch()
    with pytest.raises(PolicyError, match="is empty"):
        OnnxPolicy(tmp_path / "empty.onnx")
    with pytest.raises(PolicyError, match="does not exist"):
        OnnxPolicy(tmp_path / "nope.onnx")


def test_missing_metadata_key(policy_file, tmp_path) -> None:
    model = onnx.load(policy_file[0])
    keep = [p for p in model.metadata_props if p.key != "joint_names"]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.save(model, tmp_path / "p.onnx")
    with pytest.raises(PolicyError, match="missing key 'joint_names'"):
        OnnxPolicy(tmp_path / "p.onnx")
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "bare.onnx")
    with pytest.raises(PolicyError, match="missing key"):
        OnnxPolicy(tmp_path / "bare.onnx")


def test_joint_order_mismatch_names_both_orders(policy_file) -> None:
    swapped = (ARM[0], ARM[2], ARM[1], *ARM[3:], *GRIPPER)
    with pytest.raises(PolicyError) as e:
        OnnxPolicy(policy_file[0], expected_spec=toy_spec(joint_names=swapped))
    msg = str(e.value)
    assert "joint 1 is 'shoulder_lift' in the policy but 'elbow' on the robot" in msg
    assert str(list(ARM + GRIPPER)) in msg and str(list(swapped)) in msg


def test_rate_and_limits_mismatch(policy_file) -> None:
    path = policy_file[0]
    with pytest.raises(PolicyError, match="trained at 50 Hz but is asked to run at 100 Hz"):
        OnnxPolicy(path, rate_hz=100.0)
    with pytest.raises(PolicyError, match="trained at 50 Hz"):
        OnnxPolicy(path, expected_spec=toy_spec(rate=200.0))
    with pytest.raises(PolicyError, match=r"'shoulder_pan' within \[-2.5, 2.5\].*\[-2, 2\]"):
        OnnxPolicy(path, expected_spec=toy_spec(lower=-2.0, upper=2.0))
    OnnxPolicy(path, expected_spec=toy_spec(lower=-3.0, upper=3.0))  # tighter policy: fine


def test_bad_inputs_are_named(policy_file) -> None:
    policy = OnnxPolicy(policy_file[0])
    sig = robot_signals(1)
    with pytest.raises(PolicyError, match=r"input 'command' is missing.*got \['joint_pos'"):
        policy.act({k: v for k, v in sig.items() if k != "command"})
    with pytest.raises(PolicyError, match=r"'joint_vel' has shape \(7,\); expected \(B, 7\)"
                                          r".*x\[None\]"):
        policy.act({**sig, "joint_vel": sig["joint_vel"][0]})
    with pytest.raises(PolicyError, match=r"'command' has shape \(1, 2\); expected \(B, 3\) m"):
        policy.act({**sig, "command": np.zeros((1, 2), np.float32)})
    with pytest.raises(PolicyError, match="'joint_pos' has dtype int64"):
        policy.act({**sig, "joint_pos": np.zeros((1, 7), np.int64)})
    with pytest.raises(PolicyError, match="all inputs need the same batch"):
        policy.act({**sig, "command": np.zeros((2, 3), np.float32)})


def test_unavailable_provider_is_named(policy_file) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    with pytest.raises(PolicyError, match="'CUDAExecutionProvider' is not in this onnxruntime"):
        OnnxPolicy(policy_file[0], providers=["CUDAExecutionProvider"])


def test_float64_and_lists_are_cast(policy_file) -> None:
    path, module, _ = policy_file
    policy = OnnxPolicy(path)
    sig = robot_signals(1, seed=4)
    want = torch_act(module, {**sig, "last_action": np.zeros((1, 6), np.float32)})[0]
    got = policy.act({k: v.astype(np.float64).tolist() for k, v in sig.items()})
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_last_action_fed_back_and_reset(policy_file) -> None:
    path, module, _ = policy_file
    policy = OnnxPolicy(path)
    s1, s2 = robot_signals(1, seed=1), robot_signals(1, seed=2)
    zeros = np.zeros((1, 6), np.float32)
    first = policy.act(s1)
    a1 = policy.last_outputs()["action"]
    np.testing.assert_allclose(first, torch_act(module, {**s1, "last_action": zeros})[0],
                               atol=1e-5)
    assert np.abs(a1).max() > 1e-3  # the feedback below is not trivially zero
    second = policy.act(s2)
    np.testing.assert_allclose(second, torch_act(module, {**s2, "last_action": a1})[0],
                               atol=1e-5)
    # A caller-given last_action wins over the fed-back one.
    given = policy.act({**s2, "last_action": zeros})
    np.testing.assert_allclose(given, torch_act(module, {**s2, "last_action": zeros})[0],
                               atol=1e-5)
    policy.act(s1)
    with pytest.raises(PolicyError, match=r"batch size changed from 1 to 3.*call reset\(\)"):
        policy.act(robot_signals(3))
    policy.reset()
    np.testing.assert_allclose(policy.act(s1), first, atol=1e-6)
    policy.reset()
    assert policy.act(robot_signals(3)).shape == (3, 7)


def test_runtime_imports_neither_torch_nor_mujoco(policy_file) -> None:
    code = (
        "import sys\n"
        "from karakuri.policies.onnx_policy import OnnxPolicy\n"
        f"OnnxPolicy({str(policy_file[0])!r})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mujoco', 'onnx'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.gpu
def test_cuda_provider_agrees_with_cpu(policy_file) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime here has no CUDA provider")
    path, module, _ = policy_file
    cuda = OnnxPolicy(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert cuda.provider == "CUDAExecutionProvider"
    sig = {**robot_signals(16), "last_action": np.zeros((16, 6), np.float32)}
    np.testing.assert_allclose(cuda.act(sig), torch_act(module, sig)[0], atol=1e-4)
