"""Deploy refuses what it cannot trust, before anything reaches the robot; the opt-out is
recorded.  Serial runs against a real pty (nothing may arrive on it); SIL runs the real loop."""

from __future__ import annotations

import json
import os
import pty
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("mujoco")

from trust_helpers import hold_policy, keys, launch_file, set_metadata, signed_policy

from karakuri.launch.cli import main
from karakuri.launch.deploy import deploy
from karakuri.launch.schema import load_launch
from karakuri.launch.trust import PolicyTrustError
from karakuri.policies.signing import file_sha256, sig_path


@pytest.fixture
def port():
    """A real serial port (pty): (device path, master fd to read what the host sent)."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    yield os.ttyname(slave), master
    os.close(master)
    os.close(slave)


def sent(master: int) -> bytes:
    try:
        return os.read(master, 4096)
    except BlockingIOError:
        return b""


def records(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "audit.jsonl").read_text().splitlines()]


def flip_byte(path: Path, where: float) -> None:
    data = bytearray(path.read_bytes())
    data[int(where * (len(data) - 1))] ^= 0x01
    path.write_bytes(bytes(data))


TAMPER = {
    "unsigned": (lambda tmp: sig_path(tmp / "policy.onnx").unlink(), "unsigned"),
    "first byte": (lambda tmp: flip_byte(tmp / "policy.onnx", 0.0), "bad signature"),
    "middle byte": (lambda tmp: flip_byte(tmp / "policy.onnx", 0.5), "bad signature"),
    "last byte": (lambda tmp: flip_byte(tmp / "policy.onnx", 1.0), "bad signature"),
    "metadata value": (lambda tmp: set_metadata(tmp / "policy.onnx", "control_rate_hz", "100"),
                       "bad signature"),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_serial_deploy_refuses_before_opening_the_port(tmp_path, port, case, capsys):
    device, master = port
    priv, pub, _ = keys(tmp_path / "keys")
    signed_policy(tmp_path, priv)
    tamper, reason = TAMPER[case]
    tamper(tmp_path)
    lf = launch_file(tmp_path, {"kind": "serial", "port": device},
                     trust={"keys": ["keys/org.pub"]})
    assert main(["deploy", str(lf)]) == 2
    err = capsys.readouterr().err
    assert f"policy refused ({reason})" in err and "policy.onnx" in err
    assert sent(master) == b""  # not one byte reached the robot
    rec = records(tmp_path)
    assert [r["kind"] for r in rec] == ["deploy_refused"] and rec[0]["reason"] == reason


def test_a_changed_metadata_value_with_a_rewritten_sig_does_not_verify(tmp_path, port):
    device, master = port
    priv, _, _ = keys(tmp_path / "keys")
    p = signed_policy(tmp_path, priv)
    set_metadata(p, "control_rate_hz", "100")  # a policy file claiming a faster rate
    sig = json.loads(sig_path(p).read_text())
    sig.update(sha256=file_sha256(p), size=p.stat().st_size)
    sig_path(p).write_text(json.dumps(sig))
    cfg = load_launch(launch_file(tmp_path, {"kind": "serial", "port": device},
                                  trust={"keys": ["keys/org.pub"]}))
    with pytest.raises(PolicyTrustError, match="does not verify with trusted key"):
        deploy(cfg, log=lambda s: None)
    assert sent(master) == b""


def test_an_untrusted_signer_is_refused_naming_its_key(tmp_path, port):
    device, master = port
    priv, _, kid = keys(tmp_path / "keys")
    keys(tmp_path / "keys", "other")
    signed_policy(tmp_path, priv)
    cfg = load_launch(launch_file(tmp_path, {"kind": "serial", "port": device},
                                  trust={"keys": ["keys/other.pub"]}))
    with pytest.raises(PolicyTrustError, match=f"unknown signer.*signed by key {kid}") as e:
        deploy(cfg, log=lambda s: None)
    assert e.value.reason == "unknown signer" and sent(master) == b""


class Recorder:
    """Stands in for a ROS 2 link: notes any call (none may come)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        self.calls.append(name)
        return lambda *a, **k: None


def test_ros2_deploy_refuses_an_unsigned_file_before_touching_the_link(tmp_path):
    hold_policy(tmp_path / "policy.onnx")
    cfg = load_launch(launch_file(tmp_path, {"kind": "ros2", "namespace": "/arm"}))
    link = Recorder()
    with pytest.raises(PolicyTrustError, match=r"policy refused \(unsigned\).*ros2 links refuse"):
        deploy(cfg, link=(link, None), log=lambda s: None)
    assert link.calls == []


