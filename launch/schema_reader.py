"""Reading launch-file YAML against dataclass type hints, with errors that name the key.

Split from :mod:`karakuri.launch.schema` (which re-exports :class:`LaunchError`): the walker
behind :func:`~karakuri.launch.schema.parse_launch`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from karakuri.launch.schema_links import LINK_KINDS, LINKS, LinkConfig


class LaunchError(ValueError):
    """A launch file is malformed; the message names the file, the key and the fix."""


class _Ctx:
    """Walks YAML against dataclass type hints; every error names the file and key path."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.base = source.parent

    def fail(self, key: str, msg: str) -> LaunchError:
        return LaunchError(f"{self.source}: {key or '(top level)'}: {msg}")

    def build(self, cls: type, data: Any, key: str, extra: Mapping[str, Any] = ()) -> Any:
        if not isinstance(data, Mapping):
            raise self.fail(key, f"expected a mapping of keys, got {data!r}")
        hints = typing.get_type_hints(cls)
        fields_ = {f.name: f for f in dataclasses.fields(cls)
                   if f.init and f.metadata.get("yaml", True)}
        for k in data:
            if k not in fields_:
                raise self.fail(_join(key, str(k)), f"unknown key {k!r}; allowed keys here: "
                                f"{sorted(fields_)}")
        kwargs = dict(extra)
        for name, f in fields_.items():
            sub = _join(key, name)
            if name in data:
                kwargs[name] = self.convert(hints[name], data[name], sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.fail(sub, f"missing required key {name!r} ({_describe(hints[name])})")
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as e:
            raise self.fail(key, str(e)) from e

    def convert(self, tp: Any, v: Any, key: str) -> Any:
        origin, args = get_origin(tp), get_args(tp)
        if tp is LinkConfig:
            return self.link(v, key)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if v is None and len(inner) < len(args):
                return None
            return self.convert(inner[0], v, key)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, v, key)
        if origin is Literal:
            if v not in args:
                raise self.fail(key, f"{v!r} is not one of {list(args)}")
            return v
        if origin is tuple:
            return self.sequence(args, v, key)
        if origin in (dict, Mapping) or tp in (dict, Mapping):
            if not isinstance(v, Mapping):
                raise self.fail(key, f"expected a mapping, got {v!r}")
            return {str(k): self.convert(args[1], x, _join(key, str(k))) for k, x in v.items()}
        return self.scalar(tp, v, key)

    def sequence(self, args: tuple[Any, ...], v: Any, key: str) -> tuple[Any, ...]:
        if not isinstance(v, list | tuple):
            raise self.fail(key, f"expected a list ({_describe(tuple[args])}), got {v!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(self.convert(args[0], x, f"{key}[{i}]") for i, x in enumerate(v))
        if len(v) != len(args):
            raise self.fail(key, f"expected {len(args)} values, got {len(v)}: {v!r}")
        return tuple(self.convert(a, x, f"{key}[{i}]") for i, (a, x) in enumerate(zip(args, v,
                                                                                     strict=True)))

    def scalar(self, tp: Any, v: Any, key: str) -> Any:
        if tp is bool:
            ok = isinstance(v, bool)
        elif tp is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif tp is float:
            ok = isinstance(v, int | float) and not isinstance(v, bool)
            v = float(v) if ok else v
        elif tp is str:
            ok = isinstance(v, str)
        elif tp is Path:
            ok = isinstance(v, str) and bool(v)
            v = (self.base / Path(v).expanduser()).resolve() if ok else v
        else:
            raise self.fail(key, f"internal: no reader for type {tp!r}")
        if not ok:
            raise self.fail(key, f"expected {_describe(tp)}, got {v!r} ({type(v).__name__})")
        return v

    def link(self, v: Any, key: str) -> LinkConfig:
        if not isinstance(v, Mapping) or "kind" not in v:
            raise self.fail(key, f"expected a mapping with 'kind' (one of {list(LINK_KINDS)}), "
                                 f"got {v!r}")
        kind = v["kind"]
        if kind not in LINKS:
            raise self.fail(_join(key, "kind"), f"{kind!r} is not one of {list(LINK_KINDS)}")
        return self.build(LINKS[kind].config, {k: x for k, x in v.items() if k != "kind"}, key)


def config_section(cls: type, name: str, *, exclude: tuple[str, ...] = (),
                   defaults: Mapping[str, Any] | None = None,
                   check: Callable[[Any], None] | None = None,
                   doc: str = "", module: str = __name__) -> type:
    """A launch-file section made of a runtime config dataclass's own fields.

    The section has ``cls``'s fields (names, types, defaults) less ``exclude`` (the values the
    composer supplies: a rate, a hold time), so the launch file and the runtime cannot drift
    apart.  ``section.build(**rest)`` makes the ``cls`` the runtime takes from the section's
    values plus ``rest``.

    Args:
        cls: The runtime's frozen config dataclass.
        name: The section class's name (shown in errors and docs).
        exclude: Fields of ``cls`` that are not launch-file keys here.
        defaults: Launch-file defaults for fields that ``cls`` requires.
        check: Called with the section after construction (the rules of ``cls`` that do not
            need the excluded values); raises ValueError naming the key.
        doc: The section's docstring (first line); the field docs stay on ``cls``.
        module: The module the section is defined in (its ``__module__``).
    """
    hints = typing.get_type_hints(cls)
    defaults = dict(defaults or {})
    unknown = (set(exclude) | set(defaults)) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"config_section({cls.__name__}): no fields {sorted(unknown)}")
    specs: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        if f.name in defaults:
            spec = dataclasses.field(default=defaults[f.name])
        elif f.default is not dataclasses.MISSING:
            spec = dataclasses.field(default=f.default)
        elif f.default_factory is not dataclasses.MISSING:
            spec = dataclasses.field(default_factory=f.default_factory)
        else:
            spec = dataclasses.field()
        specs.append((f.name, hints[f.name], spec))

    def build(self: Any, **rest: Any) -> Any:
        return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **rest)

    def post_init(self: Any) -> None:
        if check is not None:
            check(self)

    build.__doc__ = f"The runtime's :class:`{cls.__qualname__}`: these values plus ``rest``."
    section = dataclasses.make_dataclass(
        name, specs, frozen=True, namespace={"build": build, "__post_init__": post_init,
                                             "runtime_type": cls})
    section.__module__ = module
    section.__doc__ = (f"{doc or name}\n\n    The fields of :class:`{cls.__module__}."
                       f"{cls.__qualname__}` (see its attributes)"
                       + (f" but {', '.join(exclude)}" if exclude else "") + ".\n")
    return section


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _describe(tp: Any) -> str:
    if tp is LinkConfig:
        return f"a mapping with kind: {' | '.join(LINK_KINDS)}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             Path: "a path (relative to the launch file)"}
    if tp in names:
        return names[tp]
    if get_origin(tp) is tuple:
        return "a list of " + ("numbers" if get_args(tp)[0] is float else "values")
    return getattr(tp, "__name__", str(tp))
