"""small-lesion-il data: the synthetic small-bowel cohort and lesions inserted into a real CT, written as a
dataset in the convention of :mod:`lesionseg.data` (channel ``CT``, labels background 0 / lesion 1).

``lesionseg data synthetic small-lesion-il -o DIR --cases 24 --seed 0 [--totalseg DIR --inserted N]`` writes
``--cases`` phantoms of :mod:`lesionseg.phantoms.smallbowel` (``sb_000``, ``sb_001``, ...; case seeds hashed
from ``(seed, 0, index)``) and, with ``--totalseg``, ``N`` copies of the real CT ``example_ct_sm.nii.gz`` with
synthetic lesions inserted next to its small bowel (label 18 of ``example_seg.nii.gz``; :func:`insert_lesions`;
``ins_000``, ...; seeds from ``(seed, 1, index)``). The inserted cases are one scan, so they share one patient
(``totalseg-example-ct``) and a fold never splits them. ``dataset.json`` says ``"synthetic": true`` and, per
case, where it came from and its lesions (``"cases"``). ``--shape``/``--spacing`` make smaller phantoms (tests).
All data written here is synthetic or has synthetic lesions.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from ... import progress
from ...data.synthetic import Generator
from ...data.writer import DatasetWriter
from ...errors import InputError
from ...geometry import index_to_world
from ...image import Image
from ...io import read_image
from ...options import Settings, option

log = logging.getLogger(__name__)

TOTALSEG_CT = "example_ct_sm.nii.gz"
TOTALSEG_SEG = "example_seg.nii.gz"
SMALL_BOWEL_LABEL = 18
NEAR_BOWEL_MM = 5.0
"""Inserted lesions are centred within this distance (mm) of the small-bowel mask surface."""
SUPERSAMPLE = 4
"""Sub-voxels per axis when an inserted lesion is rendered into the CT's voxels (partial volume)."""
LESION_KEYS = ("id", "centre_lps", "diameter_mm", "volume_mm3", "mean_hu", "hu", "shape")
PATIENT_INSERTED = "totalseg-example-ct"
"""The patient of every inserted case: they are copies of one scan."""


