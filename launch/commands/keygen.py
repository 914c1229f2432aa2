"""``karakuri keygen --out DIR``: an organisation's Ed25519 key pair for signing policy files."""

from __future__ import annotations

import argparse
from pathlib import Path

from karakuri.launch.cli import usage_error


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``keygen``."""
    p = sub.add_parser(
        "keygen", help="make an Ed25519 key pair for signing policy files",
        description="Writes DIR/NAME.key (private, mode 0600; encrypted when "
                    "$KARAKURI_KEY_PASSPHRASE is set) and DIR/NAME.pub (public: list it under "
                    "trust.keys in launch files). Never overwrites. See docs/trust.md.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the pair")
    p.add_argument("--name", default="karakuri", help="file stem (default: karakuri)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0, or 2 when the pair cannot be written."""
    from karakuri.policies.signing import TrustError, generate_keypair

    try:
        priv, pub, kid = generate_keypair(args.out, args.name)
    except TrustError as e:
        return usage_error("keygen", e)
    print(f"private key {priv} (keep it secret: a CI secret or an HSM, never in the repo)")
    print(f"public key  {pub} (list it under trust.keys on each edge box)")
    print(f"key id      {kid}")
    return 0
