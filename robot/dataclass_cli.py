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


def add_dataclass_args(
    parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()
) -> None:
    """Add one flag per field of ``cls`` (a dataclass) to ``parser``."""
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        help_ = docs.get(f.name, "")
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
