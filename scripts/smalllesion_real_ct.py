"""small-lesion-il on real CT (issue #18): lesions found and false-positive components on the TotalSegmentator
example CT, with and without inserted lesions, and on real CTs with no small lesions (chest, limbs).

    python scripts/smalllesion_real_ct.py [--model DIR] [--data ../shared/data] [--json OUT.json]
        [--markdown OUT.md] [--case TEXT ...] [--seed 0]

Cases (``--case TEXT`` keeps those whose name contains ``TEXT``; repeatable):

* ``example_ct + 4 lesions``: ``example_ct.nii.gz`` (112 slices at 3 mm) with 4 lesions of diameter 8-14 mm and
  HU ~N(130, 15) inserted within 5 mm of the small bowel (label 18 of ``example_seg.nii.gz`` placed on that CT,
  :func:`lesionseg.data.totalseg.read_example`) by :func:`lesionseg.methods.smalllesion.data.insert_lesions`
  (seeded by ``--seed``): lesions found (a true lesion that a predicted voxel overlaps) and false-positive
  components (predicted components overlapping no true lesion);
* ``example_ct normal``: false-positive components;
* the chest CT ``lung-pet-ct-dx-ct/Lung_Dx-A0001_series3_B_CT.nii.gz`` and the limb CT crops
  ``ibsi-sts-petct/STS_00{1..5}/CT_image.nii.gz``: false-positive components; a component overlapping the sarcoma
  (``CT_mask.nii.gz``) is counted apart, not as false positive.

Components are 26-connected, as the segmenter's lesion table (:data:`lesionseg.methods.smalllesion.segmenter.
CONNECTIVITY`). Nothing here trains; STS_001-STS_005 are the test scans left out of ``--negatives`` training
(``--exclude-negatives``, docs/small_lesion.md).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from lesionseg.data.totalseg import SMALL_BOWEL, read_example
from lesionseg.image import Image
from lesionseg.io import read_image
from lesionseg.metrics import lesion_components

N_LESIONS = 4
DIAMETER_MM = (8.0, 14.0)
LIMBS = ("STS_001", "STS_002", "STS_003", "STS_004", "STS_005")


def count(pred: Image, truth: Optional[np.ndarray], other: Optional[np.ndarray], connectivity: int) -> dict:
    """Lesions found and components of the predicted mask ``pred`` (on its grid, > 0 is lesion).

    ``truth``: bool ``(K, J, I)`` true lesions (None: none); ``other``: bool mask of a known lesion that is not
    a small lesion (the sarcoma), whose overlapping components are counted as ``other_components``.
    """
    comps, n = lesion_components(pred.with_array(pred.array > 0), connectivity)
    ids = comps.array
    hit_truth = set(np.unique(ids[truth])) - {0} if truth is not None else set()
    hit_other = (set(np.unique(ids[other])) - {0} - hit_truth) if other is not None else set()
    out = {"components": int(n), "fp_components": int(n - len(hit_truth) - len(hit_other)),
           "other_components": len(hit_other), "predicted_ml": round(float((ids > 0).sum() * pred.voxel_volume_ml), 2)}
    if truth is not None:
        lesions, n_true = lesion_components(pred.with_array(truth), connectivity)
        found = set(np.unique(lesions.array[ids > 0])) - {0}
        out.update(lesions=int(n_true), found=len(found), tp_components=len(hit_truth))
    return out


def cases(data: Path, seed: int) -> list[tuple[str, Path | None, object]]:
    """``(name, source, loader)`` of every case; ``loader()`` gives ``(ct, truth or None, other or None)``."""
    from lesionseg.methods.smalllesion.data import insert_lesions

    folder = data / "totalseg-example-ct"

    def inserted() -> tuple[Image, np.ndarray, None]:
        ct, seg = read_example(folder)
        moved, label, _ = insert_lesions(ct, seg.array == SMALL_BOWEL, np.random.default_rng(seed), N_LESIONS,
                                         DIAMETER_MM)
        return moved, label.array > 0, None

    def normal() -> tuple[Image, None, None]:
        return read_example(folder)[0], None, None

    def plain(path: Path, mask: Optional[Path] = None):
        def load() -> tuple[Image, None, Optional[np.ndarray]]:
            return read_image(path), None, (read_image(mask).array > 0 if mask is not None and mask.exists() else None)
        return load

    out: list = [(f"example_ct + {N_LESIONS} lesions (seed {seed})", folder, inserted),
                 ("example_ct normal", folder, normal)]
    chest = data / "lung-pet-ct-dx-ct" / "Lung_Dx-A0001_series3_B_CT.nii.gz"
    out.append(("chest (Lung_Dx-A0001)", chest, plain(chest)))
    for name in LIMBS:
        base = data / "ibsi-sts-petct" / name
        ct = base / "CT_image.nii.gz"
        out.append((f"limb ({name})", ct, plain(ct, base / "CT_mask.nii.gz")))
    return out


def run(model: Optional[Path], data: Path, only: list[str], seed: int) -> dict:
    from lesionseg.methods.smalllesion.segmenter import CONNECTIVITY
    from lesionseg.registry import build

    seg = build("small-lesion-il", weights=model, device="cpu")
    rows: dict = {"model": str(getattr(seg, "model", None) and seg.model.path), "seed": seed, "cases": []}
    for name, source, load in cases(data, seed):
        if only and not any(text in name for text in only):
            continue
        if source is None or not source.exists():
            print(f"skipped {name}: {source} not found", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        ct, truth, other = load()
        seg.set_image(ct)
        result = count(seg.predict(), truth, other, CONNECTIVITY)
        rows["cases"].append({"case": name, **result, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows["cases"][-1]), flush=True)
    return rows


def markdown(rows: dict) -> str:
    lines = [f"model: `{rows['model']}`; 26-connected components", "",
             "| case | lesions found | FP components | components on the sarcoma | predicted mL |",
             "|---|---|---|---|---|"]
    for r in rows["cases"]:
        found = f"{r['found']}/{r['lesions']}" if "lesions" in r else "-"
        lines.append(f"| {r['case']} | {found} | {r['fp_components']} | {r['other_components'] or '-'} | "
                     f"{r['predicted_ml']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from realct_cli import main

    sys.exit(main(__doc__, "small-lesion-il", run, markdown))
