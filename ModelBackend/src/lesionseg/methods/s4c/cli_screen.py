"""``lesionseg screen [--venous V] [--arterial A] -o OUT_DIR``: S4C screening of one case, with a report.

Wraps :func:`.screen.screen_case`; prints a one-paragraph verdict (positive, negative or inconclusive, with
its reasons) and the report path on stdout; an inconclusive phase also warns on stderr. Every verdict,
inconclusive included, exits with status 0 (the verdict is data); bad input (an image that does not look like
CT in HU included) prints one ``error:`` line and exits with 2.
The s4c spec names this module in its ``verbs``: the CLI calls :func:`add_parser` and :func:`run`. It imports
no torch, so the parser stays light.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ... import progress
from ...errors import InputError

PHASE_HELP = "CT of the {} phase in HU: a NIfTI/NRRD/MHA file or a DICOM folder"


COMMAND = "screen"
"""The subcommand this module adds (see :attr:`lesionseg.registry.MethodSpec.verbs`)."""

def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``screen`` subcommand to the CLI's subparsers; returns its parser."""
    text = ("Screen one case for pancreatic tumours with S4C: segment the venous and/or arterial CT, count "
            "tumour and dilated-duct volume per phase, fuse the phases, write labels, pictures and a report.")
    p = sub.add_parser("screen", help="S4C pancreatic tumour screening of one case (venous and/or arterial CT)",
                       description=text)
    p.add_argument("--venous", type=Path, help=PHASE_HELP.format("venous"))
    p.add_argument("--arterial", type=Path, help=PHASE_HELP.format("arterial"))
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="report folder (written as a whole; must be absent or empty unless --overwrite)")
    p.add_argument("--weights", type=Path, help="s4c model folder (default: $LESIONSEG_WEIGHTS, then built-in)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the network runs (default: auto = cuda if available)")
    p.add_argument("--stride", type=int, default=None,
                   help="sliding-window stride in working voxels (default: the model's; the paper uses 20)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty report folder")
    p.add_argument("--output-format", choices=("nifti", "dicom-seg"), default="nifti",
                   help="dicom-seg: also write <phase>_seg.dcm, a DICOM SEG referencing the phase's DICOM series "
                        "(each phase must be a DICOM folder)")
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg screen``; returns the exit status."""
    from ...io import read_image
    from ...registry import build
    from .screen import PHASES, check_output_folder, screen_case, verdict_paragraph
    from .segmenter import S4COptions

    paths = {"venous": args.venous, "arterial": args.arterial}
    given = {phase: paths[phase] for phase in PHASES if paths[phase] is not None}
    if not given:
        raise InputError("give --venous and/or --arterial (one CT per phase)")
    check_output_folder(args.output, args.overwrite, list(given.values()))
    dicom_seg = None
    if getattr(args, "output_format", "nifti") == "dicom-seg":
        from ...dicomseg import check_source

        dicom_seg = {phase: str(check_source(path, f"the {phase} phase")) for phase, path in given.items()}
    seg = build("s4c", weights=args.weights, device=args.device, options=S4COptions(stride=args.stride))
    images = {}
    for phase, path in given.items():
        progress.emit_line(0.0, f"reading the {phase} phase")
        images[phase] = read_image(path)
    report = screen_case(images, seg, args.output, overwrite=args.overwrite,
                         inputs={phase: str(Path(path).resolve()) for phase, path in given.items()},
                         dicom_seg=dicom_seg)
    print(verdict_paragraph(report))
    print(f"report: {args.output / 'report.json'}")
    return 0
