"""PNG montages of segmentation overlays (matplotlib, Agg backend; no display needed).

Each row is one (method, case) result: an overview of the axial slice through the largest lesion, then a
zoom on each lesion (up to :data:`MAX_ZOOMS`) through its centre slice. Truth is outlined in green, the
prediction in red, box prompts in dashed yellow, RECIST axes in yellow. Pixels are drawn with their
physical aspect ratio. Multi-class labels are outlined as a whole, and their tumour class again, dashed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from .geometry import world_to_index
from .image import Image

MAX_ZOOMS = 3
ZOOM_MARGIN_MM = 20.0
TUMOUR_CLASS = 2
"""In multi-class labels (S4C: 1 organ, 2 tumour, 3 duct) class 2 is also outlined, dashed."""


def _window(case) -> tuple[float, float]:
    win = case.info.get("window") if isinstance(case.info, dict) else None
    if win is not None:
        return float(win[0]), float(win[1])
    arr = case.images[0].array
    return float(np.percentile(arr, 1)), float(np.percentile(arr, 99))


def _draw_prompt(ax, prompt: Optional[dict], image: Image, k: int) -> None:
    if not prompt:
        return
    if prompt["kind"] == "box":
        ijk = world_to_index(image, np.array([prompt["corner_a"], prompt["corner_b"]]))
        if min(ijk[:, 2]) - 0.5 <= k <= max(ijk[:, 2]) + 0.5:
            (i0, j0), (i1, j1) = ijk[0, :2], ijk[1, :2]
            ax.plot([i0, i1, i1, i0, i0], [j0, j0, j1, j1, j0], "--", color="yellow", lw=1)
    elif prompt["kind"] == "recist":
        for pair in [prompt["long"]] + ([prompt["short"]] if "short" in prompt else []):
            ijk = world_to_index(image, np.array(pair))
            if abs(ijk[:, 2].mean() - k) <= 0.5:  # only the axes drawn on this slice
                ax.plot(ijk[:, 0], ijk[:, 1], "-", color="yellow", lw=1)


def _panel(ax, case, pred: Image, k: int, box: Optional[tuple], prompts: Sequence, title: str) -> None:
    image = case.images[0]
    lo, hi = _window(case)
    sl = image.array[k].astype(np.float32)
    aspect = image.spacing[1] / image.spacing[0]
    ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
    if case.truth.array[k].any():
        ax.contour(case.truth.array[k] > 0, levels=[0.5], colors="lime", linewidths=1)
    if pred.array[k].any():
        ax.contour(pred.array[k] > 0, levels=[0.5], colors="red", linewidths=1)
    for arr, colour in ((case.truth.array[k], "lime"), (pred.array[k], "red")):
        if (arr == TUMOUR_CLASS).any() and arr.max() > 1:  # multi-class labels (S4C): the tumour, dashed
            ax.contour(arr == TUMOUR_CLASS, levels=[0.5], colors=colour, linewidths=1, linestyles="dashed")
    for prompt in prompts:
        _draw_prompt(ax, prompt, image, k)
    if box is not None:
        (j0, j1), (i0, i1) = box
        ax.set_xlim(i0, i1)
        ax.set_ylim(j1, j0)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def render_montage(path: Path, rows: Sequence[tuple], dpi: int = 110) -> Path:
    """Write a montage PNG; ``rows`` holds ``(method, case, prediction Image, prompt dicts)`` tuples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 1 + MAX_ZOOMS
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.2 * ncols, 2.3 * len(rows)), squeeze=False)
    for r, (method, case, pred, prompts) in enumerate(rows):
        labels, n = ndimage.label(case.truth.array > 0, ndimage.generate_binary_structure(3, 2))
        sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1)) if n else []
        order = list(np.argsort(sizes)[::-1][:MAX_ZOOMS]) if n else []
        slices = ndimage.find_objects(labels)
        if order:
            k_over = int(np.round(ndimage.center_of_mass(labels == order[0] + 1)[0]))
        else:
            k_over = case.truth.shape[0] // 2
        _panel(axes[r, 0], case, pred, k_over, None, prompts, f"{method} · {case.name} · k={k_over}")
        for c in range(MAX_ZOOMS):
            ax = axes[r, c + 1]
            if c >= len(order):
                ax.axis("off")
                continue
            comp = order[c] + 1
            k = int(np.round(ndimage.center_of_mass(labels == comp)[0]))
            sl = slices[comp - 1]
            mj = ZOOM_MARGIN_MM / case.truth.spacing[1]
            mi = ZOOM_MARGIN_MM / case.truth.spacing[0]
            box = ((sl[1].start - mj, sl[1].stop + mj), (sl[2].start - mi, sl[2].stop + mi))
            _panel(ax, case, pred, k, box, prompts, f"lesion {c + 1} · k={k}")
    fig.suptitle("truth: green · prediction: red · prompt: yellow (synthetic phantoms)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)
