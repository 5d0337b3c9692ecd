"""S4C on real CT (issue #18): the TotalSegmentator example CT, normal and with tumours inserted into its
pancreas, and real CTs with no pancreas in view (chest, limbs).

    python scripts/s4c_real_ct.py [--model DIR] [--data ../shared/data] [--json OUT.json] [--markdown OUT.md]
        [--case TEXT ...]

What it measures, per model (default: the shipped ``s4c``):

* **pancreas Dice** on the normal example CT (``example_ct.nii.gz``, 112 slices at 3 mm) against the pancreas
  (label 7) of ``example_seg.nii.gz``. That label is a TotalSegmentator model's output, not an expert's, and it
  was made for ``example_ct_sm.nii.gz``, which is slices 82-111 of ``example_ct`` although both headers give
  the same origin; the offset is found by matching the slices
  (:func:`lesionseg.data.totalseg.place_label`).
* **verdicts** on the normal CT and on 6 copies with one spherical tumour inserted at the deepest point of the
  pancreas: radius 8, 10, 12 mm, mean HU = the pancreas mean + 70 HU (hyper-attenuating) or - 40 HU
  (hypo-attenuating), partial volume from 4x supersampling and the CT's own noise kept
  (:func:`insert_tumour`). The CT is read as the venous phase (``lesionseg screen --venous``).
* **verdicts** on real CTs without a pancreas in view: the Lung-PET-CT-Dx chest CT and the CT crops of the
  sarcoma cases STS_001-STS_005 (thigh and other limbs).

Nothing here trains; the example CT is never in any s4c training set of this project (docs/s4c.md).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from lesionseg.data.totalseg import PANCREAS, read_example
from lesionseg.image import Image
from lesionseg.io import read_image

RADII_MM = (8.0, 10.0, 12.0)
CONTRASTS_HU = (70.0, -40.0)
LIMBS = ("STS_001", "STS_002", "STS_003", "STS_004", "STS_005")


def insert_tumour(ct: Image, organ: np.ndarray, radius_mm: float, contrast_hu: float) -> tuple[Image, np.ndarray]:
    """``ct`` with a sphere of ``radius_mm`` centred at the voxel of ``organ`` (bool ``(K, J, I)``) farthest from
    its surface, its mean HU the organ's mean plus ``contrast_hu``; returns the new CT and the tumour mask
    (voxels at least half inside). Each voxel becomes ``hu + f * (target - local mean)``, ``f`` its fraction
    inside the sphere (4x4x4 sub-samples) and the local mean the CT smoothed by one voxel, so noise stays."""
    spacing = np.asarray(ct.spacing, float)[::-1]  # (k, j, i) mm
    depth = ndimage.distance_transform_edt(organ, sampling=spacing)
    centre = np.array(np.unravel_index(np.argmax(depth), organ.shape), float)
    hu = ct.array.astype(np.float32)
    target = float(hu[organ].mean()) + contrast_hu
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    reach = np.ceil(radius_mm / spacing).astype(int) + 1
    lo = np.maximum(centre.astype(int) - reach, 0)
    hi = np.minimum(centre.astype(int) + reach + 1, organ.shape)
    zz = (np.arange(lo[0], hi[0])[:, None] + sub[None, :] - centre[0]) * spacing[0]
    yy = (np.arange(lo[1], hi[1])[:, None] + sub[None, :] - centre[1]) * spacing[1]
    xx = (np.arange(lo[2], hi[2])[:, None] + sub[None, :] - centre[2]) * spacing[2]
    inside = (zz[:, None, None, :, None, None] ** 2 + yy[None, :, None, None, :, None] ** 2
              + xx[None, None, :, None, None, :] ** 2) <= radius_mm ** 2
    frac = inside.mean(axis=(3, 4, 5)).astype(np.float32)
    box = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
    local = ndimage.uniform_filter(hu, 3)[box]
    hu[box] += frac * (target - local)
    mask = np.zeros(organ.shape, bool)
    mask[box] = frac >= 0.5
    return ct.with_array(np.rint(hu).astype(ct.array.dtype)), mask


def dice(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    total = int(a.sum() + b.sum())
    return None if total == 0 else round(2.0 * float((a & b).sum()) / total, 3)


def screen(seg, ct: Image) -> tuple[dict, np.ndarray]:
    """One venous phase through the segmenter: its findings as a dict and the label array on ``ct``'s grid."""
    t0 = time.perf_counter()
    seg.set_image(ct)
    label = seg.predict().array
    found = seg.findings("venous").to_dict()
    keep = ("verdict", "tumour_mm3", "duct_mm3", "pancreas_mm3", "reasons")
    return {**{k: found[k] for k in keep}, "seconds": round(time.perf_counter() - t0, 1)}, label


def run(model: Optional[Path], data: Path, only: Sequence[str] = (), seed: int = 0) -> dict:
    """Every case (those whose name contains a text of ``only``, when given) through the model; ``seed`` is
    unused (the tumours are placed, not drawn)."""
    from lesionseg.registry import build

    seg = build("s4c", weights=model, device="cpu")
    ct, truth = read_example(data / "totalseg-example-ct")
    pancreas = truth.array == PANCREAS
    rows: dict = {"model": str(getattr(seg, "model", None) and seg.model.path), "cases": [],
                  "pancreas_label_mm3": round(float(pancreas.sum() * np.prod(ct.spacing)), 1), "pancreas_dice": None}
    cases = [("example_ct normal", "negative", lambda: (ct, None))]
    cases += [(f"example_ct tumour r={radius:g} mm {contrast:+g} HU", "positive",
               lambda r=radius, c=contrast: insert_tumour(ct, pancreas, r, c))
              for contrast in CONTRASTS_HU for radius in RADII_MM]
    others = [("chest (Lung-PET-CT-Dx)", data / "lung-pet-ct-dx-ct" / "Lung_Dx-A0001_series3_B_CT.nii.gz")]
    others += [(f"limb ({name})", data / "ibsi-sts-petct" / name / "CT_image.nii.gz") for name in LIMBS]
    cases += [(name, "inconclusive (no pancreas in view)", lambda p=path: (read_image(p), None))
              for name, path in others if path.exists()]
    for name, truth_verdict, load in cases:
        if only and not any(text in name for text in only):
            continue
        image, tumour = load()
        result, label = screen(seg, image)
        row = {"case": name, "truth": truth_verdict, **result}
        if tumour is not None:
            row["tumour_dice"] = dice(label == 2, tumour)
        if name == "example_ct normal":
            rows["pancreas_dice"] = dice(label >= 1, pancreas)
        rows["cases"].append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: dict) -> str:
    lines = [f"model: `{rows['model']}`; pancreas Dice on the normal example CT against TotalSegmentator's label "
             f"(a model's, {rows['pancreas_label_mm3']} mm3): {rows['pancreas_dice']}", "",
             "| case | truth | verdict | pancreas mL | tumour mm3 | tumour Dice | first reason |",
             "|---|---|---|---|---|---|---|"]
    for r in rows["cases"]:
        reason = (r["reasons"] or [""])[0].replace("|", "/")
        lines.append(f"| {r['case']} | {r['truth']} | {r['verdict']} | {r['pancreas_mm3'] / 1000:.1f} | "
                     f"{r['tumour_mm3']:.0f} | {r.get('tumour_dice', '')} | {reason} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from realct_cli import main

    sys.exit(main(__doc__, "s4c", run, markdown))
