"""The ``lesionseg`` command line: one entry point, one subcommand per job.

Heavy imports (torch, the methods) happen inside the commands. Errors caused by the input print one line
``error: ...`` on stderr and exit with status 2; unexpected failures exit with status 1 (``--debug`` shows
the traceback). Outputs keep the input geometry and never replace existing files without ``--overwrite``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

from . import progress
from .errors import InputError, LesionSegError

log = logging.getLogger("lesionseg")
METHOD_COMMANDS = ("predict", "train")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one :class:`InputError` line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where networks run (default: auto = cuda if available)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _method_parsers(sub: argparse._SubParsersAction, command: str, help_text: str) -> None:
    """``lesionseg predict|train METHOD ...`` with each method's own options."""
    from .registry import list_methods

    cmd = sub.add_parser(command, help=help_text, description=help_text)
    methods = cmd.add_subparsers(dest="method", metavar="METHOD", required=True)
    for cls in list_methods():
        p = methods.add_parser(cls.name, help=cls.summary, description=cls.summary)
        _add_common(p)
        if command == "predict":
            p.add_argument("images", nargs=len(cls.inputs), metavar="IMAGE",
                           help=f"input image(s) in this order: {', '.join(cls.inputs)} (file or DICOM folder)")
            p.add_argument("-o", "--output", required=True, type=Path, help="output label image (.nii.gz/.nrrd/.mha)")
            p.add_argument("--weights", type=Path, help="model folder (default: $LESIONSEG_WEIGHTS, then built-in)")
            p.add_argument("--series", action="append", metavar="UID", default=[],
                           help="SeriesInstanceUID to read from a DICOM folder holding several series "
                                "(repeat for several input folders; each folder takes the one it holds)")
            if cls.prompt_kind == "box":
                grp = p.add_mutually_exclusive_group(required=True)
                grp.add_argument("--box", nargs=6, type=float, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                                 help="box corners in LPS mm")
                grp.add_argument("--box-ijk", nargs=6, type=int, metavar=("I0", "J0", "K0", "I1", "J1", "K1"),
                                 help="box corners as voxel indices (inclusive)")
            elif cls.prompt_kind == "recist":
                p.add_argument("--recist", nargs=6, type=float, required=True,
                               metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"), help="long-axis end points, LPS mm")
                p.add_argument("--recist-short", nargs=6, type=float, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                               help="short-axis end points, LPS mm")
            hook = getattr(cls, "add_predict_arguments", None)
        else:
            p.add_argument("--data", type=Path, required=True, help="training data folder")
            p.add_argument("-o", "--output", type=Path, required=True, help="model folder to write")
            p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
            hook = getattr(cls, "add_train_arguments", None)
        if hook is not None:
            hook(p)


def _first_command(argv: Sequence[str]) -> Optional[str]:
    """The subcommand word in ``argv``, skipping global options and the value of ``--progress``."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--progress":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser; method sub-parsers are built only when ``argv`` asks for predict/train."""
    parser = _Parser(prog="lesionseg", description=__doc__.splitlines()[0])
    parser.add_argument("--progress", choices=progress.MODES, default="bar",
                        help="progress display: tqdm bar, PROGRESS lines for the Slicer runner, or none")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("methods", help="list registered methods, their prompts and whether weights are found")
    wanted = _first_command(argv)
    for command, text in (("predict", "segment image(s) with a method"), ("train", "train a method's model")):
        if wanted == command:
            _method_parsers(sub, command, text)
        else:
            sub.add_parser(command, help=text, add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    ev = sub.add_parser("evaluate", help="compare a predicted label image with ground truth")
    ev.add_argument("prediction", type=Path)
    ev.add_argument("truth", type=Path)
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    demo = sub.add_parser("demo", help="run every available method on generated phantoms; write PNG + report")
    demo.add_argument("-o", "--output", type=Path, default=Path("lesionseg-demo"), help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    _add_common(demo)
    from .methods.recist import cli_refine

    cli_refine.add_parser(sub)
    from .methods.s4c import cli_screen

    cli_screen.add_parser(sub)
    from . import cli_suv

    cli_suv.add_parser(sub)
    from .methods.smalllesion import cli_prior

    cli_prior.add_parser(sub)
    return parser


def _prompt_from_args(args: argparse.Namespace, image):
    from .geometry import index_box_to_world
    from .prompts import Box, RecistLine

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


def _check_outputs(args: argparse.Namespace, inputs: list[Path]) -> None:
    """Check every output path of ``predict`` before any work: the label (``-o``) and the method's extra
    outputs (``--table``, ``--mip``): writable, not an input, not each other, not existing without
    ``--overwrite``."""
    from .io import WRITE_SUFFIXES
    from .outputs import check_output_file

    check_output_file(args.output, args.overwrite, inputs, WRITE_SUFFIXES, "output label")
    extras = [(flag, getattr(args, flag.strip("-"), None)) for flag in ("--table", "--mip")]
    seen = {args.output.absolute(): "-o"}
    for flag, path in extras:
        if path is None:
            continue
        if Path(path).absolute() in seen:
            raise InputError(f"{flag} {path} is also given as {seen[Path(path).absolute()]}; give each output its own file")
        seen[Path(path).absolute()] = flag
        check_output_file(path, args.overwrite, inputs, None, f"{flag} output")


def cmd_methods(args: argparse.Namespace) -> int:
    from .modelfolder import find_model_folder
    from .registry import list_methods

    rows = []
    for cls in list_methods():
        try:
            folder = find_model_folder(cls.name)
            weights = str(folder.path) if folder else ("not needed" if not cls.needs_weights else "MISSING")
        except LesionSegError as exc:
            weights = f"INVALID ({exc})"
        rows.append((cls.name, cls.prompt_kind, "+".join(cls.inputs), weights, cls.summary))
    widths = [max(len(r[i]) for r in rows + [("method", "prompt", "inputs", "weights", "")]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(("method", "prompt", "inputs", "weights"), widths)) + "  summary")
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .io import read_image, write_image
    from .outputs import publish_together
    from .registry import build, get_method

    inputs = [Path(p) for p in args.images]
    _check_outputs(args, inputs)
    t0 = time.perf_counter()
    seg = build(args.method, weights=args.weights, device=args.device)  # a broken model folder fails first
    if hasattr(seg, "apply_predict_args"):
        seg.apply_predict_args(args)
    reader = getattr(get_method(args.method), "read_inputs", None)  # e.g. PET in SUV with --pet-units
    images = (list(reader(args.images, args)) if reader is not None
              else [read_image(p, args.series or None) for p in args.images])
    prompt = _prompt_from_args(args, images[0])
    progress.emit_line(0.1, "loading image")
    seg.set_image(*images)
    progress.emit_line(0.5, "segmenting")
    label = seg.predict(prompt)
    with publish_together():  # the label and its extras (lesion table, MIP) appear together or not at all
        write_image(label, args.output, overwrite=args.overwrite, inputs=inputs)
        extras = seg.write_extras(args, label) if hasattr(seg, "write_extras") else []
    progress.emit_line(1.0, "done")
    voxels = int((label.array > 0).sum())
    print(f"{args.output}: {voxels} lesion voxels ({voxels * label.voxel_volume_ml:.2f} mL) "
          f"in {time.perf_counter() - t0:.2f} s" + "".join(f"; {p}" for p in extras))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .io import check_output_folder
    from .registry import get_method

    cls = get_method(args.method)
    if not hasattr(cls, "train"):
        raise InputError(f"method {args.method!r} has no training command")
    if not args.data.is_dir():
        raise InputError(f"training data folder {args.data} does not exist")
    check_output_folder(args.output, args.overwrite)  # before training, not after its minutes or hours
    args.command_line = "lesionseg " + " ".join(sys.argv[1:])
    folder = cls.train(args)
    print(f"model written to {folder.path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .image import check_same_grid
    from .io import read_image
    from .metrics import evaluate

    prediction, truth = read_image(args.prediction), read_image(args.truth)
    check_same_grid(prediction, truth, f"the prediction {args.prediction}", f"the ground truth {args.truth}")
    result = evaluate(prediction, truth)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            if value is None:
                print(f"{key:24s} n/a")
            elif not isinstance(value, (list, dict)):
                print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from .methods.recist import cli_refine

    return cli_refine.run(args)


def cmd_screen(args: argparse.Namespace) -> int:
    from .methods.s4c import cli_screen

    return cli_screen.run(args)


def cmd_suv(args: argparse.Namespace) -> int:
    from . import cli_suv

    return cli_suv.run(args)


def cmd_prior(args: argparse.Namespace) -> int:
    from .methods.smalllesion import cli_prior

    return cli_prior.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.output, seed=args.seed, device=args.device, overwrite=args.overwrite,
                      command="lesionseg " + " ".join(sys.argv[1:]))
    print(f"demo written to {args.output}: {report['montage']}, {report['report_md']}")
    return 0


COMMANDS = {"methods": cmd_methods, "predict": cmd_predict, "train": cmd_train,
            "evaluate": cmd_evaluate, "demo": cmd_demo, "refine": cmd_refine,
            "screen": cmd_screen, "suv": cmd_suv, "prior": cmd_prior}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(f"warning: {message}\n")


def log_level(args: argparse.Namespace) -> int:
    """INFO with ``--verbose``, and for ``train`` unless ``--progress none``: training runs for minutes to hours
    and its per-epoch log line (losses, validation score, elapsed time) is its progress report."""
    if args.verbose or (args.command == "train" and args.progress != "none"):
        return logging.INFO
    return logging.WARNING


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP, so that every ``finally`` and temporary cleanup runs
    as on Ctrl-C (Slicer's Cancel and batch schedulers send SIGTERM first)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


def _install_signal_handlers() -> dict:
    """SIGTERM/SIGHUP -> :class:`Terminated` (main thread only); returns the previous handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            sig = getattr(signal, name)
            previous[sig] = signal.signal(sig, _raise_terminated)
    return previous


def _quiet_stdout() -> None:
    """After a broken pipe (``lesionseg evaluate ... | head -1``): send further output to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status: 0 ok, 1 unexpected failure, 2 bad input (or weights, or an
    output that cannot be written), 130 interrupted (Ctrl-C), 143/129 terminated (SIGTERM/SIGHUP), 141 when
    the reader of the output went away (a closed pipe)."""
    import signal

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("LESIONSEG_DEBUG") == "1"
    previous = _install_signal_handlers()
    try:
        return _run(argv, debug)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(argv: list[str], debug: bool) -> int:
    import errno

    try:
        args = build_parser(argv).parse_args(argv)
        progress.set_mode(args.progress)
        logging.basicConfig(level=log_level(args), format="%(levelname)s %(name)s: %(message)s")
        warnings.showwarning = _show_warning
        return COMMANDS[args.command](args)
    except LesionSegError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Terminated as exc:
        sys.stderr.write(f"error: terminated (signal {exc.signum})\n")
        return 128 + exc.signum
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            sys.stderr.write(f"error: no space left on device{f' ({exc.filename})' if exc.filename else ''}; "
                             "nothing was written\n")
            return 2
        if debug:
            raise
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)\n")
        return 1
    except Exception as exc:  # an unexpected failure still gets one line unless --debug
        if debug:
            raise
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
