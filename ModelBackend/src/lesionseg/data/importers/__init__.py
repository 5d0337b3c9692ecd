"""Importers: public dataset layouts translated into the one convention of :mod:`lesionseg.data.dataset`.

``lesionseg data import KIND SRC -o DatasetNNN_Name [--options]`` calls :func:`import_dataset`. Each importer
is registered in :data:`IMPORTERS` with a one-line help and its extra options ``{name: (type, default, help)}``
(the command line builds its flags from them), writes through :class:`lesionseg.data.DatasetWriter` (atomic,
marked output; ``overwrite`` replaces only an earlier LesionSeg output), records provenance in
``dataset.json`` (``name``, ``description``, ``reference``, ``licence``, ``source``, ``synthetic: false``,
``importer``), keeps a patient's cases together (``patients``) and refuses a source it does not recognise
with one :class:`~lesionseg.errors.InputError` saying what it expected. One module per family:

- :mod:`.petct`: ``autopet`` (FDG-PET-CT-Lesions NIfTI release), ``ibsi-sts`` (IBSI soft-tissue-sarcoma crops);
- :mod:`.msd`: ``msd`` (Medical Segmentation Decathlon task folders);
- :mod:`.nnunet`: ``nnunet`` (a folder already in nnU-Net v2 raw layout: checked copy);
- :mod:`.lidc`: ``lidc-vois`` (LIDC-IDRI nodule VOIs);
- :mod:`.deeplesion`: ``deeplesion`` (the NIH release, RECIST axes only), ``deeplesion-3d`` (MedSAM2 3D masks).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from ...errors import InputError
from ...progress import ProgressCallback
from . import deeplesion, lidc, msd, nnunet, petct  # noqa: F401 (registers the importers)
from ._common import IMPORTERS, Importer, Option, PathLike, register

log = logging.getLogger(__name__)
__all__ = ["IMPORTERS", "Importer", "Option", "import_dataset", "register"]


def _coerce(kind: str, name: str, spec: Option, value: Any) -> Any:
    """``value`` of option ``name`` as the option's type; InputError naming the flag otherwise."""
    typ, default, _help = spec
    flag = "--" + name.replace("_", "-")
    if value is None:
        return default
    if typ is list:
        items = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
        items = [str(v).strip() for v in items if str(v).strip()]
        return items or None
    if typ is bool:
        if not isinstance(value, bool):
            raise InputError(f"{kind} {flag} is a flag (True or False), got {value!r}")
        return value
    if typ is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
        raise InputError(f"{kind} {flag} must be a whole number, got {value!r}")
    try:
        return typ(value)
    except (TypeError, ValueError):
        raise InputError(f"{kind} {flag} must be {'a whole number' if typ is int else 'a ' + typ.__name__}, "
                         f"got {value!r}") from None


def _options(importer: Importer, given: Mapping[str, Any]) -> dict[str, Any]:
    """The importer's options: ``given`` (names with ``_`` or ``-``) typed, the rest at their defaults."""
    values = {name: spec[1] for name, spec in importer.options.items()}
    for key, value in given.items():
        name = key.replace("-", "_")
        if name not in importer.options:
            known = ", ".join("--" + n.replace("_", "-") for n in importer.options) or "none"
            raise InputError(f"the {importer.name} importer has no option --{name.replace('_', '-')} "
                             f"(its options: {known})")
        values[name] = _coerce(importer.name, name, importer.options[name], value)
    return values


def import_dataset(kind: str, source: PathLike, output: PathLike, overwrite: bool = False,
                   progress: Optional[ProgressCallback] = None, **options: Any) -> Path:
    """Import the public dataset at ``source`` (a folder in the layout of ``kind``) into the dataset folder
    ``output`` and return ``output``.

    Args:
        kind: a key of :data:`IMPORTERS` (``autopet``, ``msd``, ``nnunet``, ``ibsi-sts``, ``lidc-vois``,
            ``deeplesion-3d``, ``deeplesion``).
        source: the folder to import from (never modified).
        output: the ``DatasetNNN_Name`` folder to write (atomically; see :class:`lesionseg.data.DatasetWriter`).
        overwrite: replace an earlier LesionSeg output at ``output``.
        progress: called as ``progress(cases written, cases to write)`` after each case (the CLI's bar).
        options: the importer's extra options (``IMPORTERS[kind].options``); None means the default.

    Raises :class:`InputError` for an unknown kind or option, a missing source, an output inside the source,
    and a source the importer does not recognise (one message saying what it expected);
    :class:`~lesionseg.errors.OutputExistsError` when ``output`` exists and ``overwrite`` is not given.
    """
    if kind not in IMPORTERS:
        raise InputError(f"unknown dataset kind {kind!r}; the importers: {', '.join(IMPORTERS)}")
    importer = IMPORTERS[kind]
    values = _options(importer, options)
    src = Path(source)
    if not src.exists():
        raise InputError(f"no such folder: {src}")
    if not src.is_dir():
        raise InputError(f"{src} is a file; the {kind} importer reads a folder")
    where = Path(output).resolve()
    if where == src.resolve() or src.resolve() in where.parents:
        raise InputError(f"the output folder {output} is inside the source {src}; importing never writes into "
                         "the source, choose a folder elsewhere")
    log.info("importing %s from %s into %s", kind, src, output)
    return importer.function(src, Path(output), overwrite, progress, **values)
