"""Whether a deploy may run its policy file: signature, trusted keys and the opt-out.

:func:`check_trust` runs first in :func:`karakuri.launch.deploy.deploy`, before the policy file
is parsed and before the link is opened, so nothing reaches the robot from a file that is
unsigned, altered or signed by a key the launch file does not trust.  ``docs/trust.md``.

Edge-safe: the standard library, ``cryptography`` and the launch schema (no torch, MuJoCo).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from karakuri.launch.schema import LaunchConfig, LaunchError
from karakuri.policies.signing import (
    TrustError,
    load_trusted,
    read_signature,
    verify_file,
)

_FIX = {
    "unsigned": "sign it with 'karakuri sign POLICY --key KEY' and list the public key under "
                "trust.keys (or set allow_unsigned: true, which the audit log records)",
    "unknown signer": "if you trust that signer, add its public key file to trust.keys",
    "bad signature": "the file or its signature was altered; export and sign it again from "
                     "a source you trust",
}


class PolicyTrustError(LaunchError):
    """A deploy refused its policy file; ``reason`` says why (see :class:`TrustError`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TrustDecision:
    """Why a deploy runs its policy.

    Attributes:
        status: ``verified``, ``unsigned`` or ``unknown signer`` (both run only by opt-out), or
            ``in-process`` (a Policy object handed to ``deploy()`` from Python: no file).
        policy: The policy file.
        sha256: Its sha256, hex ('' for ``in-process``).
        key_id: The key that verified it, or the unknown signer's key id ('' if unsigned).
        key_source: The trusted key file that verified it.
        signer: The signer's label from the ``.sig`` file.
        opt_out: ``allow_unsigned: true``, ``sil default`` or ''.
        warning: The line printed when an unverified file runs ('' when verified).
        data: The file's bytes that were checked: load these, not the file again.
    """

    status: str
    policy: Path
    sha256: str = ""
    key_id: str = ""
    key_source: str = ""
    signer: str = ""
    opt_out: str = ""
    warning: str = ""
    data: bytes = field(default=b"", repr=False, compare=False)

    def as_record(self) -> dict[str, Any]:
        """The audit log's ``policy`` fields."""
        return {"path": str(self.policy), "sha256": self.sha256, "trust": self.status,
                "key_id": self.key_id, "key_file": self.key_source, "signer": self.signer,
                "opt_out": self.opt_out}


def allows_unsigned(cfg: LaunchConfig) -> tuple[bool, str]:
    """(allowed, why): ``allow_unsigned`` when set, else true only for ``sil`` links."""
    if cfg.allow_unsigned is not None:
        return cfg.allow_unsigned, "allow_unsigned: true" if cfg.allow_unsigned else ""
    return cfg.link_kind == "sil", "sil default" if cfg.link_kind == "sil" else ""


def check_trust(cfg: LaunchConfig) -> TrustDecision:
    """Verify ``cfg.policy`` against ``cfg.trust.keys``, or allow it by the opt-out.

    Raises:
        LaunchError: the policy file is missing, or a key in ``trust.keys`` is unreadable.
        PolicyTrustError: the file is refused (unsigned, bad signature, unknown signer);
            the message names the reason, the file, the key ids and the fix.
    """
    if not cfg.policy.is_file():
        raise LaunchError(f"{cfg.source}: policy: {cfg.policy} does not exist (or is not a "
                          f"file); export one with 'karakuri export RUN_DIR -o {cfg.policy}'")
    try:
        keys = load_trusted(cfg.trust.keys)
    except TrustError as e:
        raise LaunchError(f"{cfg.source}: trust.keys: {e}") from e
    try:
        data = cfg.policy.read_bytes()
    except OSError as e:
        raise LaunchError(f"{cfg.source}: policy: {cfg.policy} cannot be read: {e}") from e
    try:
        v = verify_file(cfg.policy, keys, data)
    except TrustError as e:
        allowed, why = allows_unsigned(cfg)
        if e.reason in ("unsigned", "unknown signer") and allowed:
            return _allowed_unverified(cfg, e, why, data)
        hint = ("" if e.reason == "bad signature"
                else f"; {cfg.link_kind} links refuse it unless allow_unsigned: true")
        raise PolicyTrustError(e.reason, f"{cfg.source}: policy refused ({e.reason}): {e}; "
                                         f"{_FIX[e.reason]}{hint}") from e
    return TrustDecision("verified", v.path, v.sha256, v.key_id, v.key_source, v.signer,
                         data=data)


def _allowed_unverified(cfg: LaunchConfig, e: TrustError, why: str,
                        data: bytes) -> TrustDecision:
    sig = read_signature(cfg.policy) if e.reason == "unknown signer" else None
    warning = (f"WARNING: running an unverified policy file ({e.reason}): {e}. Allowed by "
               f"{why}; a serial or ROS 2 deploy without allow_unsigned refuses it. Recorded in "
               f"the audit log.")
    return TrustDecision(e.reason, cfg.policy, hashlib.sha256(data).hexdigest(),
                         sig.key_id if sig else "", "", sig.signer if sig else "", why, warning,
                         data)


def in_process(cfg: LaunchConfig) -> TrustDecision:
    """The decision for a Policy object handed to ``deploy()``: no file was verified."""
    return TrustDecision("in-process", cfg.policy, opt_out="policy object passed to deploy()")
