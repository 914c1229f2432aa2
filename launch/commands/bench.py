"""``karakuri bench KIND``: benchmarks that print their same-run baseline and the ratio.

Each kind lives in ``bench_<kind>.py`` beside this file and exposes ``register(sub)``.
"""

from __future__ import annotations

import argparse
import importlib

KINDS = ("sim", "inference", "loop", "link")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` and its kinds."""
    p = sub.add_parser("bench", help="benchmarks (each prints its same-run baseline and ratio)")
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    for kind in KINDS:
        try:
            mod = importlib.import_module(f"karakuri.launch.commands.bench_{kind}")
        except ModuleNotFoundError as e:
            kinds.add_parser(kind, help=f"(unavailable here: needs {e.name})")
            continue
        mod.register(kinds)
