"""Ed25519 signatures of policy files: key pairs, the ``policy.onnx.sig`` sidecar, verification.

A signature covers the whole policy file, its ``metadata_props`` included: the signer signs
``CONTEXT + sha256(file bytes)``, so any changed byte of the file breaks it.  The signature
lives beside the file, as a small JSON document ``<file>.sig`` (see :class:`Signature`), so
the signed bytes are exactly the bytes onnxruntime loads: nothing has to be taken out of the
file before it can be hashed.  ``docs/trust.md`` says why this library and this layout.

Edge-safe: the standard library and ``cryptography`` only (no numpy, torch, MuJoCo or onnx),
so the base install verifies a file before anything is sent to a robot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: The only algorithm written and accepted.
ALGORITHM = "ed25519"
#: The layout of a ``.sig`` file written by this code; a reader refuses others.
SIG_FORMAT = "karakuri-signature/1"
#: Domain separation: a signature of a policy file can never be taken for anything else.
CONTEXT = b"karakuri policy file, sha256:"
#: A signature sits beside the file it signs: ``policy.onnx`` -> ``policy.onnx.sig``.
SIG_SUFFIX = ".sig"
#: An environment variable holding a passphrase for the private key file (optional).
PASSPHRASE_ENV = "KARAKURI_KEY_PASSPHRASE"

TrustFailure = Literal["unsigned", "bad signature", "unknown signer", "bad key"]


class TrustError(ValueError):
    """A policy file cannot be trusted, or a key cannot be used.

    Attributes:
        reason: ``"unsigned"``, ``"bad signature"``, ``"unknown signer"`` or ``"bad key"``.
    """

    def __init__(self, reason: TrustFailure, message: str) -> None:
        super().__init__(message)
        self.reason: TrustFailure = reason


@dataclass(frozen=True)
class PublicKey:
    """A trusted (or candidate) signer.

    Attributes:
        key_id: Fingerprint: the first 32 hex digits of sha256 of the 32 raw key bytes.
        key: The Ed25519 public key.
        source: Where it was read from (a file path), for messages.
    """

    key_id: str
    key: Ed25519PublicKey
    source: str = ""


@dataclass(frozen=True)
class Signature:
    """The content of a ``.sig`` file (JSON, one object).

    Attributes:
        format: :data:`SIG_FORMAT`.
        algorithm: :data:`ALGORITHM`.
        key_id: The signer's key id (:func:`key_id`).
        sha256: sha256 of the signed file, hex.
        size: Size of the signed file, bytes.
        file: The signed file's name when it was signed (informative; renaming is allowed).
        signed_at: ISO 8601 UTC time of signing (informative, not signed).
        signer: Free-text label of who signed, e.g. ``"ci@acme"`` (informative, not signed).
        signature: Base64 of the 64-byte Ed25519 signature of ``CONTEXT + sha256 digest``.
    """

    format: str
    algorithm: str
    key_id: str
    sha256: str
    size: int
    file: str
    signed_at: str
    signer: str
    signature: str


@dataclass(frozen=True)
class Verified:
    """A policy file whose signature verified under a trusted key.

    Attributes:
        path: The file.
        sha256: sha256 of the bytes verified, hex.
        key_id: The trusted key that verified it.
        key_source: The trusted key's file.
        signed_at: When it was signed (from the ``.sig`` file, not signed).
        signer: The signer's label (from the ``.sig`` file, not signed).
    """

    path: Path
    sha256: str
    key_id: str
    key_source: str
    signed_at: str
    signer: str


# ----------------------------------------------------------------------------- keys
def key_id(key: Ed25519PublicKey) -> str:
    """The fingerprint of a public key: 32 hex digits of sha256 of its raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def generate_keypair(out_dir: str | Path, name: str = "karakuri") -> tuple[Path, Path, str]:
    """Write a new Ed25519 key pair: ``<name>.key`` (private, mode 0600) and ``<name>.pub``.

    The private key is PKCS#8 PEM, encrypted when ``$KARAKURI_KEY_PASSPHRASE`` is set; the
    public key is SubjectPublicKeyInfo PEM.  Existing files are never overwritten.

    Returns:
        (private key path, public key path, key id).

    Raises:
        TrustError: ``bad key``: a file of that name already exists or cannot be written.
    """
    out = Path(out_dir)
    priv_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv_path, pub_path):
        if p.exists():
            raise TrustError("bad key", f"{p} already exists; keygen never overwrites a key "
                                        f"(choose another --out or --name)")
    private = Ed25519PrivateKey.generate()
    passphrase = os.environ.get(PASSPHRASE_ENV, "")
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
        else serialization.NoEncryption())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    public = private.public_key()
    pub_pem = public.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_new(priv_path, pem, 0o600)
        _write_new(pub_path, pub_pem, 0o644)
    except OSError as e:
        raise TrustError("bad key", f"cannot write the key pair in {out}: {e}") from e
    return priv_path, pub_path, key_id(public)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # the umask may have cleared bits of ``mode``


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Read a private key written by :func:`generate_keypair`.

    Raises:
        TrustError: ``bad key``: missing, readable by group or others, encrypted without
            ``$KARAKURI_KEY_PASSPHRASE``, or not an Ed25519 private key.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as e:
        raise TrustError("bad key", f"private key {path}: cannot be read: {e}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TrustError("bad key", f"private key {path}: readable by others (mode "
                                    f"{stat.S_IMODE(mode):o}); run 'chmod 600 {path}'")
    passphrase = os.environ.get(PASSPHRASE_ENV, "").encode() or None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as e:
        hint = (f" (encrypted? set ${PASSPHRASE_ENV})" if passphrase is None and b"ENCRYPTED"
                in data else "")
        raise TrustError("bad key", f"private key {path}: not a readable PEM key{hint}: "
                                    f"{e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError("bad key", f"private key {path}: a {type(key).__name__}, not Ed25519; "
                                    f"make one with 'karakuri keygen'")
    return key


def load_public_key(path: str | Path) -> PublicKey:
    """Read a public key (``<name>.pub`` from :func:`generate_keypair`).

    Raises:
        TrustError: ``bad key``: missing, not PEM, or not an Ed25519 public key.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TrustError("bad key", f"public key {path}: cannot be read: {e}") from e
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise TrustError("bad key", f"public key {path}: not a PEM public key: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise TrustError("bad key", f"public key {path}: a {type(key).__name__}, not Ed25519")
    return PublicKey(key_id(key), key, str(path))


def load_trusted(paths: Iterable[str | Path]) -> list[PublicKey]:
    """The public keys of ``paths`` (a launch file's ``trust.keys``)."""
    return [load_public_key(p) for p in paths]


# ----------------------------------------------------------------------------- sign/verify
def sig_path(policy: str | Path) -> Path:
    """Where the signature of ``policy`` lives: beside it, ``<name>.sig``."""
    policy = Path(policy)
    return policy.with_name(policy.name + SIG_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sign_file(policy: str | Path, key_path: str | Path, signer: str = "") -> Path:
    """Sign ``policy`` with the private key at ``key_path``; writes and returns ``<policy>.sig``.

    Raises:
        TrustError: ``bad key`` (see :func:`load_private_key`).
        FileNotFoundError: ``policy`` does not exist.
    """
    policy = Path(policy)
    private = load_private_key(key_path)
    data = policy.read_bytes()
    digest = hashlib.sha256(data).digest()
    sig = Signature(
        format=SIG_FORMAT, algorithm=ALGORITHM, key_id=key_id(private.public_key()),
        sha256=digest.hex(), size=len(data), file=policy.name,
        signed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), signer=signer,
        signature=base64.b64encode(private.sign(CONTEXT + digest)).decode())
    out = sig_path(policy)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(asdict(sig), indent=2) + "\n")
    os.replace(tmp, out)
    return out


def read_signature(policy: str | Path) -> Signature | None:
    """The signature beside ``policy``; None when there is none.

    Raises:
        TrustError: ``bad signature``: the ``.sig`` file is not a signature this code reads.
    """
    path = sig_path(policy)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise TrustError("bad signature", f"signature {path}: cannot be read: {e}") from e
    try:
        d = json.loads(raw)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        sig = Signature(**{k: d[k] for k in Signature.__dataclass_fields__})
        if not isinstance(sig.size, int) or not all(
                isinstance(getattr(sig, k), str) for k in Signature.__dataclass_fields__
                if k != "size"):
            raise ValueError("a field has the wrong type")
    except (ValueError, KeyError, TypeError) as e:
        raise TrustError("bad signature", f"signature {path} is malformed ({e}); re-sign with "
                                          f"'karakuri sign'") from e
    if sig.format != SIG_FORMAT or sig.algorithm != ALGORITHM:
        raise TrustError("bad signature", f"signature {path}: format {sig.format!r}, algorithm "
                                          f"{sig.algorithm!r}; this runtime reads "
                                          f"{SIG_FORMAT!r} with {ALGORITHM!r}")
    return sig


def verify_file(policy: str | Path, trusted: Sequence[PublicKey],
                data: bytes | None = None) -> Verified:
    """Check that ``policy`` is unchanged since a trusted key signed it.

    Args:
        policy: The policy file; its signature is ``<policy>.sig``.
        trusted: The keys the operator trusts (a launch file's ``trust.keys``).
        data: The file's bytes when already read (then these bytes are what is verified).

    Returns:
        What verified, with the file's sha256.

    Raises:
        TrustError: ``unsigned`` (no ``.sig``), ``bad signature`` (malformed, file changed
            since signing, or the signature does not verify) or ``unknown signer`` (signed by a
            key not in ``trusted``); the message names the file, the key ids and the fix.
    """
    policy = Path(policy)
    sig = read_signature(policy)
    if sig is None:
        raise TrustError("unsigned", f"{policy} is unsigned (no {sig_path(policy).name} beside "
                                     f"it); sign it with 'karakuri sign {policy} --key KEY'")
    data = policy.read_bytes() if data is None else data
    digest = hashlib.sha256(data).digest()
    if digest.hex() != sig.sha256 or len(data) != sig.size:
        raise TrustError("bad signature", f"{policy} has changed since it was signed (sha256 "
                                          f"{digest.hex()[:16]}…, {len(data)} bytes; signed "
                                          f"{sig.sha256[:16]}…, {sig.size} bytes)")
    known = {k.key_id: k for k in trusted}
    key = known.get(sig.key_id)
    if key is None:
        have = ", ".join(known) or "none"
        raise TrustError("unknown signer", f"{policy} is signed by key {sig.key_id}, which is "
                                           f"not a trusted key (trust.keys: {have})")
    try:
        raw = base64.b64decode(sig.signature, validate=True)
        key.key.verify(raw, CONTEXT + digest)
    except (InvalidSignature, ValueError) as e:
        raise TrustError("bad signature", f"{policy}: the signature does not verify with "
                                          f"trusted key {key.key_id} ({key.source})") from e
    return Verified(policy, digest.hex(), key.key_id, key.source, sig.signed_at, sig.signer)
