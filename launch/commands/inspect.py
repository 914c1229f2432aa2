"""``karakuri inspect POLICY [--trust KEY...]``: what a policy file is and who signed it.

Prints where the file came from and whether the signature verifies.  Base install only
(onnxruntime, cryptography; no torch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from karakuri.launch.cli import usage_error


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``inspect``."""
    p = sub.add_parser(
        "inspect", help="print a policy file's metadata, provenance and signature",
        description="Robot, task, inputs; the training config and its sha256, code version "
                    "(dirty flag), package versions, evaluation, run and parent-run hashes; "
                    "the signer, and with --trust whether the signature verifies.")
    p.add_argument("policy", type=Path, help="the policy file")
    p.add_argument("--trust", type=Path, nargs="+", default=None, metavar="KEY",
                   help="trusted public key files: also verify the signature")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(func=run)


def read_metadata(path: Path) -> Any:
    """The :class:`~karakuri.policies.metadata.PolicyMetadata` of a file, via onnxruntime."""
    import onnxruntime as ort

    from karakuri.policies.metadata import PolicyMetadata
    from karakuri.robot.policy import PolicyError

    try:
        session = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types are not exported
        raise PolicyError(f"{path} is not a readable ONNX model: {e}") from e
    return PolicyMetadata.from_props(session.get_modelmeta().custom_metadata_map)


def signature_status(path: Path, trust: list[Path] | None) -> dict[str, Any]:
    """The signature beside ``path`` and, with ``trust``, whether it verifies."""
    from karakuri.policies.signing import (
        TrustError,
        file_sha256,
        load_trusted,
        read_signature,
        verify_file,
    )

    out: dict[str, Any] = {"sha256": file_sha256(path)}
    try:
        sig = read_signature(path)
    except TrustError as e:
        return {**out, "signed": True, "verified": False, "reason": e.reason, "detail": str(e)}
    if sig is None:
        return {**out, "signed": False, "verified": False, "reason": "unsigned"}
    out.update(signed=True, key_id=sig.key_id, signer=sig.signer, signed_at=sig.signed_at)
    if trust is None:
        return {**out, "verified": None, "detail": "not checked: give --trust KEY..."}
    try:
        v = verify_file(path, load_trusted(trust))
    except TrustError as e:
        return {**out, "verified": False, "reason": e.reason, "detail": str(e)}
    return {**out, "verified": True, "key_file": v.key_source}


def _lines(meta: Any, sig: dict[str, Any]) -> list[str]:
    p = dict(meta.provenance)
    code, ev = p.get("code") or {}, p.get("evaluation") or {}
    verdict = {True: "VERIFIED", False: f"NOT VERIFIED ({sig.get('reason')})",
               None: "not checked (give --trust KEY...)"}[sig["verified"]]
    out = [
        f"robot {meta.robot_name} ({meta.n_joints} joints), task {meta.task or '?'}, "
        f"{meta.control_rate_hz:g} Hz, action {meta.action_type}",
        "inputs " + ", ".join(f"{k} {v['shape']}" for k, v in meta.inputs.items()),
        f"run {meta.run_id or '?'}, exported {meta.created} by {meta.code_version or '?'}",
        f"sha256 {sig['sha256']}",
        f"signature: {verdict}" + (f"; key {sig['key_id']}, signer {sig.get('signer') or '-'}, "
                                   f"signed {sig.get('signed_at')}" if sig.get("key_id") else ""),
    ]
    if sig.get("detail") and sig["verified"] is False:
        out.append(f"  {sig['detail']}")
    if not p:
        return [*out, "provenance: none recorded (exported before provenance existed)"]
    dirty = {True: "DIRTY", False: "clean", None: "unknown"}[code.get("dirty")]
    out += [
        f"trained by code {code.get('describe') or code.get('version')} "
        f"(commit {code.get('commit') or '?'}, {dirty})",
        f"training config sha256 {p.get('training_config_sha256')}",
        f"  {json.dumps(p.get('training_config'), sort_keys=True)}",
        "packages (training): " + _pkgs(p.get("packages")),
        "packages (export):   " + _pkgs(p.get("packages_at_export")),
        f"run hash {p.get('run_hash')}; parent run {p.get('parent_run_hash') or 'none (fresh)'}",
    ]
    if ev:
        extra = "".join(f", {k} {ev[k]:.4g}" for k in ("peak_zone_speed_max",
                                                        "peak_contact_force_max") if k in ev)
        out.append(f"evaluation: success {ev.get('success_rate')}, episodes {ev.get('episodes')}, "
                   f"seed {ev.get('seed')}{extra} (eval.json sha256 "
                   f"{str(ev.get('eval_json_sha256'))[:16]}…)")
    else:
        out.append("evaluation: none recorded")
    return out


def _pkgs(d: Any) -> str:
    if not d:
        return "not recorded"
    return ", ".join(f"{k} {v}" for k, v in d.items() if v)


def run(args: argparse.Namespace) -> int:
    """Exit code 0, 1 when --trust was given and the signature does not verify, 2 unreadable."""
    from karakuri.policies.signing import TrustError
    from karakuri.robot.policy import PolicyError

    if not args.policy.is_file():
        return usage_error("inspect", f"{args.policy} does not exist or is not a file")
    try:
        meta = read_metadata(args.policy)
        sig = signature_status(args.policy, args.trust)
    except (PolicyError, TrustError) as e:
        return usage_error("inspect", e)
    if args.json:
        from dataclasses import asdict

        print(json.dumps({"metadata": asdict(meta), "signature": sig}, indent=2, default=str))
    else:
        print("\n".join(_lines(meta, sig)))
    return 1 if args.trust is not None and not sig["verified"] else 0
