"""small-lesion-il data: a folder of CT + lesion-label cases, the synthetic cohort, and lesions inserted
into a real CT.

Folder layout (what ``lesionseg train small-lesion-il --data DIR``, the evaluation and ``lesionseg prior
--data DIR`` read; real data can use it too)::

    DIR/<case>_ct.nii.gz       CT (HU)
    DIR/<case>_label.nii.gz    uint8 0 background, 1 lesion, on the CT grid
    DIR/cohort.json            provenance {"synthetic": true, "generator": ..., "seed": .., "cases": [...]}

``python -m lesionseg.methods.smalllesion.data -o DIR --cases 24 --seed 0 [--totalseg DIR --inserted N]``
writes ``--cases`` phantoms of :mod:`lesionseg.phantoms.smallbowel` and, with ``--totalseg``, ``N`` copies of
the real CT ``example_ct_sm.nii.gz`` with lesions inserted next to its small bowel (label 18 of
``example_seg.nii.gz``; :func:`insert_lesions`). All data written here is synthetic or has synthetic lesions.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ... import progress
from ...errors import InputError
from ...geometry import index_to_world
from ...image import Image
from ...io import output_folder, read_image, write_image

log = logging.getLogger(__name__)

TOTALSEG_CT = "example_ct_sm.nii.gz"
TOTALSEG_SEG = "example_seg.nii.gz"
SMALL_BOWEL_LABEL = 18
NEAR_BOWEL_MM = 5.0
"""Inserted lesions are centred within this distance (mm) of the small-bowel mask surface."""
SUPERSAMPLE = 4
"""Sub-voxels per axis when an inserted lesion is rendered into the CT's voxels (partial volume)."""
LESION_KEYS = ("id", "centre_lps", "diameter_mm", "volume_mm3", "mean_hu", "hu", "shape")


@dataclass(frozen=True)
class Case:
    """One case of a data folder: its name, CT file and lesion-label file."""

    name: str
    ct: Path
    label: Path


