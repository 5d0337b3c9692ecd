"""What every importer shares: the :class:`Importer` record and its registry, provenance for ``dataset.json``,
case names, header-only grid checks and the one "not recognised" error.

No torch here. Images are read only where an importer must change them; files already in ``.nii.gz`` on one
grid are copied byte for byte (:meth:`lesionseg.data.DatasetWriter.add_files`).
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ...errors import InputError
from ...progress import ProgressCallback
from ..dataset import is_dataset
from ..writer import DatasetWriter

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
Option = tuple[type, Any, str]
"""``(type, default, help)`` of one extra option. ``type`` is ``int``, ``float``, ``str``, ``bool`` (a flag,
default False) or ``list`` (several strings: ``nargs="+"`` on the command line; default None = all)."""
OPTION_TYPES = (int, float, str, bool, list)
GRID_TOL = 1e-4
"""Tolerance (mm, and for direction cosines) of header grid comparisons; the same as :meth:`Image.same_grid`."""


@dataclass(frozen=True)
class Importer:
    """One registered importer: ``lesionseg data import NAME SRC -o OUT [--option ...]``.

    Attributes:
        name: the KIND of the command line (e.g. ``"ibsi-sts"``).
        help: one line for ``--help``.
        options: extra options ``{name: (type, default, help)}`` (see :data:`Option`); names use ``_``, the
            command line shows them with ``-``.
        function: ``function(source: Path, output: Path, overwrite: bool, progress, **options) -> Path`` (the
            folder written); ``progress`` is None or a ``(done, total)`` callback (:mod:`lesionseg.progress`).
    """

    name: str
    help: str
    function: Callable[..., Path] = field(repr=False)
    options: Mapping[str, Option] = field(default_factory=dict)


IMPORTERS: dict[str, Importer] = {}
"""Registered importers by kind, in registration order."""


def register(name: str, help: str, options: Optional[Mapping[str, Option]] = None) -> Callable:
    """Decorator that records ``function`` in :data:`IMPORTERS` under ``name``."""
    options = dict(options or {})
    for key, (kind, _default, _text) in options.items():
        if kind not in OPTION_TYPES:
            raise TypeError(f"importer {name}: option {key} has unsupported type {kind!r}")

    def wrap(function: Callable[..., Path]) -> Callable[..., Path]:
        if name in IMPORTERS:
            raise ValueError(f"importer {name!r} registered twice")
        IMPORTERS[name] = Importer(name, help, function, options)
        return function

    return wrap


def not_recognised(kind: str, source: Path, expected: str, hint: str = "") -> InputError:
    """The one error of an importer that does not recognise ``source``: what it expected, and (when the
    folder is already an nnU-Net dataset) the importer that would take it."""
    if not hint and kind != "nnunet" and _is_nnunet(source):
        hint = "; it is an nnU-Net v2 raw dataset (dataset.json with channel_names): use 'lesionseg data import nnunet'"
    return InputError(f"{source} is not a {kind} source: expected {expected}{hint}")


def _is_nnunet(source: Path) -> bool:
    """``source`` holds a readable ``dataset.json`` with ``channel_names``."""
    if not is_dataset(source):
        return False
    try:
        meta = json.loads((Path(source) / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "channel_names" in meta


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name (macOS ``._`` and other dot entries skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitise(name: str) -> str:
    """A case name made of ``A-Z a-z 0-9 . _ -``: other runs of characters become one ``_``; no leading
    ``.``/``_``/``-`` and no trailing ``_``. InputError when nothing is left."""
    text = _UNSAFE.sub("_", name).strip("_").lstrip(".-_")
    text = re.sub(r"_+", "_", text)
    if not text:
        raise InputError(f"cannot make a case name from {name!r}")
    return text


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats suffixed ``_2``, ``_3``, ... (sanitising can make two names equal)."""
    taken: set[str] = set()
    out = []
    for name in names:
        new, count = name, 1
        while new in taken:
            count += 1
            new = f"{name}_{count}"
        if new != name:
            log.warning("case name %s is taken; writing %s", name, new)
        taken.add(new)
        out.append(new)
    return out


