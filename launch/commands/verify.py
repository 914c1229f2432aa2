"""``karakuri verify POLICY --trust KEY...``: does a policy file verify under trusted keys?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from karakuri.launch.cli import usage_error


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``verify``."""
    p = sub.add_parser(
        "verify", help="check a policy file's signature against trusted public keys",
        description="Exit 0 when POLICY.sig verifies under one of the keys; 1 (naming why: "
                    "unsigned, bad signature, unknown signer) otherwise.")
    p.add_argument("policy", type=Path, help="the policy file")
    p.add_argument("--trust", type=Path, nargs="+", required=True, metavar="KEY",
                   help="trusted public key files (NAME.pub)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 verified, 1 refused, 2 when a file cannot be read."""
    from karakuri.policies.signing import TrustError, load_trusted, verify_file

    if not args.policy.is_file():
        return usage_error("verify", f"{args.policy} does not exist or is not a file")
    try:
        keys = load_trusted(args.trust)
    except TrustError as e:
        return usage_error("verify", e)
    try:
        v = verify_file(args.policy, keys)
    except TrustError as e:
        print(f"karakuri verify: REFUSED ({e.reason}): {e}", file=sys.stderr)
        return 1
    print(f"verified {v.path}: sha256 {v.sha256}, signed by key {v.key_id} ({v.key_source})"
          + (f", signer {v.signer!r}" if v.signer else "") + f", at {v.signed_at}")
    return 0
