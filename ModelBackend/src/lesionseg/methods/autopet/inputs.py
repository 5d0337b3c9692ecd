"""Inputs of ``autopet-l2snet``: the spec's reader (``lesionseg predict autopet-l2snet PET [CT]``) and which CT,
if any, the segmenter uses (PET-only mode when none).

No torch import: this is the reading and checking side of :mod:`.segmenter`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ...errors import InputError
from ...image import Image

if TYPE_CHECKING:
    from .segmenter import L2SOptions

log = logging.getLogger(__name__)


def read_inputs(paths: Sequence[Path], options: L2SOptions, series: Sequence[str] = ()) -> tuple[Image, ...]:
    """``(PET in SUV, CT)``, or ``(PET in SUV,)`` for PET-only mode, from the paths of
    ``lesionseg predict autopet-l2snet PET [CT]`` (the spec's reader).

    The PET goes through :func:`lesionseg.pet.read_pet` with ``options``' units, weight and dose (a DICOM folder
    gives SUV from its tags); the CT through :func:`lesionseg.io.read_image` (file or DICOM folder). ``series``
    (``--series``, repeatable) picks series from DICOM folders; when ``options.pet_series`` is not given, the one
    ``series`` UID that the PET folder holds is the PET's.

    Raises:
        InputError: not one or two paths, PET units not stated for a file, missing values, PET not in SUV
            (e.g. Bq/mL given as ``--pet-units suv``), a constant or 2D PET.
    """
    from ...io import list_dicom_series, read_image
    from ...pet import read_pet

    if not 1 <= len(paths) <= 2:
        raise InputError(f"autopet-l2snet takes one or two images, PET then (optionally) CT; got {len(paths)}")
    series = list(series or [])
    pet_series = options.pet_series
    if series and pet_series is None and Path(paths[0]).is_dir():
        held = [uid for uid in series if uid in list_dicom_series(paths[0])]
        pet_series = held[0] if len(held) == 1 else None
    pet = read_pet(Path(paths[0]), units=options.pet_units, weight_kg=options.weight_kg, dose_bq=options.dose_bq,
                   decay_s=options.decay_s, half_life_s=options.half_life_s,
                   decayed_dose_bq=options.decayed_dose_bq, series_uid=pet_series)
    if len(paths) == 1:
        return (pet,)
    return pet, read_image(paths[1], series or None)


def usable_ct(pet: Image, ct: Optional[Image], allow_pet_only: bool = False,
              flag: str = "--allow-pet-only") -> Optional[Image]:
    """The CT to use after the input checks, or None for PET-only mode.

    Without a CT the PET alone is checked (:func:`lesionseg.pet.check_pet`: constant, 2D, not SUV). With one, the
    pair is checked (:func:`lesionseg.pet.check_pet_ct`); a CT that does not overlap the PET is an
    :class:`InputError` naming ``flag``, unless ``allow_pet_only``: then it is dropped with a logged warning and
    None is returned.

    Args:
        pet: the PET in SUV.
        ct: the CT in HU, or None.
        allow_pet_only: drop a CT that does not overlap the PET (``--allow-pet-only``).
        flag: how the option is spelt in messages.
    """
    from ...pet import check_pet, check_pet_ct
    from ...resample import check_overlap

    if ct is not None and allow_pet_only:
        try:
            check_overlap(pet, ct, ("PET", "CT"))
        except InputError as exc:
            log.warning("autopet-l2snet: %s %s: the CT is dropped and the PET is segmented alone (PET-only mode)",
                        exc, flag)
            ct = None
    if ct is None:
        check_pet(pet)
        return None
    check_pet_ct(pet, ct, overlap_hint=f"Give the CT of this PET, or {flag} to drop the CT and segment the PET "
                                       "alone (PET-only mode).")
    return ct
