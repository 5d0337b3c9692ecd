"""Coronal maximum-intensity projection (MIP) of a PET in SUV, with the lesions outlined, as a PNG.

The projection runs along the image axis nearest to the patient's anterior-posterior (LPS y) direction; the
picture shows the patient from the front as on a PET reading screen: head up, the patient's right on the
viewer's left, inverted grey (0 SUV white, ``vmax`` and above black), pixels drawn with their physical aspect
ratio, a colour bar in SUV. Lesions (voxels > 0 of the label) are projected the same way, outlined in red
and numbered with the ids of :func:`~.lesion_table.lesion_table`. An oblique grid is drawn along its nearest
LPS axes, without resampling. Matplotlib (Agg, no display) draws it; the file is written atomically.

Layout (pixels, at :data:`DPI`): a ``TOP_PX`` band for the title, the MIP ``height_px - TOP_PX - BOTTOM_PX``
high and as wide as its physical aspect asks, then ``GAP_PX``, a ``BAR_PX`` colour bar and ``RIGHT_PX`` for
its labels: :func:`mip_size` gives the PNG's ``(width, height)``. :func:`write_output` is ``lesionseg predict
autopet-l2snet --mip``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from ...errors import InputError, OutputExistsError
from ...image import Image
from ...io import atomic_write_bytes_via
from .lesion_table import check_label_and_suv, lesion_ids

DPI = 100
TOP_PX, BOTTOM_PX, LEFT_PX, GAP_PX, BAR_PX, RIGHT_PX = 28, 10, 10, 10, 16, 62
MAX_ASPECT = 4.0
"""The MIP is at most this many times wider than high (a flatter volume is stretched vertically)."""
DEFAULT_VMAX = 10.0
"""Upper end of the grey scale when ``vmax`` is None, unless the 99.5th SUV percentile in the body is lower."""


def _orientation(image: Image) -> tuple[int, int, int, bool, bool]:
    """Array axes (0 = k, 1 = j, 2 = i) nearest to the L, P and S directions, and whether rows (index grows
    towards the head) and columns (index grows towards the patient's right) must be reversed."""
    _, ijk = linear_sum_assignment(-np.abs(image.direction))  # direction rows: L, P, S; columns: i, j, k
    left, post, sup = (int(2 - a) for a in ijk)
    return left, post, sup, bool(image.direction[2, 2 - sup] > 0), bool(image.direction[0, 2 - left] < 0)


def _project(array: np.ndarray, image: Image, reduce) -> np.ndarray:
    """``reduce`` of ``array`` (``[k, j, i]``) along the anterior-posterior axis, as rows (head first) x
    columns (patient's right first)."""
    left, post, sup, flip_rows, flip_cols = _orientation(image)
    rest = [a for a in (0, 1, 2) if a != post]
    out = np.transpose(reduce(array, axis=post), (rest.index(sup), rest.index(left)))
    return np.ascontiguousarray(out[::-1 if flip_rows else 1, ::-1 if flip_cols else 1])


def mip_size(suv: Image, height_px: int = 800) -> tuple[int, int]:
    """``(width, height)`` in pixels of the PNG that :func:`coronal_mip_png` writes for ``suv``."""
    left, _, sup, _, _ = _orientation(suv)
    high = height_px - TOP_PX - BOTTOM_PX
    ratio = suv.shape[left] * suv.spacing[2 - left] / (suv.shape[sup] * suv.spacing[2 - sup])
    wide = int(np.clip(round(high * ratio), 16, MAX_ASPECT * high))
    return LEFT_PX + wide + GAP_PX + BAR_PX + RIGHT_PX, height_px


def default_vmax(suv: Image) -> float:
    """:data:`DEFAULT_VMAX`, or the 99.5th percentile of the SUV above 0.1 (the body) when lower (at least 1)."""
    body = suv.array[suv.array > 0.1]
    return float(min(DEFAULT_VMAX, max(1.0, np.percentile(body, 99.5)))) if body.size else 1.0


def coronal_mip_png(suv: Image, label: Optional[Image], path: str | Path, title: Optional[str] = None,
                    vmax: Optional[float] = None, connectivity: int = 18, height_px: int = 800,
                    overwrite: bool = False) -> Path:
    """Write the coronal MIP of ``suv`` with ``label``'s lesions outlined and numbered to ``path`` (PNG).

    Args:
        suv: PET in SUV, ``(K, J, I)`` with at least 2 voxels along the superior and left axes.
        label: lesion label on the grid of ``suv`` (voxels > 0), or None for the MIP alone.
        path: output ``.png``; its folder must exist.
        title: text above the picture (default: none).
        vmax: SUV shown black; default :func:`default_vmax`.
        connectivity: lesion connectivity (6, 18, 26), as for the lesion table whose ids label the outlines.
        height_px: height of the PNG; the width follows (:func:`mip_size`).
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        InputError: images not on one grid, not SUV or not finite (as the lesion table), a flat volume, a bad
        ``vmax``, ``height_px`` < 100 or a suffix other than .png. OutputExistsError: the file exists.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"the MIP is written as .png, not {path.name!r}")
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    check_label_and_suv(label, suv)
    if isinstance(height_px, bool) or not isinstance(height_px, (int, np.integer)) or height_px < 100:
        raise InputError(f"height_px must be an integer >= 100, got {height_px!r}")
    mip = _project(suv.array.astype(np.float32), suv, np.max)
    if min(mip.shape) < 2:
        raise InputError(f"a coronal MIP needs a volume, got {suv!r}")
    vmax = default_vmax(suv) if vmax is None else vmax
    if isinstance(vmax, bool) or not isinstance(vmax, (int, float, np.number)) or not np.isfinite(vmax) or vmax <= 0:
        raise InputError(f"vmax must be a positive number, got {vmax!r}")
    width, height = mip_size(suv, int(height_px))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    wide, high = width - LEFT_PX - GAP_PX - BAR_PX - RIGHT_PX, height - TOP_PX - BOTTOM_PX
    ax = fig.add_axes((LEFT_PX / width, BOTTOM_PX / height, wide / width, high / height))
    shown = ax.imshow(mip, cmap="gray_r", vmin=0.0, vmax=float(vmax), interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if label is not None:
        _outline(ax, label, connectivity)
    bar = fig.add_axes(((LEFT_PX + wide + GAP_PX) / width, BOTTOM_PX / height, BAR_PX / width, high / height))
    fig.colorbar(shown, cax=bar).set_label("SUV")
    ax.text(0.0, 1.0, "R", transform=ax.transAxes, va="top", ha="left", fontsize=8, color="tab:blue")
    ax.text(1.0, 1.0, "L", transform=ax.transAxes, va="top", ha="right", fontsize=8, color="tab:blue")
    if title:
        fig.text(0.5, 1.0 - 4 / height, title, ha="center", va="top", fontsize=10)
    atomic_write_bytes_via(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"), overwrite)
    return path



def write_output(segmenter, label: Image, path: str | Path, overwrite: bool = False) -> Path:
    """``--mip`` of ``lesionseg predict autopet-l2snet`` (the spec's output writer): :func:`coronal_mip_png` of
    the PET given to ``segmenter.set_image`` with ``label`` outlined, titled with the method and its mode."""
    return coronal_mip_png(segmenter.image, label, path, title=f"{segmenter.name} ({segmenter.mode})",
                           overwrite=overwrite)

def _outline(ax, label: Image, connectivity: int) -> None:
    """Red outlines of the projected lesions and, right of each lesion's projected box, its table id."""
    ids, n = lesion_ids(label, connectivity)
    if n == 0:
        return
    ax.contour(_project(ids.array > 0, label, np.any).astype(np.float32), levels=[0.5], colors="red",
               linewidths=0.8)
    left, _, sup, flip_rows, flip_cols = _orientation(label)
    for number, box in enumerate(ndimage.find_objects(ids.array, max_label=n), start=1):
        top = label.shape[sup] - box[sup].stop if flip_rows else box[sup].start
        right = label.shape[left] - 1 - box[left].start if flip_cols else box[left].stop - 1
        ax.text(right + 1.0, top - 0.5, str(number), color="red", fontsize=7, ha="left", va="top")