def list_cases(folder: Path) -> list[Case]:
    """The cases of a data folder (``<case>_ct.nii.gz`` + ``<case>_label.nii.gz``), sorted by name.

    Raises:
        InputError: no such folder, no case, or a CT without its label.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no such data folder: {folder}")
    cases = []
    for ct in sorted(folder.glob("*_ct.nii.gz")):
        name = ct.name[: -len("_ct.nii.gz")]
        label = folder / f"{name}_label.nii.gz"
        if not label.is_file():
            raise InputError(f"{ct} has no label {label.name}")
        cases.append(Case(name, ct, label))
    if not cases:
        raise InputError(f"{folder} holds no small-lesion cases (<case>_ct.nii.gz with <case>_label.nii.gz); "
                         f"write the synthetic cohort with 'python -m lesionseg.methods.smalllesion.data -o {folder}'")
    return cases


def folds(cases: Sequence[Case], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` disjoint, sorted lists of case names covering all cases (sizes differ by at most one); the
    same cases, ``k`` and ``seed`` give the same folds. InputError unless ``2 <= k <= len(cases)``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(cases):
        raise InputError(f"cross-validation needs 2 <= k <= {len(cases)} folds, got {k!r}")
    names = sorted(c.name for c in cases)
    out: list[list[str]] = [[] for _ in range(k)]
    for slot, idx in enumerate(np.random.default_rng(seed).permutation(len(names))):
        out[slot % k].append(names[idx])
    return [sorted(f) for f in out]


def _check_count(n: int, name: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _case_seed(seed: int, index: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def _phantom_cases(work: Path, n_cases: int, seed: int) -> list[dict]:
    """Write ``n_cases`` small-bowel phantoms into ``work``; returns their cohort records."""
    from ...phantoms.smallbowel import smallbowel_ct

    records = []
    width = max(3, len(str(n_cases - 1)))
    with progress.task("synthetic small-bowel cohort", total=n_cases) as tick:
        for i in range(n_cases):
            name, case_seed = f"sb_{i:0{width}d}", _case_seed(seed, i, 0)
            ct, label, info = smallbowel_ct(seed=case_seed)
            write_image(ct, work / f"{name}_ct.nii.gz")
            write_image(label, work / f"{name}_label.nii.gz")
            records.append({"name": name, "source": "phantom", "seed": case_seed,
                            "lesions": [{k: les[k] for k in LESION_KEYS} for les in info["lesions"]]})
            tick(i + 1, n_cases)
    return records


def _cohort_json(work: Path, generator: str, seed: int, records: list[dict], note: str) -> None:
    (work / "cohort.json").write_text(json.dumps(
        {"synthetic": True, "generator": generator, "seed": seed, "note": note, "cases": records}, indent=1) + "\n")


def write_cohort(folder: Path, n_cases: int, seed: int = 0, overwrite: bool = False) -> list[dict]:
    """Write ``n_cases`` seeded synthetic phantoms (``sb_000_ct.nii.gz``, ``sb_000_label.nii.gz``, ...) and
    ``cohort.json`` into ``folder``, assembled in a temporary sibling and renamed at the end
    (:func:`lesionseg.io.output_folder`: OutputExistsError for a non-empty folder without ``overwrite``)."""
    n_cases = _check_count(n_cases, "n_cases")
    with output_folder(folder, overwrite) as work:
        records = _phantom_cases(work, n_cases, seed)
        _cohort_json(work, "lesionseg.phantoms.smallbowel.smallbowel_ct", seed, records,
                     "synthetic phantoms; no real data")
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


def _inserted_cases(work: Path, totalseg_dir: Path, n_cases: int, seed: int) -> list[dict]:
    """Write ``n_cases`` copies of the real CT with 1-4 inserted lesions each into ``work``."""
    ct, bowel = _read_totalseg(totalseg_dir)
    records = []
    width = max(3, len(str(n_cases - 1)))
    with progress.task("lesions inserted into a real CT", total=n_cases) as tick:
        for i in range(n_cases):
            name, case_seed = f"ins_{i:0{width}d}", _case_seed(seed, i, 1)
            rng = np.random.default_rng(case_seed)
            image, label, lesions = insert_lesions(ct, bowel, rng, int(rng.integers(1, 5)))
            write_image(image, work / f"{name}_ct.nii.gz")
            write_image(label, work / f"{name}_label.nii.gz")
            records.append({"name": name, "source": f"real CT {TOTALSEG_CT} with synthetic lesions",
                            "seed": case_seed, "lesions": [{k: les[k] for k in LESION_KEYS} for les in lesions]})
            tick(i + 1, n_cases)
    return records


def write_inserted(folder: Path, totalseg_dir: Path, n_cases: int, seed: int = 0,
                   overwrite: bool = False) -> list[dict]:
    """Write ``n_cases`` copies of ``totalseg_dir/example_ct_sm.nii.gz`` with 1-4 synthetic lesions each
    near its small bowel (:func:`insert_lesions`; ``ins_000_ct.nii.gz``, ...) and ``cohort.json`` into
    ``folder`` (atomic, as :func:`write_cohort`). InputError when the TotalSegmentator files are missing."""
    n_cases = _check_count(n_cases, "n_cases")
    _read_totalseg(totalseg_dir)  # fail before creating anything
    with output_folder(folder, overwrite) as work:
        records = _inserted_cases(work, totalseg_dir, n_cases, seed)
        _cohort_json(work, "lesionseg.methods.smalllesion.data.insert_lesions", seed, records,
                     "synthetic lesions in a real CT (TotalSegmentator example, Apache-2.0); every case is "
                     "the same scan")
    return records


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic small-lesion cohort: small-bowel phantoms "
                                                 "and/or lesions inserted into the TotalSegmentator example CT.")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=24, help="number of phantoms (0: only inserted cases)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--totalseg", type=Path, help="folder with example_ct_sm.nii.gz and example_seg.nii.gz")
    parser.add_argument("--inserted", type=int, default=0, help="number of real-CT cases with inserted lesions")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _check_count(args.cases, "--cases", 0)
    _check_count(args.inserted, "--inserted", 0)
    if args.cases + args.inserted == 0:
        raise InputError("nothing to write: give --cases and/or --totalseg with --inserted")
    if args.inserted and args.totalseg is None:
        raise InputError("--inserted needs --totalseg DIR")
    if args.inserted:
        _read_totalseg(args.totalseg)
    with output_folder(args.output, args.overwrite) as work:
        records = _phantom_cases(work, args.cases, args.seed) if args.cases else []
        if args.inserted:
            records += _inserted_cases(work, args.totalseg, args.inserted, args.seed)
        _cohort_json(work, "lesionseg.methods.smalllesion.data", args.seed, records,
                     "synthetic phantoms and/or synthetic lesions in a real CT; see each case's source")
    log.info("wrote %d cases to %s", len(records), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
