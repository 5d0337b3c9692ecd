"""The LIDC-IDRI lung-nodule VOIs (``lidc-vois``): ``image/<voi>.nii.gz`` + ``nodule_mask/<voi>.nii.gz``.

CT crops (HU, int16) around single nodules with a max-vote mask of up to four radiologists' outlines, as in
``../shared/data/lidc-nodule-vois`` (``nodules.csv`` beside them holds diameters and malignancy ratings; it is
not needed). Files are copied byte for byte.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

from ...errors import InputError
from ...progress import ProgressCallback
from ._common import not_recognised, pick, provenance, read_header, register, require_same_grid, writer

ENDING = ".nii.gz"
MASK_FOLDERS = ("nodule_mask", "mask")
LIDC_EXPECTED = "SRC/image/<voi>.nii.gz with SRC/nodule_mask/<voi>.nii.gz (the LIDC nodule VOI layout)"
LIDC_REFERENCE = ("Armato SG III, McLennan G, Bidaut L, et al. The Lung Image Database Consortium (LIDC) and Image "
                  "Database Resource Initiative (IDRI): a completed reference database of lung nodules on CT scans. "
                  "Med Phys 2011;38(2):915-931, doi:10.1118/1.3528204; TCIA LIDC-IDRI, "
                  "doi:10.7937/K9/TCIA.2015.LO9QL9SX; Clark K et al. J Digit Imaging 2013;26(6):1045-1057")


def patient_of(voi: str) -> str:
    """The LIDC patient of a VOI name: ``LIDC-IDRI-0011_R_10`` -> ``LIDC-IDRI-0011``; else the part before the
    first ``_R_`` (the rule TS-FCN's own data reader used before the dataset convention)."""
    match = re.match(r"(LIDC-IDRI-\d+)", voi)
    return match.group(1) if match else voi.split("_R_")[0]


@register("lidc-vois", "LIDC-IDRI nodule VOIs (image/<voi>.nii.gz + nodule_mask/<voi>.nii.gz) -> CT dataset",
          {"names": (list, None, "import only these VOIs (e.g. LIDC-IDRI-0011_R_10)"),
           "limit": (int, 0, "import only the first N VOIs (sorted by name); 0: all")})
def import_lidc_vois(source: Path, output: Path, overwrite: bool = False,
                     progress: Optional[ProgressCallback] = None, names: Optional[Sequence[str]] = None,
                     limit: int = 0) -> Path:
    """Import the VOIs: channel ``("CT",)``, labels ``{"background": 0, "nodule": 1}``, case = the VOI file
    stem exactly (e.g. ``LIDC-IDRI-0011_R_10``: model cards record held-out cases by these names), patient =
    ``LIDC-IDRI-XXXX`` (:func:`patient_of`). Image and mask are copied byte for byte after a header-only check
    that they share one grid; a VOI without a mask is an error naming it."""
    images_dir = source / "image"
    masks_dir = next((source / m for m in MASK_FOLDERS if (source / m).is_dir()), None)
    vois = sorted(p.name[: -len(ENDING)] for p in images_dir.glob(f"*{ENDING}")
                  if not p.name.startswith(".")) if images_dir.is_dir() else []
    if not vois or masks_dir is None:
        raise not_recognised("lidc-vois", source, LIDC_EXPECTED)
    chosen = pick(vois, names, limit, "VOI", source)
    unmasked = [v for v in chosen if not (masks_dir / f"{v}{ENDING}").is_file()]
    if unmasked:
        raise InputError(f"{masks_dir} has no mask for {', '.join(unmasked[:5])}"
                         f"{f' and {len(unmasked) - 5} more' if len(unmasked) > 5 else ''}")
    meta = provenance(source, "LIDC-IDRI nodule VOIs",
                      "CT volumes of interest (HU) around single LIDC-IDRI lung nodules with a binary nodule mask "
                      "(max vote of the radiologists' outlines).", LIDC_REFERENCE,
                      "CC BY 3.0 (TCIA LIDC-IDRI)", importer="lidc-vois")
    with writer("lidc-vois", source, output, ("CT",), {"background": 0, "nodule": 1}, meta, overwrite,
                progress, len(chosen)) as ds:
        for voi in chosen:
            image, mask = images_dir / f"{voi}{ENDING}", masks_dir / f"{voi}{ENDING}"
            require_same_grid(voi, read_header(image), read_header(mask))
            ds.add_files(voi, [image], mask, patient=patient_of(voi))
    return Path(output)
