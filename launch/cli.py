"""The ``karakuri`` command.

Each subcommand lives in its own module under ``karakuri.launch.commands`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed namespace and returning an exit code.  Modules are imported lazily by name so that
``karakuri deploy`` on an edge box never imports torch or MuJoCo.

A user's mistake (a bad value, a missing or unwritable file) is one line on stderr naming
the value and the fix, and exit code :data:`USAGE_ERROR`, checked before any long run and
before a robot is armed (:func:`usage_error`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Exit code of a user's mistake (argparse's own usage errors exit 2 as well).
USAGE_ERROR = 2


def usage_error(command: str, message: object) -> int:
    """Print ``karakuri COMMAND: message`` to stderr; returns :data:`USAGE_ERROR`."""
    print(f"karakuri {command}: {message}", file=sys.stderr)
    return USAGE_ERROR


# Subcommand name -> module in karakuri.launch.commands that registers it.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "robot": "robot",
    "train": "train",
    "eval": "evaluate",
    "export": "export",
    "deploy": "deploy",
    "sil": "sil",
    "bench": "bench",
    "proxy": "proxy",
    "keygen": "keygen",
    "sign": "sign",
    "verify": "verify",
    "inspect": "inspect",
    "audit": "audit",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The top-level parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="karakuri",
        description="Train robot policies in MuJoCo, export one ONNX file, run it in the loop.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, module in COMMANDS.items():
        if chosen is None or chosen == name or chosen not in COMMANDS:
            try:
                mod = importlib.import_module(f"karakuri.launch.commands.{module}")
            except ModuleNotFoundError as e:
                if chosen == name:
                    raise SystemExit(
                        f"karakuri {name}: needs the Python package {e.name!r}; install the "
                        f"extra that provides it, e.g. pip install 'karakuri[sim,train]'"
                    ) from e
                sub.add_parser(name, help=f"(unavailable here: needs {e.name})")
                continue
            mod.register(sub)
        else:
            sub.add_parser(name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``karakuri`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
