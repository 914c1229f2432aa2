"""Turn a frozen config dataclass into argparse flags, so the CLI *is* the config.

Each field becomes ``--field-name`` with its type, default and the field's doc from the
class docstring's ``Attributes:`` section.  Nothing here repeats a config field by hand.
Standard library only; it sits at the bottom layer so that every package's entry point
(``karakuri.launch``'s commands, ``python -m karakuri.firmware_bridge.ros2_sim``) can use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")


def _field_docs(cls: type) -> dict[str, str]:
    doc = cls.__doc__ or ""
    out: dict[str, str] = {}
    m = re.search(r"Attributes:\n(.*?)(\n\s*\n|\Z)", doc, re.S)
    if m:
        current = None
        for line in m.group(1).splitlines():
            hit = re.match(r"\s+(\w+):\s*(.*)", line)
            if hit and (current is None or len(line) - len(line.lstrip()) <= 8):
                current = hit.group(1)
                out[current] = hit.group(2)
            elif current:
                out[current] += " " + line.strip()
    return out


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


#: Field metadata keys that shape a command-line argument (see :func:`add_dataclass_args`).
CLI_KEYS = ("positional", "flags", "metavar")


def add_dataclass_args(
    parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()
) -> None:
    """Add one argument per field of ``cls`` (a dataclass) to ``parser``, in field order.

    A field is a ``--field-name`` flag with its type and default, unless its ``metadata``
    says otherwise:

    - ``positional=True``: a positional argument (``karakuri eval SOURCE``), not a flag;
    - ``flags=("-o", "--output")``: the option strings, when the flag has a short form;
    - ``metavar="OUT.mp4"``: the placeholder shown in ``--help``.
    """
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        help_ = docs.get(f.name, "")
        if any(k in f.metadata for k in CLI_KEYS):
            _add_shaped_arg(parser, f, tp, help_)
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        if tp is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_,
            )
        elif get_origin(tp) is Literal:
            parser.add_argument(
                flag, dest=f.name, choices=list(get_args(tp)), default=default, help=help_
            )
        elif get_origin(tp) in (tuple, list):
            (inner, *_) = get_args(tp) or (str,)
            parser.add_argument(
                flag, dest=f.name, nargs="+", type=inner, default=default, help=help_
            )
        else:
            conv = tp if tp in (int, float, str, Path) else str
            parser.add_argument(
                flag, dest=f.name, type=conv, default=default, help=f"{help_} (default: {default})"
            )


def _add_shaped_arg(
    parser: argparse.ArgumentParser, f: dataclasses.Field, tp: Any, help_: str
) -> None:
    """One field whose ``metadata`` names its ``positional``/``flags``/``metavar`` shape."""
    kwargs: dict[str, Any] = {"type": tp if tp in (int, float, str) else str, "help": help_}
    if "metavar" in f.metadata:
        kwargs["metavar"] = f.metadata["metavar"]
    if f.metadata.get("positional"):
        parser.add_argument(f.name, **kwargs)
        return
    default = None if f.default is dataclasses.MISSING else f.default
    if default not in (None, ""):
        kwargs["help"] += f" (default: {default})"
    flags = f.metadata.get("flags", ("--" + f.name.replace("_", "-"),))
    parser.add_argument(*flags, dest=f.name, default=default, **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the parsed flags (plus ``overrides``); its checks run as usual."""
    kwargs = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and hasattr(args, f.name)
    }
    for k, v in list(kwargs.items()):
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    kwargs.update(overrides)
    return cls(**kwargs)
