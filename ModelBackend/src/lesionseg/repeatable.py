"""Settings whose list-valued flags may be given several times, the values adding up
(``--negatives A --negatives B C`` is ``(A, B, C)``).

:mod:`lesionseg.options` gives every tuple-valued field one ``nargs`` flag whose last occurrence wins;
:class:`RepeatableSettings` switches the fields it names to argparse's ``extend`` action and writes their paths
as strings into the card. No torch here.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

from .errors import InputError
from .options import Settings, option


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


@dataclass(frozen=True)
class NegativesSettings(RepeatableSettings):
    """The training flags of real-CT negatives and intensity augmentation that methods share (issue #18; see
    :mod:`lesionseg.data.negatives`): ``--negatives`` and ``--exclude-negatives`` repeatable, the two
    probabilities checked to lie in 0..1. A method's settings inherit them (its own fields follow)."""

    REPEATABLE: ClassVar[tuple[str, ...]] = ("negatives", "exclude_negatives")

    negatives: Optional[tuple[Path, ...]] = option(None, "dataset of real CT without the lesions this method "
                                                         "segments: every channel of every case is a negative "
                                                         "sample (target background; its own labelled lesions "
                                                         "ignored); repeatable", metavar="DIR", slicer=False)
    negative_share: float = option(0.25, "probability that a training patch comes from --negatives when given")
    exclude_negatives: Optional[tuple[str, ...]] = option(None, "case names or patients of --negatives to leave out "
                                                                "(e.g. the scans tested on); repeatable",
                                                          metavar="NAME", slicer=False)
    intensity_augment: float = option(0.0, "probability per training patch of intensity augmentation (contrast, "
                                           "brightness, gamma, blur, noise)")

    def __post_init__(self) -> None:
        for name in ("negative_share", "intensity_augment"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{self.flag(name)} is a probability in 0..1, got {getattr(self, name)}")
