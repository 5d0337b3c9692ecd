"""``lesionseg refine IMAGE MASK -o OUT``: correct a label with strokes (GrabCut, then DenseCRF).

The command wraps :func:`lesionseg.refiners.refine_with_scribbles`; the Slicer effect "Lesion GrabCut/CRF"
calls the same function. It is a verb of the ``recist-coseg`` spec (``verbs=``): the CLI calls :func:`add_parser`
and :func:`run`. Its settings are :class:`RefineSettings`.

Stroke points are LPS mm: ``--fg-scribble X Y Z [X Y Z ...]`` (repeatable; each occurrence one stroke).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import InputError
from ...options import Settings, option

CRF_FLAGS = ("gaussian-sxy-mm", "gaussian-compat", "bilateral-sxy-mm", "bilateral-sintensity", "bilateral-compat")
"""The DenseCRF weights and widths ``lesionseg refine`` passes to :class:`lesionseg.refiners.DenseCRFRefiner`."""
_CRF_HELP = "DenseCRF setting (default: lesionseg.refiners.DenseCRFRefiner's)"


@dataclass(frozen=True)
class RefineSettings(Settings):
    """The settings of ``lesionseg refine`` besides the files and strokes; checked when made (each error names
    the flag as typed), before any file is read."""

    label: int = option(0, "refine only this label value of MASK (0: all non-zero)")
    radius_mm: float = option(2.0, "stroke disk radius", unit="mm")
    band_mm: float = option(5.0, "probable-background band outside the mask", unit="mm")
    iterations: int = option(5, "GrabCut iterations")
    use_crf: bool = option(True, "refine with DenseCRF after GrabCut", flag="--crf")
    crf_iterations: int = option(5, "DenseCRF iterations")
    gaussian_sxy_mm: Optional[float] = option(None, _CRF_HELP)
    gaussian_compat: Optional[float] = option(None, _CRF_HELP)
    bilateral_sxy_mm: Optional[float] = option(None, _CRF_HELP)
    bilateral_sintensity: Optional[float] = option(None, _CRF_HELP)
    bilateral_compat: Optional[float] = option(None, _CRF_HELP)

    def __post_init__(self) -> None:
        from ...refiners import check_number

        check_number(self.iterations, self.flag("iterations"), 1, integer=True)
        check_number(self.crf_iterations, self.flag("crf_iterations"), 1, integer=True)
        check_number(self.radius_mm, self.flag("radius_mm"), 0)
        check_number(self.band_mm, self.flag("band_mm"), 0)
        check_number(self.label, self.flag("label"), 0, integer=True)
        for name, value in self.crf_settings().items():
            check_number(value, self.flag(name), 0, above=not name.endswith("compat"))

    def crf_settings(self) -> dict[str, float]:
        """The DenseCRF settings given (keyword arguments of :class:`lesionseg.refiners.DenseCRFRefiner`)."""
        names = [flag.replace("-", "_") for flag in CRF_FLAGS]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


COMMAND = "refine"
"""The subcommand this module adds (see :attr:`lesionseg.registry.MethodSpec.verbs`)."""

def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``refine`` subcommand to the CLI's subparsers; returns its parser."""
    p = sub.add_parser("refine", help="correct a label with foreground/background strokes (GrabCut + DenseCRF)",
                       description="Correct a label with foreground/background strokes: GrabCut from the mask, "
                                   "then DenseCRF. Points are LPS mm.")
    p.add_argument("image", type=Path, help="intensity image (file or DICOM folder)")
    p.add_argument("mask", type=Path, help="current label on the image's grid (non-zero = foreground)")
    p.add_argument("-o", "--output", type=Path, required=True, help="refined label image")
    p.add_argument("--fg-scribble", type=float, nargs="+", action="append", default=[], metavar="X Y Z",
                   help="foreground stroke: one or more LPS points (repeatable)")
    p.add_argument("--bg-scribble", type=float, nargs="+", action="append", default=[], metavar="X Y Z",
                   help="background stroke: one or more LPS points (repeatable)")
    RefineSettings.add_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p


def _points(strokes: list[list[float]], name: str) -> np.ndarray | None:
    """``(N, 3)`` LPS points of all strokes, or None without strokes."""
    if not strokes:
        return None
    for stroke in strokes:
        if len(stroke) % 3:
            raise InputError(f"--{name} takes X Y Z triples, got {len(stroke)} numbers")
    return np.concatenate([np.reshape(s, (-1, 3)) for s in strokes])


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg refine``; returns the exit status."""
    from ...image import check_same_grid
    from ...io import read_image, write_image
    from ...prompts import Points
    from ...refiners import DenseCRFRefiner, refine_with_scribbles

    from ...io import WRITE_SUFFIXES
    from ...outputs import check_output_file

    settings = RefineSettings.from_namespace(args)
    check_output_file(args.output, args.overwrite, [args.image, args.mask], WRITE_SUFFIXES, "refined mask")
    t0 = time.perf_counter()
    image = read_image(args.image)
    image.check_finite()
    mask = read_image(args.mask)
    check_same_grid(mask, image, f"the mask {args.mask}", f"the image {args.image}")
    selected = (mask.array == settings.label) if settings.label else (mask.array > 0)
    fg, bg = _points(args.fg_scribble, "fg-scribble"), _points(args.bg_scribble, "bg-scribble")
    if not selected.any() and fg is None:
        values = np.unique(mask.array[mask.array > 0])
        held = f"holds no voxel of --label {settings.label} (its labels: {', '.join(str(v) for v in values[:10])})" \
            if settings.label and values.size else "is empty"
        raise InputError(f"the mask {args.mask} {held} and no --fg-scribble was given: nothing to refine")
    crf = DenseCRFRefiner(settings.crf_iterations, seed_radius_mm=settings.radius_mm, **settings.crf_settings())
    refined = refine_with_scribbles(
        image, mask.with_array(selected.astype(np.uint8)),
        fg=None if fg is None else Points(fg, np.ones(len(fg))),
        bg=None if bg is None else Points(bg, np.zeros(len(bg))),
        radius_mm=settings.radius_mm, band_mm=settings.band_mm, iterations=settings.iterations, crf=crf,
        use_crf=settings.use_crf)
    value = settings.label or 1
    write_image(refined.with_array((refined.array > 0).astype(np.uint8) * np.uint8(value)), args.output,
                overwrite=args.overwrite, inputs=[args.image, args.mask])
    voxels = int((refined.array > 0).sum())
    print(f"{args.output}: {voxels} voxels ({voxels * refined.voxel_volume_ml:.2f} mL) "
          f"in {time.perf_counter() - t0:.2f} s")
    return 0
