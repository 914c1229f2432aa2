"""``karakuri export RUN_DIR -o policy.onnx``: one policy file from a training run."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``."""
    p = sub.add_parser("export", help="export a run to one self-contained policy.onnx")
    p.add_argument("run_dir", help="training run directory")
    p.add_argument("-o", "--output", default="policy.onnx", help="policy file to write")
    p.add_argument(
        "--atol", type=float, default=1e-5, help="largest onnxruntime-vs-torch difference accepted"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from karakuri.policies.export import ExportError
    from karakuri.policies.export_run import export_run

    if not Path(args.run_dir, "config.json").exists():
        print(f"karakuri export: {args.run_dir} is not a training run (no config.json)")
        return 2
    try:
        report = export_run(args.run_dir, args.output, atol=args.atol)
    except (ExportError, FileNotFoundError, ValueError) as e:
        print(f"karakuri export: {e}")
        return 1
    print(report)
    return 0
