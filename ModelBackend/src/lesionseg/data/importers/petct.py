"""PET/CT importers: the autoPET release (``autopet``) and the IBSI soft-tissue-sarcoma crops (``ibsi-sts``).

Both write channels ``("PET", "CT")`` on the PET grid, PET first in SUV, the CT in HU resampled onto the PET
grid exactly as the ``autopet-l2snet`` method pairs them at prediction time (:func:`lesionseg.pet.pair_pet_ct`:
linear interpolation in LPS space, -1000 HU outside, the CT's dtype kept), so a model sees the same input in
training as in use. Labels ``{"background": 0, "lesion": 1}``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from ...errors import InputError
from ...progress import ProgressCallback
from ._common import (not_recognised, pick, positive, provenance, read_header, register,
                      require_same_grid,
                      sanitise, subdirs, unique_names, writer)

log = logging.getLogger(__name__)
LESION_LABELS = {"background": 0, "lesion": 1}

AUTOPET_FILES = ("SUV.nii.gz", "CTres.nii.gz", "SEG.nii.gz")
AUTOPET_EXPECTED = ("the FDG-PET-CT-Lesions NIfTI release: SRC/<patient>/<study>/SUV.nii.gz, CTres.nii.gz "
                    "(CT on the PET grid) and SEG.nii.gz (lesion mask on the PET grid)")
AUTOPET_REFERENCE = ("Gatidis S, Hepp T, Frueh M, et al. A whole-body FDG-PET/CT dataset with manually annotated "
                     "tumor lesions. Sci Data 2022;9:601, doi:10.1038/s41597-022-01718-3; TCIA FDG-PET-CT-Lesions, "
                     "doi:10.7937/gkr0-xv29; Clark K et al. J Digit Imaging 2013;26(6):1045-1057")


def autopet_studies(source: Path) -> list[tuple[str, str, Path]]:
    """``(patient, study, folder)`` of every study under ``source``, sorted; InputError for a study folder
    missing one of :data:`AUTOPET_FILES` and for a folder holding no study."""
    studies = []
    if source.is_dir():
        for patient in subdirs(source):
            for study in subdirs(patient):
                present = [f for f in AUTOPET_FILES if (study / f).is_file()]
                if not present:
                    continue
                if len(present) < len(AUTOPET_FILES):
                    missing = [f for f in AUTOPET_FILES if f not in present]
                    raise InputError(f"study {study} lacks {', '.join(missing)} (expected {AUTOPET_EXPECTED})")
                studies.append((patient.name, study.name, study))
    if not studies:
        raise not_recognised("autopet", source, AUTOPET_EXPECTED)
    return studies


@register("autopet", "autoPET FDG-PET-CT-Lesions NIfTI release (SUV + CTres + SEG per study) -> PET/CT dataset",
          {"limit": (int, 0, "import only the first N studies (sorted by patient, then study); 0: all")})
def import_autopet(source: Path, output: Path, overwrite: bool = False,
                   progress: Optional[ProgressCallback] = None, limit: int = 0) -> Path:
    """Import ``SRC/<patient>/<study>/{SUV,CTres,SEG}.nii.gz``.

    Writes channels ``("PET", "CT")`` (SUV, then CTres in HU), label SEG (0/1), case ``<patient>_<study>``
    sanitised (:func:`~._common.sanitise`, repeats suffixed ``_2``), patient ``<patient>``. Files are copied
    byte for byte when the three headers share one grid (checked on headers only); otherwise the CT is
    resampled onto the SUV grid (:func:`lesionseg.pet.pair_pet_ct`) and all three are written from the
    images, the label as ``SEG > 0``. A SEG off the SUV grid is an error. ``PET.nii.gz`` (Bq/mL) and
    ``CT.nii.gz`` are not used.
    """
    studies = autopet_studies(source)
    keys = pick([f"{p}/{s}" for p, s, _ in studies], None, limit, "study", source)
    studies = [st for st in studies if f"{st[0]}/{st[1]}" in set(keys)]
    names = unique_names([sanitise(f"{patient}_{study}") for patient, study, _ in studies])
    meta = provenance(source, "autoPET FDG-PET-CT-Lesions",
                      "Whole-body FDG-PET/CT studies (lymphoma, melanoma, lung cancer and negative controls) with "
                      "manually segmented FDG-avid lesions on the PET grid; PET in SUV (SUV.nii.gz), CT resampled "
                      "onto the PET grid (CTres.nii.gz).", AUTOPET_REFERENCE,
                      "TCIA data usage policy of the FDG-PET-CT-Lesions collection (see its TCIA page)",
                      importer="autopet")
    with writer("autopet", source, output, ("PET", "CT"), LESION_LABELS, meta, overwrite, progress,
                len(studies)) as ds:
        for name, (patient, _study, folder) in zip(names, studies):
            suv, ct, seg = (read_header(folder / f) for f in AUTOPET_FILES)
            require_same_grid(name, suv, seg)
            if ct.same_grid(suv):
                ds.add_files(name, [suv.path, ct.path], seg.path, patient=patient)
                continue
            log.info("%s: CTres is not on the SUV grid; resampling it (linear, -1000 HU outside)", name)
            _add_paired(ds, name, suv.path, ct.path, seg.path, patient)
    return Path(output)


def _add_paired(ds, name: str, pet_path: Path, ct_path: Path, mask_path: Path, patient: Optional[str]) -> None:
    """Write one case from files: the PET as read, the CT paired onto its grid, the label ``mask > 0`` (the
    mask must be on the PET grid)."""
    from ...io import read_image
    from ...pet import pair_pet_ct

    pet = read_image(pet_path)
    ct = pair_pet_ct(pet, read_image(ct_path))
    mask = read_image(mask_path)
    if not mask.same_grid(pet):
        raise InputError(f"case {name}: {mask_path.name} is not on the grid of {pet_path.name}")
    ds.add(name, [pet, ct], positive(mask), patient=patient)


IBSI_EXPECTED = ("the IBSI soft-tissue-sarcoma layout: SRC/STS_XXX/PET_image.nii.gz (SUV), CT_image.nii.gz (HU), "
                 "PET_mask.nii.gz (on the PET grid) and CT_mask.nii.gz (on the CT grid)")
IBSI_REFERENCE = ("Vallieres M, Freeman CR, Skamene SR, El Naqa I. A radiomics model from joint FDG-PET and MRI "
                  "texture features for the prediction of lung metastases in soft-tissue sarcomas of the "
                  "extremities. Phys Med Biol 2015;60(14):5471-5496, doi:10.1088/0031-9155/60/14/5471; "
                  "TCIA Soft-tissue-Sarcoma, doi:10.7937/K9/TCIA.2015.7GO2GSKS; Zwanenburg A et al. The Image "
                  "Biomarker Standardization Initiative. Radiology 2020;295(2):328-338, "
                  "doi:10.1148/radiol.2020191145; Clark K et al. J Digit Imaging 2013;26(6):1045-1057")
IBSI_FILES = {"pet": ("PET_image.nii.gz", "CT_image.nii.gz", "PET_mask.nii.gz"),
              "ct": ("CT_image.nii.gz", "CT_mask.nii.gz")}


@register("ibsi-sts", "IBSI soft-tissue-sarcoma FDG-PET/CT crops (STS_XXX/PET_image, CT_image, masks) -> "
                      "PET/CT dataset on the PET grid, or a CT dataset with --grid ct",
          {"grid": (str, "pet", "pet: channels PET, CT on the PET grid with PET_mask; ct: channel CT on its own "
                                "grid with CT_mask"),
           "names": (list, None, "import only these cases (e.g. STS_001 STS_002)")})
def import_ibsi_sts(source: Path, output: Path, overwrite: bool = False,
                    progress: Optional[ProgressCallback] = None, grid: str = "pet",
                    names: Optional[Sequence[str]] = None) -> Path:
    """Import ``SRC/STS_XXX/{PET_image,CT_image,PET_mask,CT_mask}.nii.gz`` (case and patient = ``STS_XXX``).

    ``grid="pet"``: channels ``("PET", "CT")`` on the PET grid: the PET (SUV) as it is, the CT (HU) through
    :func:`lesionseg.pet.pair_pet_ct` (linear, -1000 HU outside, its dtype kept), label ``PET_mask > 0``.
    ``grid="ct"``: channel ``("CT",)`` on the CT grid with ``CT_mask > 0``, for box / RECIST methods on CT.
    Labels ``{"background": 0, "lesion": 1}``; every label is ``mask > 0`` as uint8.
    """
    grid = str(grid).lower()
    if grid not in IBSI_FILES:
        raise InputError(f"--grid must be pet or ct, not {grid!r}")
    found = [d.name for d in subdirs(source) if (d / "PET_image.nii.gz").is_file()] if source.is_dir() else []
    if not found:
        raise not_recognised("ibsi-sts", source, IBSI_EXPECTED)
    chosen = pick(found, names, None, "case", source)
    for name in chosen:
        missing = [f for f in IBSI_FILES[grid] if not (source / name / f).is_file()]
        if missing:
            raise InputError(f"case {name} lacks {', '.join(missing)} (expected {IBSI_EXPECTED})")
    on = ("PET/CT on the PET grid (CT resampled linearly, -1000 HU outside, as lesionseg.pet.pair_pet_ct does); "
          "label: the expert GTV mask on the PET grid" if grid == "pet" else
          "CT (HU) on its own grid; label: the expert GTV mask on the CT grid")
    meta = provenance(source, "IBSI soft-tissue sarcoma FDG-PET/CT",
                      "FDG-PET/CT crops (5 cm around the tumour) of extremity soft-tissue sarcomas, PET in SUV, "
                      f"as processed for the IBSI validation (MIRP); {on}.", IBSI_REFERENCE, "CC BY 3.0",
                      importer="ibsi-sts", grid=grid)
    channels = ("PET", "CT") if grid == "pet" else ("CT",)
    with writer("ibsi-sts", source, output, channels, LESION_LABELS, meta, overwrite, progress,
                len(chosen)) as ds:
        for name in chosen:
            folder = source / name
            if grid == "pet":
                _add_paired(ds, name, folder / "PET_image.nii.gz", folder / "CT_image.nii.gz",
                            folder / "PET_mask.nii.gz", None)
                continue
            from ...io import read_image

            ct, mask = read_image(folder / "CT_image.nii.gz"), read_image(folder / "CT_mask.nii.gz")
            if not mask.same_grid(ct):
                raise InputError(f"case {name}: CT_mask.nii.gz is not on the grid of CT_image.nii.gz")
            ds.add(name, [ct], positive(mask))
    return Path(output)
