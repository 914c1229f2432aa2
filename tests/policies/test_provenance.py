"""Provenance: what training records, what export stores, what ``karakuri inspect`` prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from karakuri.launch.cli import main
from karakuri.policies.metadata import PolicyMetadata
from karakuri.policies.provenance import (
    code_info,
    config_sha256,
    package_versions,
    run_hash,
    run_provenance,
    training_record,
)

CONFIG = {"task": "handover", "robot": "", "num_envs": 8, "total_steps": 512, "seed": 3,
          "net": [64, 64]}
EVAL = {"episodes": 200, "success_rate": 0.97, "seed": 12345, "task": "handover",
        "peak_zone_speed_max": 0.21, "peak_contact_force_max": 11.5}


def fake_run(root: Path) -> Path:
    run = root / "run"
    (run / "tb").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "config.json").write_text(json.dumps(
        {"config": CONFIG, "code_version": "0.1.0", "provenance": training_record(run, False)}))
    (run / "actor.npz").write_bytes(b"weights v1")
    (run / "checkpoints" / "actor_512_steps.npz").write_bytes(b"ckpt")
    (run / "eval.json").write_text(json.dumps(EVAL))
    (run / "tb" / "events").write_bytes(b"log")
    return run


def test_code_and_packages_are_recorded():
    code = code_info()
    assert code["version"] and code["source"] in ("git", "package")
    if code["source"] == "git":
        assert len(code["commit"]) == 40 and isinstance(code["dirty"], bool)
    pk = package_versions()
    assert pk["numpy"] and pk["karakuri"] and "torch" in pk and "mujoco" in pk


def test_run_hash_covers_the_run_but_not_logs_or_outputs(tmp_path):
    run = fake_run(tmp_path)
    h = run_hash(run)
    (run / "tb" / "events").write_bytes(b"more log")
    (run / "policy.onnx").write_bytes(b"exported")
    (run / "policy.onnx.sig").write_text("{}")
    assert run_hash(run) == h
    (run / "actor.npz").write_bytes(b"weights v2")
    assert run_hash(run) != h


def test_a_resumed_run_records_its_parent(tmp_path):
    run = fake_run(tmp_path)
    before = run_hash(run)
    rec = training_record(run, resumed=True)
    assert rec["parent_run_hash"] == before and rec["ancestors"] == []
    assert training_record(run, resumed=False)["parent_run_hash"] is None


def test_export_provenance_has_config_code_packages_and_evaluation(tmp_path):
    run = fake_run(tmp_path)
    p = run_provenance(run)
    assert p["training_config"] == CONFIG
    assert p["training_config_sha256"] == config_sha256(CONFIG) and len(p["run_hash"]) == 64
    assert p["packages"]["numpy"] and p["code"]["version"]
    ev = p["evaluation"]
    assert (ev["success_rate"], ev["episodes"], ev["seed"]) == (0.97, 200, 12345)
    assert ev["peak_zone_speed_max"] == 0.21 and ev["peak_contact_force_max"] == 11.5
    assert ev["eval_json"] == EVAL and len(ev["eval_json_sha256"]) == 64
    assert p["parent_run_hash"] is None


@pytest.fixture
def policy(tmp_path):
    """A hand-built policy file with provenance (tests/launch/trust_helpers.py)."""
    pytest.importorskip("onnx")
    pytest.importorskip("mujoco")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "launch"))
    from trust_helpers import hold_policy

    return hold_policy(tmp_path / "policy.onnx")


def test_metadata_keeps_provenance_and_older_files_still_load(policy):
    import onnx

    model = onnx.load(policy)
    props = {p.key: p.value for p in model.metadata_props}
    meta = PolicyMetadata.from_props(props)
    assert meta.provenance["run_hash"] == "ab" * 32
    del props["provenance"]  # a file exported before provenance existed
    assert PolicyMetadata.from_props(props).provenance == {}


def test_inspect_prints_provenance_signer_and_verdict(policy, tmp_path, capsys):
    from karakuri.policies.signing import generate_keypair, sign_file

    priv, pub, kid = generate_keypair(tmp_path / "k")
    assert main(["inspect", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "robot industrial_arm" in out and "signature: NOT VERIFIED (unsigned)" in out
    assert "run hash " + "ab" * 32 in out
    sign_file(policy, priv, "ci@test")
    assert main(["inspect", str(policy), "--trust", str(pub)]) == 0
    out = capsys.readouterr().out
    assert f"signature: VERIFIED; key {kid}, signer ci@test" in out
    from trust_helpers import set_metadata

    set_metadata(policy, "task", "juggle")  # a changed metadata value
    assert main(["inspect", str(policy), "--trust", str(pub), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["signature"]["reason"] == "bad signature"
    assert doc["metadata"]["provenance"]["run_hash"] == "ab" * 32


@pytest.mark.slow
def test_a_trained_resumed_and_exported_run_carries_its_provenance(tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    tiny = ["--num-envs", "8", "--eval-episodes", "4", "--net", "16", "16", "--no-progress"]
    assert main(["train", "reach", "--run-dir", str(run), "--total-steps", "512", *tiny]) == 0
    first = run_hash(run)
    assert main(["train", "reach", "--resume", str(run), "--total-steps", "1024", *tiny]) == 0
    assert main(["export", str(run), "-o", str(run / "p.onnx")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(run / "p.onnx"), "--json"]) == 0
    p = json.loads(capsys.readouterr().out)["metadata"]["provenance"]
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert p["training_config"] == cfg and p["training_config_sha256"] == config_sha256(cfg)
    assert p["parent_run_hash"] == first and p["run_hash"] == run_hash(run)
    assert p["packages"]["torch"] and p["packages"]["mujoco"] and p["packages"]["numpy"]
    assert p["packages"]["stable-baselines3"] and p["code"]["version"]
    assert p["evaluation"]["episodes"] == 4 and "success_rate" in p["evaluation"]
