from __future__ import annotations

import pytest
from policy_file_helpers import exported

from karakuri.launch.cli import main


def test_bench_inference_on_a_file_prints_percentiles_and_ratios(capsys) -> None:
    path = exported("joint_position_delta")[0]
    assert main(["bench", "inference", str(path), "--iters", "1000", "--warmup", "10"]) == 0
    out = capsys.readouterr().out
    assert "provider CPUExecutionProvider" in out
    for row in ("OnnxPolicy.act", "ORT session.run", "torch eager", "TorchScript"):
        assert row in out
    assert "rebuilt from the file's graph" in out and "torch eager / OnnxPolicy.act" in out
    err = float(out.split("max |torch - ORT| ")[1].split(")")[0])
    assert err <= 1e-5  # the rebuilt torch network is the same network


def test_bench_inference_needs_a_policy_or_mlp(capsys) -> None:
    assert main(["bench", "inference"]) == 2
    assert "--mlp 256,128,64" in capsys.readouterr().err
    assert main(["bench", "inference", "--mlp", "256,x"]) == 2


@pytest.mark.slow
def test_bench_inference_synthetic_mlp(capsys, tmp_path) -> None:
    target = tmp_path / "mlp.onnx"
    assert main(["bench", "inference", str(target), "--mlp", "256,128,64", "--iters", "1000",
                 "--warmup", "10"]) == 0
    out = capsys.readouterr().out
    assert target.exists() and "the exported module" in out
    assert "targets (issue 3, 256-128-64 MLP)" in out
