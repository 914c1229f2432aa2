"""The edge runtime installs and runs with only the base dependencies: no torch, no MuJoCo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from policy_file_helpers import exported, robot_signals, torch_act

REPO = Path(__file__).resolve().parents[2]
BASE_DEPS = ["numpy", "onnxruntime", "pyserial", "PyYAML", "cryptography"]
PACKAGE_DIRS = ["karakuri", "robot", "sim", "policies", "firmware_bridge", "launch"]

SCRIPT = """
import json, sys
import numpy as np
import karakuri
from karakuri.policies.onnx_policy import OnnxPolicy
from karakuri.policies.signing import load_trusted, verify_file

verified = verify_file(sys.argv[1], load_trusted([sys.argv[3]]))  # before the file is parsed
policy = OnnxPolicy(sys.argv[1])
signals = {k: np.asarray(v, np.float32) for k, v in json.loads(sys.argv[2]).items()}
first = policy.act(signals)
second = policy.act(signals)  # last_action fed back
for name in ("torch", "mujoco", "onnx"):
    assert name not in sys.modules, name
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise AssertionError(f"{name} is importable in the edge venv")
print(json.dumps({"first": first.tolist(), "second": second.tolist(),
                  "action": policy.last_outputs()["action"].tolist(),
                  "karakuri": karakuri.__file__, "provider": policy.provider,
                  "signed_by": verified.key_id}))
"""


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_policy_runs_in_a_venv_with_only_base_dependencies(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    deps = _run([str(py), "-m", "pip", "install", "-q", *BASE_DEPS, "setuptools>=68", "wheel"],
                tmp_path)
    if deps.returncode != 0:
        pytest.skip(f"cannot install the base dependencies here: {deps.stderr[-500:]}")
    # Install a copy, not the checkout: a build must not write into the working tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in PACKAGE_DIRS:
        shutil.copytree(REPO / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    inst = _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                 str(src)], tmp_path)
    assert inst.returncode == 0, inst.stderr[-2000:]

    path, module, _ = exported("joint_position_delta")
    path = Path(shutil.copy(path, tmp_path / "policy.onnx"))
    from karakuri.policies.signing import generate_keypair, sign_file

    key, pub, key_id = generate_keypair(tmp_path / "keys")
    sign_file(path, key)
    sig = robot_signals(1, seed=7)
    res = _run([str(py), "-c", SCRIPT, str(path),
                json.dumps({k: v.tolist() for k, v in sig.items()}), str(pub)], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert "site-packages" in out["karakuri"] and out["provider"] == "CPUExecutionProvider"
    assert out["signed_by"] == key_id  # the base install verifies signatures
    zeros = np.zeros((1, 6), np.float32)
    want1, a1 = torch_act(module, {**sig, "last_action": zeros})
    want2, _ = torch_act(module, {**sig, "last_action": a1})
    np.testing.assert_allclose(out["first"], want1, atol=1e-5)
    np.testing.assert_allclose(out["second"], want2, atol=1e-5)

    bench = _run([str(venv / "bin" / "karakuri"), "bench", "inference", str(path),
                  "--iters", "1000", "--warmup", "10"], tmp_path)
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert "torch is not installed here: onnxruntime only" in bench.stdout
    assert "OnnxPolicy.act" in bench.stdout and "torch eager" not in bench.stdout
