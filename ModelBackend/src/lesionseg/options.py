"""Typed settings from which the command line's flags and the Slicer panels' settings are both made.

A method's predict-time settings are a frozen dataclass derived from :class:`Options`; a training recipe's
from :class:`Settings` too. Each field is declared with :func:`option` (help text, unit, choices, the flag's
metavar) and a type the converters understand: ``bool``, ``int``, ``float``, ``str``, ``Path``, ``Optional``
of those, fixed-length tuples of numbers (``tuple[float, float, float]`` -> ``nargs=3``) and tuples of
any length (``tuple[int, ...]`` -> ``nargs="+"``). Validation is
the dataclass's own ``__post_init__`` raising :class:`~lesionseg.errors.InputError` naming the flag
(:meth:`Settings.flag`). The segmenters take the dataclass, never ``argparse``::

    @dataclass(frozen=True)
    class S4COptions(Options):
        stride: Optional[int] = option(None, "sliding-window stride in working voxels (default: the model's)")

    S4COptions.add_arguments(parser)             # --stride N
    opts = S4COptions.from_namespace(args)       # S4COptions(stride=20)
    S4COptions.describe()                        # [{"name": "stride", "flag": "--stride", "type": "int", ...}]
    opts.to_dict(); S4COptions.from_dict(d)      # Slicer parameter nodes, the server, model cards

Flags are the field names with ``_`` as ``-`` unless a field gives ``flag=``. A boolean field whose default is
True gets a ``--no-NAME`` flag. No torch here.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, get_args, get_origin

from .errors import InputError

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", Path: "path"}


def option(default: Any, help: str, *, flag: Optional[str] = None, choices: Optional[Sequence] = None,
           metavar: Optional[Any] = None, unit: str = "", slicer: bool = True, advanced: bool = False) -> Any:
    """A dataclass field with what the CLI and Slicer need to show it.

    Args:
        default: the default value (immutable: tuples, not lists).
        help: one line for ``--help`` and the Slicer tooltip.
        flag: the CLI flag when it is not ``--field-name``.
        choices: allowed values (a combo box in Slicer).
        metavar: argparse metavar (a tuple for multi-value flags).
        unit: shown after the value in Slicer and in the help ("HU", "mm", "mL").
        slicer: whether a Slicer panel shows it (False for file paths the panel sets itself).
        advanced: shown under "Advanced" in Slicer.
    """
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "choices": choices,
                                                        "metavar": metavar, "unit": unit, "slicer": slicer,
                                                        "advanced": advanced})


def _resolve(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``(inner type, optional)`` of ``Optional[X]`` / ``X``."""
    if get_origin(tp) is typing.Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _tuple_shape(tp: Any) -> Optional[tuple[Any, int]]:
    """``(element type, n)`` of ``tuple[X, X, ...]`` with n fixed elements; None otherwise."""
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if args and Ellipsis not in args and all(a == args[0] for a in args):
            return args[0], len(args)
    return None


