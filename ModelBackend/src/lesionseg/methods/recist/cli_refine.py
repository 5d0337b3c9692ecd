"""``lesionseg refine IMAGE MASK -o OUT``: correct a label with strokes (GrabCut, then DenseCRF).

The command wraps :func:`lesionseg.refiners.refine_with_scribbles`; the Slicer effect "Lesion GrabCut/CRF"
calls the same function. Wire-in (in ``lesionseg.cli``)::

    from .methods.recist import cli_refine
    cli_refine.add_parser(sub)                 # in build_parser
    COMMANDS["refine"] = cli_refine.run        # next to the other commands

Stroke points are LPS mm: ``--fg-scribble X Y Z [X Y Z ...]`` (repeatable; each occurrence one stroke).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ...errors import InputError


CRF_FLAGS = ("gaussian-sxy-mm", "gaussian-compat", "bilateral-sxy-mm", "bilateral-sintensity", "bilateral-compat")


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
    p.add_argument("--label", type=int, default=0, help="refine only this label value of MASK (default: all non-zero)")
    p.add_argument("--radius-mm", type=float, default=2.0, help="stroke disk radius (default 2)")
    p.add_argument("--band-mm", type=float, default=5.0, help="probable-background band outside the mask (default 5)")
    p.add_argument("--iterations", type=int, default=5, help="GrabCut iterations (default 5)")
    p.add_argument("--no-crf", action="store_true", help="skip the DenseCRF step")
    p.add_argument("--crf-iterations", type=int, default=5)
    for flag in CRF_FLAGS:
        p.add_argument(f"--{flag}", type=float, default=None,
                       help="DenseCRF setting (default: lesionseg.refiners.DenseCRFRefiner's)")
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


def _check_numbers(args: argparse.Namespace) -> None:
    """InputError naming the flag as typed for a number out of range (before any file is read)."""
    from ...refiners import check_number

    check_number(args.iterations, "--iterations", 1, integer=True)
    check_number(args.crf_iterations, "--crf-iterations", 1, integer=True)
    check_number(args.radius_mm, "--radius-mm", 0)
    check_number(args.band_mm, "--band-mm", 0)
    check_number(args.label, "--label", 0, integer=True)
    for flag in CRF_FLAGS:
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            check_number(value, f"--{flag}", 0, above=not flag.endswith("compat"))


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg refine``; returns the exit status."""
    from ...image import check_same_grid
    from ...io import read_image, write_image
    from ...prompts import Points
    from ...refiners import DenseCRFRefiner, refine_with_scribbles

    from ...io import WRITE_SUFFIXES
    from ...outputs import check_output_file

    _check_numbers(args)
    check_output_file(args.output, args.overwrite, [args.image, args.mask], WRITE_SUFFIXES, "refined mask")
    t0 = time.perf_counter()
    image = read_image(args.image)
    image.check_finite()
    mask = read_image(args.mask)
    check_same_grid(mask, image, f"the mask {args.mask}", f"the image {args.image}")
    selected = (mask.array == args.label) if args.label else (mask.array > 0)
    fg, bg = _points(args.fg_scribble, "fg-scribble"), _points(args.bg_scribble, "bg-scribble")
    if not selected.any() and fg is None:
        values = np.unique(mask.array[mask.array > 0])
        held = f"holds no voxel of --label {args.label} (its labels: {', '.join(str(v) for v in values[:10])})" \
            if args.label and values.size else "is empty"
        raise InputError(f"the mask {args.mask} {held} and no --fg-scribble was given: nothing to refine")
    given = {f.replace("-", "_"): getattr(args, f.replace("-", "_")) for f in CRF_FLAGS}
    crf = DenseCRFRefiner(args.crf_iterations, seed_radius_mm=args.radius_mm,
                          **{k: v for k, v in given.items() if v is not None})
    refined = refine_with_scribbles(
        image, mask.with_array(selected.astype(np.uint8)),
        fg=None if fg is None else Points(fg, np.ones(len(fg))),
        bg=None if bg is None else Points(bg, np.zeros(len(bg))),
        radius_mm=args.radius_mm, band_mm=args.band_mm, iterations=args.iterations, crf=crf,
        use_crf=not args.no_crf)
    value = args.label or 1
    write_image(refined.with_array((refined.array > 0).astype(np.uint8) * np.uint8(value)), args.output,
                overwrite=args.overwrite, inputs=[args.image, args.mask])
    voxels = int((refined.array > 0).sum())
    print(f"{args.output}: {voxels} voxels ({voxels * refined.voxel_volume_ml:.2f} mL) "
          f"in {time.perf_counter() - t0:.2f} s")
    return 0
