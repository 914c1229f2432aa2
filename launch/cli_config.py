"""Config dataclass to argparse flags, so every command's flags are its config's fields.

The field-to-flag mapping lives in :mod:`karakuri.robot.dataclass_cli` (it serves entry points
below ``launch`` too).  :func:`add_dataclass_args` here adds what a command line needs on top,
read from a field's ``metadata``:

- ``positional=True``: a positional argument (``karakuri eval SOURCE``), not a flag;
- ``flags=("-o", "--output")``: the option strings, when the flag has a short form;
- ``metavar="OUT.mp4"``: the placeholder shown in ``--help``.

Help text still comes from the class docstring's ``Attributes:`` section.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from karakuri.robot.dataclass_cli import _field_docs, _unwrap_optional, dataclass_from_args
from karakuri.robot.dataclass_cli import add_dataclass_args as _add_plain_args

__all__ = ["add_dataclass_args", "dataclass_from_args"]

_CLI_KEYS = ("positional", "flags", "metavar")


def add_dataclass_args(
    parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()
) -> None:
    """Add one argument per field of ``cls`` (a dataclass) to ``parser``.

    Fields without CLI metadata become ``--field-name`` flags exactly as
    :func:`karakuri.robot.dataclass_cli.add_dataclass_args` makes them; the others follow their
    ``positional``/``flags``/``metavar`` metadata (see the module docstring).
    """
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    # field by field, in order, so that --help lists them as the class does
    for f in (f for f in dataclasses.fields(cls) if f.init and f.name not in skip):
        if not any(k in f.metadata for k in _CLI_KEYS):
            others = tuple(g.name for g in dataclasses.fields(cls) if g is not f)
            _add_plain_args(parser, cls, skip=others)
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        conv = tp if tp in (int, float, str) else str
        kwargs: dict[str, Any] = {"type": conv, "help": docs.get(f.name, "")}
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        if f.metadata.get("positional"):
            parser.add_argument(f.name, **kwargs)
            continue
        default = None if f.default is dataclasses.MISSING else f.default
        if default not in (None, ""):
            kwargs["help"] += f" (default: {default})"
        flags = f.metadata.get("flags", ("--" + f.name.replace("_", "-"),))
        parser.add_argument(*flags, dest=f.name, default=default, **kwargs)
