"""``karakuri export RUN_DIR -o policy.onnx``: one policy file from a training run."""

from __future__ import annotations

import argparse
import sys
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
    """Exit code: 0 written, 1 the export's own checks refused the file, 2 a usage error."""
    from karakuri.launch.cli import usage_error
    from karakuri.launch.outputs import check_output_file
    from karakuri.policies.export import ExportError
    from karakuri.policies.export_run import export_run

    if not Path(args.run_dir, "config.json").exists():
        return usage_error("export", f"{args.run_dir} is not a training run (no config.json)")
    if not args.atol > 0:
        return usage_error("export", f"--atol {args.atol} must be > 0")
    try:
        out = check_output_file(args.output, "-o")
        report = export_run(args.run_dir, out, atol=args.atol)
    except ExportError as e:
        print(f"karakuri export: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        return usage_error("export", e)
    print(report)
    return 0