def test_a_bad_signature_is_refused_even_with_allow_unsigned(tmp_path):
    priv, _, _ = keys(tmp_path / "keys")
    signed_policy(tmp_path, priv)
    flip_byte(tmp_path / "policy.onnx", 0.3)
    cfg = load_launch(launch_file(tmp_path, {"kind": "sil"}, allow_unsigned=True))
    with pytest.raises(PolicyTrustError, match="bad signature"):
        deploy(cfg, log=lambda s: None)


def test_sil_runs_a_verified_file_with_no_warning(tmp_path):
    priv, _, kid = keys(tmp_path / "keys")
    signed_policy(tmp_path, priv)
    lines: list[str] = []
    cfg = load_launch(launch_file(tmp_path, {"kind": "sil"}, allow_unsigned=False,
                                  trust={"keys": ["keys/org.pub"]}, operator="ana"))
    result = deploy(cfg, log=lines.append)
    assert result.summary.ticks > 0 and result.notes == []
    assert not any("WARNING" in x for x in lines)
    start, end = records(tmp_path)
    assert start["policy"]["trust"] == "verified" and start["policy"]["key_id"] == kid
    assert start["operator"] == "ana" and end["kind"] == "deploy_end"


def test_sil_default_allows_unsigned_and_warns_once(tmp_path, capsys):
    hold_policy(tmp_path / "policy.onnx")
    lf = launch_file(tmp_path, {"kind": "sil"})
    assert main(["deploy", str(lf)]) in (0, 1)  # it runs (1: a link fault on a loaded box)
    out = capsys.readouterr().out
    assert out.count("WARNING: running an unverified policy file (unsigned)") == 1
    assert records(tmp_path)[0]["policy"]["opt_out"] == "sil default"


def test_allow_unsigned_warns_at_start_and_in_the_summary_and_is_recorded(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.setenv("KARAKURI_OPERATOR", "bo")
    hold_policy(tmp_path / "policy.onnx")
    lf = launch_file(tmp_path, {"kind": "sil"}, allow_unsigned=True, operator="ana")
    assert main(["deploy", str(lf)]) in (0, 1)  # it runs (1: a link fault on a loaded box)
    out = capsys.readouterr().out
    assert out.count("WARNING: running an unverified policy file (unsigned)") == 2
    assert out.rindex("WARNING") > out.index("loop:")  # the second one after the summary
    start, end = records(tmp_path)
    assert start["policy"]["opt_out"] == "allow_unsigned: true" and start["operator"] == "bo"
    assert end["warnings"] and "unsigned" in end["warnings"][0]


def test_trust_keys_resolve_against_the_launch_file_and_bad_values_are_named(tmp_path):
    from karakuri.launch.schema import LaunchError

    lf = launch_file(tmp_path, {"kind": "sil"}, trust={"keys": ["keys/org.pub"]})
    cfg = load_launch(lf)
    assert cfg.trust.keys == ((tmp_path / "keys" / "org.pub").resolve(),)
    assert cfg.allow_unsigned is None and cfg.audit_log == (tmp_path / "audit.jsonl").resolve()
    with pytest.raises(LaunchError, match=r"allow_unsigned: expected true or false"):
        load_launch(launch_file(tmp_path, {"kind": "sil"}, allow_unsigned="yes"))
    with pytest.raises(LaunchError, match=r"trust\.sign: unknown key"):
        load_launch(launch_file(tmp_path, {"kind": "sil"}, trust={"sign": []}))
    hold_policy(tmp_path / "policy.onnx")
    with pytest.raises(LaunchError, match=r"trust\.keys: public key .*org\.pub: cannot be read"):
        deploy(cfg, log=lambda s: None)


def test_the_bytes_verified_are_the_bytes_that_run(tmp_path, monkeypatch):
    """Deploy hands onnxruntime the bytes it verified; it does not read the file again."""
    from karakuri.launch import deploy as deploy_mod
    from karakuri.launch.trust import check_trust
    from karakuri.policies.onnx_policy import OnnxPolicy

    priv, _, _ = keys(tmp_path / "keys")
    p = signed_policy(tmp_path, priv)
    cfg = load_launch(launch_file(tmp_path, {"kind": "sil"}, trust={"keys": ["keys/org.pub"]}))
    decision = check_trust(cfg)
    assert decision.status == "verified" and decision.data == p.read_bytes()
    loaded = OnnxPolicy(tmp_path / "elsewhere.onnx", data=decision.data)  # no file read
    assert loaded.metadata.robot_name == "industrial_arm"
    seen = []
    real = deploy_mod.load_policy
    monkeypatch.setattr(deploy_mod, "load_policy",
                        lambda cfg, data=None: seen.append(data) or real(cfg, data))
    deploy(cfg, log=lambda s: None)
    assert seen == [p.read_bytes()]
