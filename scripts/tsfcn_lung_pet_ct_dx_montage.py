"""PNG montage: TS-FCN on the tumour box prompts of the Lung-PET-CT-Dx chest CT (../shared/data).

    python scripts/tsfcn_lung_pet_ct_dx_montage.py [OUT.png] [--data DIR] [--weights MODEL_DIR]

The CT (512 x 512 x 64, 0.84 x 0.84 x 5 mm) has one tumour box per annotated slice (``boxes.csv``: index
``a[z, ymin:ymax, xmin:xmax]``). There are no masks, so the montage is for looking, not scoring. Rows:
(1) TS-FCN with each slice's own box (a one-slice prompt per slice), (2) TS-FCN with one 3D box, the union of
all boxes over their slices, (3) GrabCut + DenseCRF (``classical-box``) with each slice's own box. Each
panel zooms on the box (yellow) with the prediction outlined in red; the lung window is -1350..150 HU.
Default output: ``out/tsfcn_lung_pet_ct_dx.png`` (``out/`` is git-ignored).
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

import numpy as np

import lesionseg
import lesionseg.methods.tsfcn  # noqa: F401  (registers tsfcn even before it is a built-in module)
from lesionseg.geometry import index_box_to_world

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "lung-pet-ct-dx-ct"
ZOOM = 40
"""Pixels of context around the box in each panel."""


def read_boxes(folder: Path) -> tuple[Path, list[tuple[int, np.ndarray, np.ndarray]]]:
    """The CT path and its boxes as ``(k, lo_ij, hi_ij)`` inclusive voxel ranges, sorted by slice."""
    rows = list(csv.DictReader(open(folder / "boxes.csv")))
    if not rows:
        raise SystemExit(f"{folder / 'boxes.csv'} lists no boxes")
    boxes = sorted((int(r["z_index"]), np.array([int(r["xmin"]), int(r["ymin"])]),
                    np.array([int(r["xmax"]) - 1, int(r["ymax"]) - 1])) for r in rows)
    return folder / rows[0]["nifti"], boxes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=REPO / "out" / "tsfcn_lung_pet_ct_dx.png")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--weights", type=Path, help="TS-FCN model folder (default: the shipped one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.data / "boxes.csv").is_file():
        raise SystemExit(f"{args.data} has no boxes.csv (the shared data folder is absent?)")
    ct_path, boxes = read_boxes(args.data)
    image = lesionseg.read_image(ct_path)
    tsfcn = lesionseg.build("tsfcn", weights=args.weights, device="cpu")
    classical = lesionseg.build("classical-box", device="cpu")
    tsfcn.set_image(image)
    classical.set_image(image)

    per_slice = np.zeros(image.shape, np.uint8)
    grabcut = np.zeros(image.shape, np.uint8)
    t0 = time.perf_counter()
    for k, lo, hi in boxes:
        box = index_box_to_world(image, [lo[0], lo[1], k], [hi[0], hi[1], k])
        per_slice[k] = tsfcn.predict(box).array[k]
    t_slices = time.perf_counter() - t0
    lo_all = np.min([b[1] for b in boxes], axis=0)
    hi_all = np.max([b[2] for b in boxes], axis=0)
    t0 = time.perf_counter()
    union = tsfcn.predict(index_box_to_world(image, [*lo_all, boxes[0][0]], [*hi_all, boxes[-1][0]])).array
    t_union = time.perf_counter() - t0
    for k, lo, hi in boxes:
        grabcut[k] = classical.predict(index_box_to_world(image, [lo[0], lo[1], k], [hi[0], hi[1], k])).array[k]
    ml = image.voxel_volume_ml
    rows = [(f"TS-FCN\nper-slice boxes\n{per_slice.sum() * ml:.1f} mL, {t_slices:.2f} s", per_slice),
            (f"TS-FCN\none 3D box\n{union.sum() * ml:.1f} mL, {t_union:.2f} s", union),
            (f"GrabCut + DenseCRF\nper-slice boxes\n{grabcut.sum() * ml:.1f} mL", grabcut)]
    render(args.output, image, boxes, rows)
    logging.info("wrote %s", args.output)
    for title, _ in rows:
        logging.info("%s", title.replace("\n", ", "))
    return 0


def render(path: Path, image: lesionseg.Image, boxes: list, rows: list[tuple[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo_all = np.min([b[1] for b in boxes], axis=0) - ZOOM
    hi_all = np.max([b[2] for b in boxes], axis=0) + ZOOM
    fig, axes = plt.subplots(len(rows), len(boxes), figsize=(1.6 * len(boxes), 1.9 * len(rows)), squeeze=False)
    for r, (title, mask) in enumerate(rows):
        for c, (k, lo, hi) in enumerate(boxes):
            ax = axes[r, c]
            ax.imshow(image.array[k], cmap="gray", vmin=-1350, vmax=150, interpolation="nearest")
            ax.plot([lo[0] - .5, hi[0] + .5, hi[0] + .5, lo[0] - .5, lo[0] - .5],
                    [lo[1] - .5, lo[1] - .5, hi[1] + .5, hi[1] + .5, lo[1] - .5], "--", color="yellow", lw=0.8)
            if mask[k].any():
                ax.contour(mask[k] > 0, levels=[0.5], colors="red", linewidths=0.9)
            ax.set_xlim(lo_all[0], hi_all[0])
            ax.set_ylim(hi_all[1], lo_all[1])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"k={k}", fontsize=7)
        axes[r, 0].set_ylabel(title, fontsize=6)
    fig.suptitle("Lung-PET-CT-Dx A0001 (CC BY 4.0): box prompt yellow, prediction red; no ground-truth masks",
                 fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