def pick(available: Sequence[str], names: Optional[Iterable[str]], limit: Optional[int], what: str,
         source: Path) -> list[str]:
    """The ``available`` names to import: those of ``names`` (all when None; one error naming the unknown
    ones), then the first ``limit`` (all when None or 0)."""
    chosen = list(available)
    if names:
        wanted = list(dict.fromkeys(str(n) for n in names))
        missing = [n for n in wanted if n not in set(available)]
        if missing:
            shown = ", ".join(available[:8]) + (" ..." if len(available) > 8 else "")
            raise InputError(f"{source} has no {what} {', '.join(missing)} (it has {shown})")
        chosen = [n for n in available if n in set(wanted)]
    if limit is not None:
        if isinstance(limit, bool) or int(limit) < 0:
            raise InputError(f"--limit must be a whole number >= 0, got {limit!r}")
        if int(limit) > 0:
            chosen = chosen[: int(limit)]
    return chosen


@dataclass(frozen=True)
class Header:
    """Grid of an image file read from its header only: size ``(i, j, k[, t])``, spacing (mm), origin (LPS
    mm) and direction (row-major, ``dim x dim``), as SimpleITK reports them."""

    path: Path
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.size)

    def same_grid(self, other: "Header", tol: float = GRID_TOL) -> bool:
        """Same size, spacing, origin and direction (within ``tol``), like :meth:`Image.same_grid`."""
        return (self.size == other.size and np.allclose(self.spacing, other.spacing, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol)
                and np.allclose(self.direction, other.direction, atol=tol))

    def describe(self) -> str:
        return (f"{'x'.join(map(str, self.size))} voxels of {'x'.join(f'{s:.4g}' for s in self.spacing)} mm "
                f"at {tuple(round(o, 3) for o in self.origin)}")


def read_header(path: Path) -> Header:
    """The :class:`Header` of ``path`` (``SimpleITK.ImageFileReader.ReadImageInformation``: no voxels read)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"cannot read the header of {path}: not a readable NIfTI/NRRD/MHA image") from None
    return Header(Path(path), tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                  tuple(reader.GetDirection()))


def require_same_grid(case: str, reference: Header, *others: Header) -> None:
    """InputError naming ``case`` and the file whose grid differs from ``reference``."""
    for other in others:
        if not other.same_grid(reference):
            raise InputError(f"case {case}: {other.path.name} ({other.describe()}) is not on the grid of "
                             f"{reference.path.name} ({reference.describe()})")


def positive(mask):
    """The :class:`~lesionseg.image.Image` ``mask > 0`` as uint8 0/1 on the same grid (a lesion label)."""
    return mask.with_array((np.asarray(mask.array) > 0).astype(np.uint8))


def provenance(source: Path, name: str, description: str, reference: str, licence: str, **extra: Any) -> dict:
    """``dataset.json`` provenance: ``name``, ``description``, ``reference`` (citations), ``licence``,
    ``source`` (the absolute source path), ``synthetic: false`` and ``extra`` fields."""
    return {"name": name, "description": description, "reference": reference, "licence": licence,
            "source": str(Path(source).resolve()), "synthetic": False, **extra}


class ImportWriter(DatasetWriter):
    """A :class:`DatasetWriter` that reports every case written to ``progress(done, total)``."""

    def __init__(self, *args: Any, progress: Optional[ProgressCallback] = None, total: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress, self.total = progress, total

    def _tick(self) -> None:
        if self.progress is not None:
            done = sum(self.counts.values())
            self.progress(done, max(self.total, done))

    def add(self, *args: Any, **kwargs: Any) -> None:
        super().add(*args, **kwargs)
        self._tick()

    def add_files(self, *args: Any, **kwargs: Any) -> None:
        super().add_files(*args, **kwargs)
        self._tick()


def writer(kind: str, source: Path, output: PathLike, channels: Sequence[str], labels: Mapping[str, int],
           meta: dict, overwrite: bool, progress: Optional[ProgressCallback] = None, total: int = 0,
           test_only: bool = False) -> ImportWriter:
    """An :class:`ImportWriter` for ``output`` that refuses to write into ``source``, records the import command
    in the folder's output marker and reports each of the ``total`` cases to ``progress``."""
    return ImportWriter(output, channels, labels, meta, overwrite=overwrite, inputs=[source],
                        command=f"lesionseg data import {kind} {source}", test_only=test_only,
                        progress=progress, total=total)