def _tuple_any(tp: Any) -> Optional[Any]:
    """Element type of ``tuple[X, ...]`` (any length >= 1: ``nargs="+"``); None otherwise."""
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _type_name(tp: Any) -> str:
    inner, optional = _unwrap(tp)
    shape = _tuple_shape(inner)
    name = f"{_TYPE_NAMES.get(shape[0], 'str')}[{shape[1]}]" if shape else _TYPE_NAMES.get(inner, "str")
    if _tuple_any(inner) is not None:
        name = f"{_TYPE_NAMES.get(_tuple_any(inner), 'str')}[]"
    return name + ("?" if optional else "")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base class of typed settings (see the module docstring)."""

    @classmethod
    def flag(cls, name: str) -> str:
        """The CLI flag of field ``name``, e.g. ``--prior-sd``."""
        field = next((f for f in dataclasses.fields(cls) if f.name == name), None)
        if field is None:
            raise KeyError(name)
        return field.metadata.get("flag") or "--" + name.replace("_", "-")

    @classmethod
    def describe(cls) -> list[dict]:
        """One dict per field: ``name``, ``flag``, ``type`` (``int``, ``float[3]?``, ...), ``default``, ``help``,
        ``choices``, ``unit``, ``slicer``, ``advanced`` — what a Slicer panel builds its widgets from."""
        hints = _resolve(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            out.append({"name": f.name, "flag": cls.flag(f.name), "type": _type_name(hints[f.name]),
                        "default": list(default) if isinstance(default, tuple) else
                        (str(default) if isinstance(default, Path) else default),
                        "help": f.metadata.get("help", ""), "choices": list(f.metadata.get("choices") or []) or None,
                        "unit": f.metadata.get("unit", ""), "slicer": f.metadata.get("slicer", True),
                        "advanced": f.metadata.get("advanced", False)})
        return out

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, group: Optional[str] = None) -> None:
        """Add one flag per field to ``parser`` (into an argument group titled ``group`` when given)."""
        target = parser.add_argument_group(group) if group else parser
        hints = _resolve(cls)
        for f in dataclasses.fields(cls):
            inner, _ = _unwrap(hints[f.name])
            meta = f.metadata
            flag = cls.flag(f.name)
            unit = f" ({meta['unit']})" if meta.get("unit") else ""
            default = f.default if f.default is not dataclasses.MISSING else None
            text = meta.get("help", "") + unit
            if inner is bool:
                if default is True:
                    negative = "--no-" + flag[2:]
                    target.add_argument(negative, dest=f.name, action="store_false", default=True,
                                        help=f"do not: {text}")
                else:
                    target.add_argument(flag, dest=f.name, action="store_true", default=False, help=text)
                continue
            kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": text + (
                f" (default {default})" if default not in (None, "") and not isinstance(default, tuple) else "")}
            shape = _tuple_shape(inner)
            if shape:
                kwargs.update(type=shape[0], nargs=shape[1])
            elif _tuple_any(inner) is not None:
                kwargs.update(type=_tuple_any(inner), nargs="+")
            else:
                kwargs["type"] = inner if inner in (int, float, str, Path) else str
            if meta.get("choices"):
                kwargs["choices"] = list(meta["choices"])
            if meta.get("metavar") is not None:
                kwargs["metavar"] = meta["metavar"]
            target.add_argument(flag, **kwargs)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace):
        """The settings from parsed CLI arguments (fields missing from ``args`` keep their defaults)."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        """JSON-ready values (tuples as lists, paths as strings)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, Path) else value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from ``to_dict`` output or CLI values; lists become tuples, strings become paths where the field
        is a path; unknown keys are an :class:`InputError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)} for {cls.__name__}; known: {', '.join(sorted(names))}")
        hints = _resolve(cls)
        values = {}
        for name, value in data.items():
            inner, _ = _unwrap(hints[name])
            if value is not None and _tuple_shape(inner):
                element, n = _tuple_shape(inner)
                if not isinstance(value, (list, tuple)) or len(value) != n:
                    raise InputError(f"{cls.flag(name)} takes {n} numbers, got {value!r}")
                value = tuple(element(v) for v in value)
            elif value is not None and _tuple_any(inner) is not None:
                if not isinstance(value, (list, tuple)) or not value:
                    raise InputError(f"{cls.flag(name)} takes one or more values, got {value!r}")
                value = tuple(_tuple_any(inner)(v) for v in value)
            elif value is not None and inner is Path:
                value = Path(value)
            elif value is not None and inner in (int, float) and not isinstance(value, bool):
                try:
                    value = inner(value)
                except (TypeError, ValueError):
                    raise InputError(f"{cls.flag(name)} takes a number, got {value!r}") from None
            values[name] = value
        return cls(**values)

    def replace(self, **changes):
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Options(Settings):
    """Base class of a method's predict-time settings (a method without any uses it as it is)."""
