"""``karakuri export RUN_DIR -o policy.onnx``: one policy file from a training run."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args


@dataclass(frozen=True)
class ExportArgs:
    """What ``karakuri export`` exports, and where.

    Attributes:
        run_dir: training run directory
        output: policy file to write
        atol: largest onnxruntime-vs-torch difference accepted (default: the export gate's
            EXPORT_ATOL, 1e-5)
    """

    run_dir: str = field(metadata={"positional": True})
    output: str = field(default="policy.onnx", metadata={"flags": ("-o", "--output")})
    atol: float | None = field(default=None, metadata={"metavar": "ATOL"})


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``; its arguments are the fields of :class:`ExportArgs`."""
    p = sub.add_parser("export", help="export a run to one self-contained policy.onnx")
    add_dataclass_args(p, ExportArgs)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    """Exit code: 0 written, 1 the export's own checks refused the file, 2 a usage error."""
    from karakuri.launch.cli import usage_error
    from karakuri.launch.outputs import check_output_file
    from karakuri.policies.export import ExportError
    from karakuri.policies.export_run import export_run

    opts = dataclass_from_args(ExportArgs, args)
    if not Path(opts.run_dir, "config.json").exists():
        return usage_error("export", f"{opts.run_dir} is not a training run (no config.json)")
    if opts.atol is not None and not opts.atol > 0:
        return usage_error("export", f"--atol {opts.atol} must be > 0")
    try:
        out = check_output_file(opts.output, "-o")
        report = export_run(opts.run_dir, out, atol=opts.atol)
    except ExportError as e:
        print(f"karakuri export: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        return usage_error("export", e)
    print(report)
    return 0
