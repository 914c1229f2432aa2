"""``karakuri sign POLICY --key KEY``: write ``POLICY.sig`` beside a policy file."""

from __future__ import annotations

import argparse
from pathlib import Path

from karakuri.launch.cli import usage_error


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sign``."""
    p = sub.add_parser(
        "sign", help="sign a policy file (writes POLICY.sig beside it)",
        description="Signs the whole file (its metadata included) with an Ed25519 private key "
                    "from 'karakuri keygen'. See docs/trust.md.")
    p.add_argument("policy", type=Path, help="the policy file, e.g. runs/reach/policy.onnx")
    p.add_argument("--key", type=Path, required=True, help="private key file (NAME.key)")
    p.add_argument("--signer", default="", help="label recorded in the signature, e.g. ci@acme")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0, or 2 when the file or key cannot be used."""
    from karakuri.policies.signing import TrustError, read_signature, sign_file

    if not args.policy.is_file():
        return usage_error("sign", f"{args.policy} does not exist or is not a file")
    try:
        out = sign_file(args.policy, args.key, args.signer)
        sig = read_signature(args.policy)
    except (TrustError, OSError) as e:
        return usage_error("sign", e)
    assert sig is not None  # just written
    print(f"signed {args.policy} (sha256 {sig.sha256}) with key {sig.key_id}: {out}")
    return 0
