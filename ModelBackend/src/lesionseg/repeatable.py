"""Settings whose list-valued flags may be given several times, the values adding up
(``--negatives A --negatives B C`` is ``(A, B, C)``).

:mod:`lesionseg.options` gives every tuple-valued field one ``nargs`` flag whose last occurrence wins;
:class:`RepeatableSettings` switches the fields it names to argparse's ``extend`` action and writes their paths
as strings into the card. No torch here.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

from .options import Settings


class Repeatable:
    """A parser (or argument group) stand-in that gives the flags whose ``dest`` is in ``names`` argparse's
    ``extend`` action, so repeating them adds values instead of keeping the last."""

    def __init__(self, target: Any, names: Sequence[str]) -> None:
        self.target, self.names = target, tuple(names)

    def add_argument_group(self, *args: Any, **kwargs: Any) -> "Repeatable":
        return Repeatable(self.target.add_argument_group(*args, **kwargs), self.names)

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("dest") in self.names:
            kwargs["action"] = "extend"
        return self.target.add_argument(*args, **kwargs)


@dataclass(frozen=True)
class RepeatableSettings(Settings):
    """:class:`~lesionseg.options.Settings` whose :attr:`REPEATABLE` fields (each an optional tuple) take
    repeated flags and are written by :meth:`to_dict` as lists of strings (paths included)."""

    REPEATABLE: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, group: Optional[str] = None) -> None:
        """The flags of :class:`~lesionseg.options.Settings`, the :attr:`REPEATABLE` ones adding up."""
        super().add_arguments(Repeatable(parser, cls.REPEATABLE), group)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        """JSON-ready values; a :attr:`REPEATABLE` field as a list of strings (``Settings.to_dict`` leaves paths
        inside tuples as they are)."""
        out = super().to_dict()
        for name in self.REPEATABLE:
            if out.get(name) is not None:
                out[name] = [str(v) for v in out[name]]
        return out
