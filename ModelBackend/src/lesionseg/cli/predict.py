"""``lesionseg predict METHOD IMAGE [IMAGE ...] -o OUT``: segment images with one method.

The flags come from the method's spec: its inputs (a file or a DICOM folder each; trailing optional inputs
may be left out), its prompt (``--box``/``--box-ijk``, ``--recist``/``--recist-short``), its typed options
(:mod:`lesionseg.options`) and its extra outputs (``--table``, ``--mip``). Every output path is checked before
any work; the label and the extra outputs are published together.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from .. import progress
from ..errors import InputError

HELP = "segment image(s) with a method"


def add_parser(sub: argparse._SubParsersAction, argv: Sequence[str] = ()) -> None:
    """``lesionseg predict METHOD ...`` with every registered method's flags."""
    from ..client import add_server_arguments
    from ..registry import list_specs
    from . import add_common

    cmd = sub.add_parser("predict", help=HELP, description=HELP)
    methods = cmd.add_subparsers(dest="method", metavar="METHOD", required=True)
    for spec in list_specs():
        p = methods.add_parser(spec.name, help=spec.summary, description=spec.summary)
        add_common(p)
        needed = len(spec.inputs) - spec.optional_inputs
        names = ", ".join(spec.inputs[:needed]) + (f" [, {', '.join(spec.inputs[needed:])}]" if spec.optional_inputs else "")
        p.add_argument("images", nargs="+" if spec.optional_inputs else len(spec.inputs), metavar="IMAGE",
                       help=f"input image(s) in this order: {names} (a file or a DICOM folder each)")
        p.add_argument("-o", "--output", required=True, type=Path,
                       help="output label image (.nii.gz/.nii/.nrrd/.mha; .dcm with --output-format dicom-seg)")
        p.add_argument("--output-format", choices=("nifti", "dicom-seg"), default="nifti",
                       help="nifti (default): a label image; dicom-seg: a DICOM SEG referencing the first input, "
                            "which must be a DICOM series folder")
        p.add_argument("--weights", type=Path, help="model folder (default: $LESIONSEG_WEIGHTS, then built-in)")
        p.add_argument("--series", action="append", metavar="UID", default=[],
                       help="SeriesInstanceUID to read from a DICOM folder holding several series "
                            "(repeat for several input folders; each folder takes the one it holds)")
        if spec.prompt == "box":
            grp = p.add_mutually_exclusive_group(required=True)
            grp.add_argument("--box", nargs=6, type=float, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                             help="box corners in LPS mm")
            grp.add_argument("--box-ijk", nargs=6, type=int, metavar=("I0", "J0", "K0", "I1", "J1", "K1"),
                             help="box corners as voxel indices (inclusive)")
        elif spec.prompt == "recist":
            p.add_argument("--recist", nargs=6, type=float, required=True,
                           metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"), help="long-axis end points, LPS mm")
            p.add_argument("--recist-short", nargs=6, type=float, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                           help="short-axis end points, LPS mm")
        add_server_arguments(p)
        spec.options.add_arguments(p, f"{spec.name} options")
        for out in spec.outputs:
            p.add_argument(out.flag, dest=out.name, type=Path, help=f"{out.help} ({'/'.join(out.suffixes)})")


def prompt_from_args(args: argparse.Namespace, image):
    """The prompt the flags give (None for an automatic method)."""
    from ..geometry import index_box_to_world
    from ..prompts import Box, RecistLine

    if getattr(args, "box", None):
        return Box(args.box[:3], args.box[3:])
    if getattr(args, "box_ijk", None):
        lo, hi = args.box_ijk[:3], args.box_ijk[3:]
        return index_box_to_world(image, [min(a, b) for a, b in zip(lo, hi)], [max(a, b) for a, b in zip(lo, hi)])
    if getattr(args, "recist", None):
        short = args.recist_short or [None] * 6
        return RecistLine(args.recist[:3], args.recist[3:], short[:3] if args.recist_short else None,
                          short[3:] if args.recist_short else None)
    return None


def _extra_outputs(spec, args: argparse.Namespace) -> list[tuple[str, Path, tuple]]:
    """``(flag, path, suffixes)`` of each extra output of the spec asked for."""
    return [(out.flag, getattr(args, out.name), out.suffixes) for out in spec.outputs
            if getattr(args, out.name, None) is not None]


def check_outputs(spec, args: argparse.Namespace, inputs: list[Path]) -> None:
    """Check every output path before any work: the label (``-o``) and the extra outputs: writable, not an
    input, not each other, not existing without ``--overwrite``."""
    from ..io import WRITE_SUFFIXES
    from ..outputs import check_output_file

    if getattr(args, "output_format", "nifti") == "dicom-seg":
        from ..dicomseg import SEG_SUFFIXES, check_source

        check_source(inputs[0])
        check_output_file(args.output, args.overwrite, inputs, SEG_SUFFIXES, "DICOM SEG output")
    else:
        check_output_file(args.output, args.overwrite, inputs, WRITE_SUFFIXES, "output label")
    seen = {args.output.absolute(): "-o"}
    for flag, path, suffixes in _extra_outputs(spec, args):
        if Path(path).absolute() in seen:
            raise InputError(f"{flag} {path} is also given as {seen[Path(path).absolute()]}; give each output its own file")
        seen[Path(path).absolute()] = flag
        check_output_file(path, args.overwrite, inputs, suffixes or None, f"{flag} output")


def read_inputs(spec, args: argparse.Namespace, options) -> list:
    """The input images: the spec's reader (e.g. a PET in SUV) or :func:`lesionseg.io.read_image` for each
    path (with ``--series``)."""
    from ..io import read_image
    from ..registry import load_object

    if spec.reader is not None:
        return list(load_object(spec.reader)([Path(p) for p in args.images], options, args.series))
    return [read_image(p, args.series or None) for p in args.images]


def _series_of(folder: Path, series: Sequence[str]):
    """The one of the ``--series`` UIDs that DICOM ``folder`` holds (None: none given, or a file)."""
    if not series or not Path(folder).is_dir():
        return None
    from ..io import list_dicom_series

    held = [uid for uid in series if uid in list_dicom_series(folder)]
    return held[0] if len(held) == 1 else None


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg predict``; returns the exit status."""
    from ..dicomseg import write_label
    from ..outputs import publish_together
    from ..registry import build, get_spec, load_object

    spec = get_spec(args.method)
    needed, total = len(spec.inputs) - spec.optional_inputs, len(spec.inputs)
    if not needed <= len(args.images) <= total:
        raise InputError(f"{spec.name} takes {needed}{f' to {total}' if total > needed else ''} image(s) "
                         f"({', '.join(spec.inputs)}); got {len(args.images)}")
    inputs = [Path(p) for p in args.images]
    check_outputs(spec, args, inputs)
    t0 = time.perf_counter()
    options = spec.options.from_namespace(args)
    if getattr(args, "server", None):  # the method runs on a LesionSeg server; the images are read here
        from ..client import segmenter_from_args

        seg = segmenter_from_args(args, options)
    else:
        seg = build(args.method, weights=args.weights, device=args.device, options=options)  # a broken model fails first
    images = read_inputs(spec, args, options)
    prompt = prompt_from_args(args, images[0])
    progress.emit_line(0.1, "loading image")
    seg.set_image(*images)
    progress.emit_line(0.5, "segmenting")
    label = seg.predict(prompt)
    with publish_together():  # the label and its extras (lesion table, MIP) appear together or not at all
        write_label(label, args.output, getattr(args, "output_format", "nifti"), spec=spec, source=inputs[0], prompts=[prompt],
                    series_uid=_series_of(inputs[0], args.series), overwrite=args.overwrite, inputs=inputs)
        extras = [load_object(out.writer)(seg, label, getattr(args, out.name), args.overwrite)
                  for out in spec.outputs if getattr(args, out.name, None) is not None]
    progress.emit_line(1.0, "done")
    voxels = int((label.array > 0).sum())
    print(f"{args.output}: {voxels} lesion voxels ({voxels * label.voxel_volume_ml:.2f} mL) "
          f"in {time.perf_counter() - t0:.2f} s" + "".join(f"; {p}" for p in extras))
    return 0