@dataclass(frozen=True)
class SmallLesionDataSettings(Settings):
    """Flags of ``lesionseg data synthetic small-lesion-il`` (see the module docstring)."""

    cases: int = option(24, "number of small-bowel phantoms (0: only inserted cases)")
    seed: int = option(0, "cohort seed (each case's seed is hashed from it and the case index)")
    totalseg: Optional[Path] = option(None, "folder with example_ct_sm.nii.gz and example_seg.nii.gz (the "
                                            "TotalSegmentator example CT) for --inserted", metavar="DIR")
    inserted: int = option(0, "number of copies of the real CT with synthetic lesions inserted (needs --totalseg)")
    shape: tuple[int, int, int] = option((80, 160, 160), "phantom size in voxels (K, J, I); smaller for tests",
                                         metavar=("K", "J", "I"), advanced=True)
    spacing: tuple[float, float, float] = option((0.8, 0.8, 1.5), "phantom voxel size along i, j, k", unit="mm",
                                                 metavar=("X", "Y", "Z"), advanced=True)

    def __post_init__(self) -> None:
        for name in ("cases", "inserted"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InputError(f"{self.flag(name)} must be an integer >= 0, got {value!r}")
        if self.cases + self.inserted == 0:
            raise InputError(f"nothing to write: give {self.flag('cases')} and/or {self.flag('totalseg')} with "
                             f"{self.flag('inserted')}")
        if self.inserted and self.totalseg is None:
            raise InputError(f"{self.flag('inserted')} needs {self.flag('totalseg')} DIR")
        if self.seed < 0:
            raise InputError(f"{self.flag('seed')} must be >= 0, got {self.seed}")


def _case_seed(seed: int, index: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def _lesions(info: list[dict]) -> list[dict]:
    return [{k: les[k] for k in LESION_KEYS} for les in info]


def _phantom_cases(writer: DatasetWriter, settings: SmallLesionDataSettings) -> dict[str, dict]:
    """Write the phantoms; returns ``{case: provenance}``."""
    from ...phantoms.smallbowel import smallbowel_ct

    n_cases, records = settings.cases, {}
    width = max(3, len(str(n_cases - 1)))
    with progress.task("synthetic small-bowel cohort", total=n_cases) as tick:
        for i in range(n_cases):
            name, case_seed = f"sb_{i:0{width}d}", _case_seed(settings.seed, i, 0)
            ct, label, info = smallbowel_ct(seed=case_seed, shape=settings.shape, spacing=settings.spacing)
            writer.add(name, [ct], label)
            records[name] = {"source": "phantom", "seed": case_seed, "lesions": _lesions(info["lesions"])}
            tick(i + 1, n_cases)
    return records


def _read_totalseg(totalseg_dir: Path) -> tuple[Image, np.ndarray]:
    """The real CT and its small-bowel mask (bool ``(K, J, I)`` on the CT grid) from ``totalseg_dir``."""
    folder = Path(totalseg_dir)
    ct_path, seg_path = folder / TOTALSEG_CT, folder / TOTALSEG_SEG
    if not ct_path.is_file() or not seg_path.is_file():
        raise InputError(f"{folder} does not hold {TOTALSEG_CT} and {TOTALSEG_SEG} (the TotalSegmentator "
                         "example CT, ../shared/data/totalseg-example-ct)")
    ct, seg = read_image(ct_path), read_image(seg_path)
    if not seg.same_grid(ct):
        raise InputError(f"{seg_path} is not on the grid of {ct_path}")
    bowel = seg.array == SMALL_BOWEL_LABEL
    if not bowel.any():
        raise InputError(f"{seg_path} holds no small bowel (label {SMALL_BOWEL_LABEL})")
    return ct, bowel


def _body_mask(ct: np.ndarray) -> np.ndarray:
    """Bool ``(K, J, I)`` body: the largest component of ``HU > -500`` with holes filled slice by slice."""
    parts, n = ndimage.label(ct > -500)
    if n == 0:
        return np.zeros(ct.shape, bool)
    body = parts == (np.argmax(np.bincount(parts.ravel())[1:]) + 1)
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def insert_lesions(ct: Image, bowel: np.ndarray, rng: np.random.Generator, n_lesions: int,
                   diameter_mm: tuple[float, float] = (2.0, 16.0)) -> tuple[Image, Image, list[dict]]:
    """Insert ``n_lesions`` enhancing lesions centred within :data:`NEAR_BOWEL_MM` of the surface of the
    bool ``(K, J, I)`` mask ``bowel``, inside the body, keeping the CT's grid.

    Each lesion (a lobulated blob or spheroid of the phantoms, diameter log-uniform in ``diameter_mm``, HU
    ~N(130, 15)) is drawn on a grid :data:`SUPERSAMPLE` times finer than the CT and averaged into its voxels,
    giving each voxel a lesion fraction ``f``; the voxel becomes ``hu + f * (lesion_hu - local mean)`` (the
    local mean is the CT blurred by one voxel, so the CT's own noise stays). The label holds the voxels with
    ``f >= 0.5`` and always the voxel holding the lesion centre. Lesions are at least 3 mm apart.

    Returns:
        the new CT (the input's integer type; int16 for a float CT), the uint8 label (same grid) and one
        record per lesion (as the phantom's ``info``).
    """
    from ...phantoms.shapes import LESION_SHAPES, Grid

    spacing = ct.spacing
    hu = ct.array.astype(np.float32)
    local_mean = ndimage.gaussian_filter(hu, 1.0)
    body = _body_mask(ct.array)
    signed = np.where(bowel, ndimage.distance_transform_edt(bowel, sampling=spacing[::-1]),
                      ndimage.distance_transform_edt(~bowel, sampling=spacing[::-1]))
    candidates = np.flatnonzero((signed <= NEAR_BOWEL_MM) & body)
    label = np.zeros(ct.shape, np.uint8)
    gap = np.ceil(3.0 / spacing[::-1]).astype(int)
    records: list[dict] = []
    for _ in range(200):
        if len(records) == n_lesions:
            break
        d = float(np.exp(rng.uniform(*np.log(diameter_mm))))
        value = float(np.clip(rng.normal(130.0, 15.0), 92.5, 167.5))
        kji = np.array(np.unravel_index(rng.choice(candidates), ct.shape))
        centre_ijk = kji[::-1] + rng.uniform(-0.49, 0.49, 3)  # stays in the candidate voxel
        reach = np.maximum(np.ceil(d / 2 / spacing + 1).astype(int), [4, 4, 1])  # >= 8 voxels in-plane
        lo, hi = np.rint(centre_ijk).astype(int) - reach, np.rint(centre_ijk).astype(int) + reach
        if np.any(lo < 0) or np.any(hi >= ct.size_ijk):
            continue
        size = hi - lo + 1
        fine_origin = index_to_world(ct, [lo - 0.5 + 0.5 / SUPERSAMPLE])[0]
        fine = Grid.create(tuple(size[::-1] * SUPERSAMPLE), spacing / SUPERSAMPLE, (0, 0, 0), fine_origin,
                           ct.direction)
        shape = ("lobulated", "spheroid")[int(rng.integers(0, 2))]
        region = LESION_SHAPES[shape](fine, (centre_ijk - lo - (size - 1) / 2) * spacing, d / 2, rng)
        frac = region.full(fine.shape).reshape(size[2], SUPERSAMPLE, size[1], SUPERSAMPLE, size[0],
                                               SUPERSAMPLE).mean(axis=(1, 3, 5))
        box = tuple(slice(lo[a], hi[a] + 1) for a in (2, 1, 0))
        centre_kji = tuple(np.rint(centre_ijk).astype(int)[::-1] - lo[::-1])
        mask = frac >= 0.5
        mask[centre_kji] = True
        parts, _ = ndimage.label(mask, ndimage.generate_binary_structure(3, 3))
        mask = parts == parts[centre_kji]  # one 26-connected lesion even where a lobe falls apart
        where = np.argwhere(mask) + lo[::-1]
        near = tuple(slice(max(a - g, 0), b + 1 + g) for a, b, g in zip(where.min(0), where.max(0), gap))
        if label[near].any() or not body[box][mask].all():
            continue
        hu[box] += frac * (value - local_mean[box])
        label[box][mask] = 1
        centre_lps = index_to_world(ct, [centre_ijk])[0]
        records.append({"id": len(records) + 1, "centre_lps": centre_lps.round(3).tolist(),
                        "diameter_mm": round(d, 2), "volume_mm3": round(float(mask.sum() * np.prod(spacing)), 3),
                        "hu": round(value, 1), "shape": shape, "_box": box, "_mask": mask})
    if len(records) < n_lesions:
        log.warning("inserted %d of %d lesions (no room for the rest)", len(records), n_lesions)
    dtype = ct.array.dtype if np.issubdtype(ct.array.dtype, np.integer) else np.dtype(np.int16)
    out = ct.with_array(np.clip(np.rint(hu), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype))
    for record in records:
        box, mask = record.pop("_box"), record.pop("_mask")
        record["mean_hu"] = round(float(out.array[box][mask].mean()), 1)
    return out, ct.with_array(label), records


def _inserted_cases(writer: DatasetWriter, settings: SmallLesionDataSettings) -> dict[str, dict]:
    """Write ``settings.inserted`` copies of the real CT with 1-4 inserted lesions each; returns provenance."""
    ct, bowel = _read_totalseg(settings.totalseg)
    n_cases, records = settings.inserted, {}
    width = max(3, len(str(n_cases - 1)))
    with progress.task("lesions inserted into a real CT", total=n_cases) as tick:
        for i in range(n_cases):
            name, case_seed = f"ins_{i:0{width}d}", _case_seed(settings.seed, i, 1)
            rng = np.random.default_rng(case_seed)
            image, label, lesions = insert_lesions(ct, bowel, rng, int(rng.integers(1, 5)))
            writer.add(name, [image], label, patient=PATIENT_INSERTED)
            records[name] = {"source": f"real CT {TOTALSEG_CT} with synthetic lesions", "seed": case_seed,
                             "lesions": _lesions(lesions)}
            tick(i + 1, n_cases)
    return records


def write_dataset(output: Path, settings: SmallLesionDataSettings, overwrite: bool = False) -> Path:
    """Write the cohort of ``settings`` as a dataset at ``output`` (atomically: an error leaves nothing;
    ``overwrite`` replaces only an earlier LesionSeg output). InputError before anything is written when the
    TotalSegmentator files are missing."""
    if settings.inserted:
        _read_totalseg(settings.totalseg)  # fail before creating anything
    parts = []
    if settings.cases:
        parts.append(f"{settings.cases} synthetic small-bowel CT phantoms (lesionseg.phantoms.smallbowel, seed "
                     f"{settings.seed}); no real data")
    if settings.inserted:
        parts.append(f"{settings.inserted} copies of one real CT (the TotalSegmentator example CT, Apache-2.0) with "
                     "synthetic lesions inserted next to its small bowel: real texture, synthetic lesions")
    meta = {"name": "small-lesion-il synthetic cohort", "description": "; ".join(parts), "synthetic": True,
            "generator": "lesionseg.methods.smalllesion.data", "seed": settings.seed,
            "reference": "arXiv 2207.14700 (small-lesion segmentation with intensity-distribution supervision)"}
    with DatasetWriter(output, ("CT",), {"background": 0, "lesion": 1}, meta=meta, overwrite=overwrite,
                       inputs=[settings.totalseg] if settings.totalseg is not None else []) as writer:
        records = _phantom_cases(writer, settings) if settings.cases else {}
        if settings.inserted:
            records.update(_inserted_cases(writer, settings))
        writer.meta["cases"] = records
    log.info("wrote %d cases to %s", len(records), output)
    return Path(output)


GENERATOR = Generator(settings=SmallLesionDataSettings, write=write_dataset,
                      help="small-bowel CT phantoms with small lesions, and/or synthetic lesions inserted into the "
                           "real TotalSegmentator example CT (small-lesion-il)")
"""The spec's synthetic-dataset generator (``synthetic="lesionseg.methods.smalllesion.data:GENERATOR"``)."""
