"""The ``lesionseg`` command line: one entry point, one subcommand per job.

``methods``, ``predict METHOD``, ``train METHOD``, ``evaluate`` (``PRED GT`` or ``METHOD --data --model``),
``data import|synthetic|check``, ``demo``, and the verbs methods declare in their spec (``refine``, ``screen``,
``suv``, ``prior``). The flags of ``predict``, ``train`` and ``evaluate`` come from each method's typed settings
(:mod:`lesionseg.options`), so they are named alike everywhere. Heavy imports (torch, the methods) happen
only for the command that needs them. Errors caused by the input print one line ``error: ...`` on stderr
and exit with status 2; unexpected failures exit with status 1 (``--debug`` shows the traceback). Outputs keep
the input geometry and never replace existing files without ``--overwrite``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from .. import progress
from ..errors import InputError, LesionSegError

log = logging.getLogger("lesionseg")
CORE = ("methods", "predict", "train", "evaluate", "data", "demo", "batch", "serve")
"""Commands of the CLI itself; any other word is a verb some method declares."""
COMMAND_MODULES = {"predict": "predict", "train": "train", "evaluate": "evaluate", "data": "data", "batch": "batch",
                   "serve": "serve"}
"""Commands with a module in this package (``HELP``, ``add_parser(sub, argv)``, ``run(args)``), imported when used."""


def _command_module(name: str):
    """The module of command ``name`` (None while it does not exist in this installation)."""
    import importlib

    try:
        return importlib.import_module(f"{__name__}.{COMMAND_MODULES[name]}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{COMMAND_MODULES[name]}":
            return None
        raise


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one :class:`InputError` line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


def add_common(parser: argparse.ArgumentParser, overwrite_help: str = "replace existing output files") -> None:
    """``--device`` and ``--overwrite``, alike on every command that runs a model and writes."""
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where networks run (default: auto = cuda if available)")
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)


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


def _verbs() -> list:
    """The verb modules every registered method declares (imports the methods)."""
    from ..registry import list_specs, load_object

    modules = []
    for spec in list_specs():
        for reference in spec.verbs:
            module = load_object(reference)
            if module not in modules:
                modules.append(module)
    return modules


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser; a command's own sub-parsers (with every method's flags) are built only when ``argv``
    asks for that command."""
    parser = _Parser(prog="lesionseg", description=__doc__.splitlines()[0])
    parser.add_argument("--progress", choices=progress.MODES, default="bar",
                        help="progress display: tqdm bar, PROGRESS lines for the Slicer runner, or none")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("methods", help="list registered methods, their prompts and whether weights are found")
    wanted = _first_command(argv)
    for name in COMMAND_MODULES:
        module = _command_module(name)
        if module is None:
            continue
        if wanted == name:
            module.add_parser(sub, argv)
        else:
            sub.add_parser(name, help=module.HELP, add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    demo = sub.add_parser("demo", help="run every available method on generated phantoms; write PNG + report")
    demo.add_argument("-o", "--output", type=Path, default=Path("lesionseg-demo"),
                      help="output folder (replaced with --overwrite only when it is an earlier demo output)")
    demo.add_argument("--seed", type=int, default=0)
    add_common(demo)
    if wanted not in CORE:
        for module in _verbs():
            module.add_parser(sub)
    return parser


def cmd_methods(args: argparse.Namespace) -> int:
    from ..modelfolder import find_model_folder
    from ..registry import list_specs

    rows = []
    for spec in list_specs():
        try:
            folder = find_model_folder(spec.name)
            weights = str(folder.path) if folder else ("not needed" if not spec.needs_weights else "MISSING")
        except LesionSegError as exc:
            weights = f"INVALID ({exc})"
        jobs = "+".join(j for j, ref in (("train", spec.training), ("evaluate", True), ("synthetic", spec.synthetic))
                        if ref)
        rows.append((spec.name, spec.prompt, "+".join(spec.inputs), weights, jobs, spec.summary))
    head = ("method", "prompt", "inputs", "weights", "jobs")
    widths = [max(len(r[i]) for r in rows + [head + ("",)]) for i in range(5)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  summary")
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    report = run_demo(args.output, seed=args.seed, device=args.device, overwrite=args.overwrite,
                      command=args.command_line)
    print(f"demo written to {args.output}: {report['montage']}, {report['report_md']}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    commands = {"methods": cmd_methods, "demo": cmd_demo}
    if args.command in commands:
        return commands[args.command](args)
    if args.command in COMMAND_MODULES and _command_module(args.command) is not None:
        return _command_module(args.command).run(args)
    for module in _verbs():
        if getattr(module, "COMMAND", None) == args.command or args.command in getattr(module, "COMMANDS", ()):
            return module.run(args)
    raise InputError(f"unknown command {args.command!r}")


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
    output that cannot be written), 3 ``batch`` finished but some cases failed (listed in its summary), 130
    interrupted (Ctrl-C), 143/129 terminated (SIGTERM/SIGHUP), 141 when the reader of the output went away."""
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
        args.command_line = "lesionseg " + " ".join(argv)  # recorded in model cards and output markers
        progress.set_mode(args.progress)
        logging.basicConfig(level=log_level(args), format="%(levelname)s %(name)s: %(message)s")
        warnings.showwarning = _show_warning
        return _dispatch(args)
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
