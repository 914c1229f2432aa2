"""Ed25519 signatures of policy files: keys, sign, verify, each way a file is refused; the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from karakuri.launch.cli import main
from karakuri.policies.signing import (
    PASSPHRASE_ENV,
    TrustError,
    file_sha256,
    generate_keypair,
    load_private_key,
    load_trusted,
    read_signature,
    sig_path,
    sign_file,
    verify_file,
)

BODY = bytes(range(256)) * 40  # any file: the signature covers bytes, not ONNX structure


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, str]:
    return generate_keypair(tmp_path / "keys", "org")


@pytest.fixture
def signed(tmp_path: Path, pair) -> Path:
    p = tmp_path / "policy.onnx"
    p.write_bytes(BODY)
    sign_file(p, pair[0], "ci@test")
    return p


def test_keygen_writes_a_private_key_only_its_owner_can_read(pair):
    priv, pub, kid = pair
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    assert len(kid) == 32 and load_trusted([pub])[0].key_id == kid
    with pytest.raises(TrustError, match="already exists"):
        generate_keypair(priv.parent, "org")  # never overwrites


def test_sign_then_verify(signed, pair):
    v = verify_file(signed, load_trusted([pair[1]]))
    assert v.key_id == pair[2] and v.sha256 == file_sha256(signed) and v.signer == "ci@test"
    sig = json.loads(sig_path(signed).read_text())
    assert sig["algorithm"] == "ed25519" and sig["sha256"] == v.sha256
    assert sig["size"] == len(BODY) and sig["key_id"] == pair[2]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, len(BODY) - 1), bit=st.integers(0, 7))
def test_one_flipped_bit_anywhere_is_a_bad_signature(signed, pair, pos, bit):
    data = bytearray(BODY)
    data[pos] ^= 1 << bit
    signed.write_bytes(bytes(data))
    with pytest.raises(TrustError) as e:
        verify_file(signed, load_trusted([pair[1]]))
    assert e.value.reason == "bad signature" and "changed since it was signed" in str(e.value)
    signed.write_bytes(BODY)


def test_a_changed_file_with_a_matching_hash_in_the_sig_does_not_verify(signed, pair):
    signed.write_bytes(BODY[:-1] + b"\x00")
    sig = json.loads(sig_path(signed).read_text())
    sig["sha256"] = file_sha256(signed)  # the attacker updates the sidecar too
    sig_path(signed).write_text(json.dumps(sig))
    with pytest.raises(TrustError, match="does not verify") as e:
        verify_file(signed, load_trusted([pair[1]]))
    assert e.value.reason == "bad signature"


def test_untrusted_signer_and_missing_signature_are_named(signed, pair, tmp_path):
    _, other_pub, other_id = generate_keypair(tmp_path / "other", "other")
    with pytest.raises(TrustError, match=f"signed by key {pair[2]}") as e:
        verify_file(signed, load_trusted([other_pub]))
    assert e.value.reason == "unknown signer" and other_id in str(e.value)
    sig_path(signed).unlink()
    with pytest.raises(TrustError, match="unsigned") as e:
        verify_file(signed, load_trusted([pair[1]]))
    assert e.value.reason == "unsigned"


@pytest.mark.parametrize("text", ["not json", "[]", '{"format": "karakuri-signature/1"}'])
def test_a_malformed_signature_file_is_a_bad_signature(signed, pair, text):
    sig_path(signed).write_text(text)
    with pytest.raises(TrustError, match="malformed") as e:
        verify_file(signed, load_trusted([pair[1]]))
    assert e.value.reason == "bad signature"


def test_private_key_readable_by_others_is_refused(pair, tmp_path):
    os.chmod(pair[0], 0o644)
    with pytest.raises(TrustError, match="chmod 600"):
        load_private_key(pair[0])


def test_passphrase_protected_key(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "s3cret")
    priv, pub, _ = generate_keypair(tmp_path, "enc")
    assert b"ENCRYPTED" in priv.read_bytes()
    p = tmp_path / "f.onnx"
    p.write_bytes(BODY)
    sign_file(p, priv)
    assert verify_file(p, load_trusted([pub])).sha256 == file_sha256(p)
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(TrustError, match="KARAKURI_KEY_PASSPHRASE"):
        load_private_key(priv)


def test_cli_keygen_sign_verify(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    p = tmp_path / "policy.onnx"
    p.write_bytes(BODY)
    assert main(["sign", str(p), "--key", str(tmp_path / "k" / "karakuri.key")]) == 0
    assert read_signature(p) is not None
    assert main(["verify", str(p), "--trust", str(tmp_path / "k" / "karakuri.pub")]) == 0
    p.write_bytes(BODY + b"x")
    capsys.readouterr()
    assert main(["verify", str(p), "--trust", str(tmp_path / "k" / "karakuri.pub")]) == 1
    assert "REFUSED (bad signature)" in capsys.readouterr().err
    assert main(["sign", str(tmp_path / "nope.onnx"), "--key", "k"]) == 2


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "mujoco", "onnx"):
            raise ImportError(name + " is not on the edge box")
sys.meta_path.insert(0, Block())
from karakuri.policies.signing import load_trusted, verify_file
import karakuri.launch.trust, karakuri.launch.audit, karakuri.launch.deploy_audit
v = verify_file(sys.argv[1], load_trusted([sys.argv[2]]))
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "mujoco"))
print("ok" if not bad else bad, v.key_id)
"""


def test_verification_imports_no_torch_or_mujoco(signed, pair):
    out = subprocess.run([sys.executable, "-c", BLOCK, str(signed), str(pair[1])],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", pair[2]]
