"""``lesionseg suv PET -o suv.nii.gz``: a PET converted to SUVbw; prints the factor and every value used.

PET is a DICOM series folder (SUV from its tags; ``--series UID`` when the folder holds several, which the
error lists) or a NIfTI/NRRD/MHA file with ``--pet-units suv|bqml`` (bqml needs ``--weight-kg`` and the
dose). The output keeps the PET grid (float32 SUVbw). Wire-in (in ``lesionseg.cli``; this module imports
nothing heavy, so the parser stays light)::

    from . import cli_suv                      # in build_parser, next to cli_refine / cli_screen
    cli_suv.add_parser(sub)

    def cmd_suv(args): ...                     # lazy import + cli_suv.run(args); COMMANDS["suv"] = cmd_suv

``lesionseg predict autopet-l2snet PET CT`` takes the same PET flags (``--pet-units`` ... ``--decayed-dose-bq``,
with ``--pet-series`` for the PET's series) from its typed options,
:class:`lesionseg.methods.autopet.segmenter.L2SOptions`; keep the two in step.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

from . import progress


COMMAND = "suv"
"""The subcommand this module adds (see :attr:`lesionseg.registry.MethodSpec.verbs`)."""

def add_pet_arguments(parser: argparse.ArgumentParser, series_flag: str = "--series") -> None:
    """Add the PET unit options (``--pet-units``, weight, dose, decay) and a series choice to ``parser``."""
    parser.add_argument("--pet-units", choices=("auto", "suv", "bqml"), default="auto",
                        help="what a NIfTI/NRRD/MHA PET holds: suv, or bqml (needs --weight-kg and a dose); "
                             "auto = DICOM only (SUV from the tags); never guessed")
    parser.add_argument("--weight-kg", type=float, help="patient weight in kg (bqml input)")
    parser.add_argument("--dose-bq", type=float, help="injected dose in Bq at injection (bqml input)")
    parser.add_argument("--decay-s", type=float,
                        help="seconds from injection to scan start (0 when decay-corrected to injection)")
    parser.add_argument("--half-life-s", type=float, help="radionuclide half-life in s (18F: 6586.2)")
    parser.add_argument("--decayed-dose-bq", type=float, help="dose decayed to the scan start, Bq (instead of "
                                                               "--dose-bq/--decay-s/--half-life-s)")
    parser.add_argument(series_flag, dest="pet_series", metavar="UID",
                        help="SeriesInstanceUID of the PET when its DICOM folder holds several series")


def read_pet_from_args(path: Path, args: argparse.Namespace):
    """:func:`lesionseg.pet.read_pet` with the options of :func:`add_pet_arguments`; returns the SUV image."""
    from .pet import read_pet

    return read_pet(path, units=args.pet_units, weight_kg=args.weight_kg, dose_bq=args.dose_bq,
                    decay_s=args.decay_s, half_life_s=args.half_life_s, decayed_dose_bq=args.decayed_dose_bq,
                    series_uid=args.pet_series)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``suv`` subcommand to the CLI's subparsers; returns its parser."""
    text = ("Convert a PET to SUVbw (body-weight SUV): from a DICOM series' tags (Units BQML, PatientWeight, "
            "injected dose, half-life, injection and series times), or from a Bq/mL file with the values given.")
    p = sub.add_parser("suv", help="convert a PET (DICOM folder, or Bq/mL file) to SUVbw", description=text)
    p.add_argument("pet", type=Path, help="PET DICOM series folder (or a NIfTI/NRRD/MHA file with --pet-units)")
    p.add_argument("-o", "--output", type=Path, required=True, help="SUVbw image to write (.nii.gz/.nrrd/.mha)")
    add_pet_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p


def summary_lines(info) -> list[str]:
    """Readable lines for a :class:`lesionseg.pet.SUVInfo` (None: the input was taken as SUV)."""
    if info is None:
        return ["input taken as SUVbw (--pet-units suv): factor 1"]

    def mbq(value: Optional[float]) -> str:
        return "n/a" if value is None else f"{value / 1e6:.4f} MBq"

    def num(value: Optional[float], unit: str) -> str:
        return "n/a" if value is None else f"{value:g} {unit}"

    lines = [f"SUVbw factor {info.factor:.6e} g/Bq (SUVbw per Bq/mL); Units {info.units}"]
    if info.series_uid:
        lines.append(f"series {info.series_uid}; DecayCorrection {info.decay_correction or 'n/a'}; "
                     f"CorrectedImage ATTN+DECY: {'yes' if info.corrected_image else 'no'}")
    if info.weight_kg is not None:
        lines += [f"PatientWeight {num(info.weight_kg, 'kg')}; RadionuclideTotalDose {mbq(info.injected_dose_bq)}; "
                  f"RadionuclideHalfLife {num(info.half_life_s, 's')}",
                  f"injection {info.injection_time or 'n/a'}; reference (scan start) {info.reference_time or 'n/a'}; "
                  f"decay {num(info.decay_seconds, 's')}; decayed dose {mbq(info.decayed_dose_bq)}"]
    return lines + [f"note: {note}" for note in info.notes]


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg suv``; returns the exit status."""
    from .io import WRITE_SUFFIXES, write_image
    from .outputs import check_output_file

    out: Path = args.output
    check_output_file(out, args.overwrite, [args.pet], WRITE_SUFFIXES, "SUV output")
    t0 = time.perf_counter()
    progress.emit_line(0.1, "reading PET")
    suv = read_pet_from_args(args.pet, args)
    for line in summary_lines(suv.meta.get("suv")):
        print(line)
    progress.emit_line(0.7, "writing SUV")
    write_image(suv, out, overwrite=args.overwrite, inputs=[args.pet])
    progress.emit_line(1.0, "done")
    k, j, i = suv.shape
    print(f"{out}: SUVbw {i}x{j}x{k} voxels, max {float(suv.array.max()):.3f}, "
          f"in {time.perf_counter() - t0:.2f} s")
    return 0
