"""The synthetic-dataset generators of the methods, behind ``lesionseg data synthetic METHOD -o OUT``.

A method names its :class:`Generator` in its spec (``synthetic="module:attribute"``). The generator writes a
dataset in the convention of :mod:`.dataset` with ``"synthetic": true`` in ``dataset.json`` (deterministic:
the same settings give the same files). No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..options import Settings


@dataclass(frozen=True)
class Generator:
    """``settings``: the dataclass of its flags (``--cases``, ``--seed``, ...); ``write(output, settings,
    overwrite) -> Path`` writes the dataset; ``help``: one line for ``lesionseg data synthetic --help``."""

    settings: type[Settings]
    write: Callable[[Path, Settings, bool], Path]
    help: str
