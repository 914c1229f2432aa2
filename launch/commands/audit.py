"""``karakuri audit verify LOG``: check an edge box's hash-chained audit log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from karakuri.launch.cli import usage_error


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``audit``."""
    p = sub.add_parser("audit", help="the deploy audit log (docs/trust.md)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    v = verbs.add_parser(
        "verify", help="check every record's hash and chain; name the first bad line",
        description="Exit 0 when every record verifies, 1 naming the first edited, removed or "
                    "reordered record's line. Prints the head hash: keep it elsewhere to detect "
                    "a truncated tail later (--head).")
    v.add_argument("log", type=Path, nargs="?", default=None,
                   help="the log (default: $KARAKURI_AUDIT_LOG or the box's default)")
    v.add_argument("--head", default=None, metavar="HASH",
                   help="a head hash noted earlier; it must still be in the chain")
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 verified, 1 a bad line (or a missing head), 2 when unreadable."""
    import json

    from karakuri.launch.audit import AuditError, default_log_path, verify_log

    path = args.log or default_log_path()
    try:
        rep = verify_log(path)
    except AuditError as e:
        return usage_error("audit verify", e)
    if not rep.ok:
        print(f"karakuri audit verify: {path}: line {rep.bad_line}: {rep.problem} "
              f"({rep.records} records before it verify)", file=sys.stderr)
        return 1
    if args.head:
        hashes = {json.loads(x)["hash"] for x in path.read_text().splitlines() if x}
        if args.head not in hashes:
            print(f"karakuri audit verify: {path}: head {args.head[:16]}… is not in the chain: "
                  f"the log was truncated or replaced", file=sys.stderr)
            return 1
    print(f"{path}: {rep.records} records verify; head {rep.head}")
    if rep.open_deploys:
        print(f"  deploys started with no end record (killed?): {', '.join(rep.open_deploys)}")
    return 0
