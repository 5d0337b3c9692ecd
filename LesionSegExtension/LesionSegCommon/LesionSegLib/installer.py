"""Installs LesionSeg's packages into Slicer's Python, on the main thread, with a progress dialog and Cancel.

pip runs as a child process (``PythonSlicer -m pip install ...``) through
:class:`LesionSegLib.process.BackgroundProcess`; the main thread polls it, shows each line of pip's output in a
progress dialog and keeps the GUI painting (``slicer.app.processEvents``). Cancel kills pip. This replaces
``slicer.util.pip_install``, which up to Slicer 5.10 blocks for minutes with no progress (SLICER.md section 0);
``slicer.packaging.pip_ensure`` (5.12+) is not used so that every Slicer version behaves the same.

* torch comes from the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which chooses the
  CUDA or CPU build (it shows its own progress);
* constraints (numpy held at the imported version) are passed with ``-c`` in a temporary file;
* the backend is installed with ``--no-deps`` from a temporary copy of the shipped folder
  (:func:`copy_backend`), so pip never writes ``build/`` or ``*.egg-info`` into the (possibly read-only)
  extension folder.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .dependencies import DependencyError
from .process import BackgroundProcess, ProcessResult, python_executable

logger = logging.getLogger(__name__)

COPY_IGNORE = ("build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache")
"""What is left out of the temporary copy of the backend (pip's own outputs and caches)."""


def pip_command(args: Sequence[str], python: Optional[str] = None) -> list[str]:
    """``[python, -m, pip, *args, --disable-pip-version-check, --no-input]``."""
    return [python or python_executable(), "-m", "pip", *map(str, args), "--disable-pip-version-check", "--no-input"]


def copy_backend(folder: Path, destination: Path) -> Path:
    """Copy the backend source ``folder`` to ``destination/<folder name>`` without :data:`COPY_IGNORE`."""
    target = Path(destination) / Path(folder).name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    return target


def run_pip(args: Sequence[str], title: str, runner: Optional[Callable[[list[str], str], ProcessResult]] = None,
            ) -> ProcessResult:
    """Run ``pip args`` (``runner(command, title)``, default :func:`run_with_progress`).

    Raises:
        DependencyError: pip failed (its last lines in the message) or was cancelled.
    """
    result = (runner or run_with_progress)(pip_command(args), title)
    if result.cancelled:
        raise DependencyError("the installation was cancelled")
    if not result.ok:
        tail = "\n".join(result.output[-8:])
        raise DependencyError(f"pip failed ({result.message()}):\n{tail}")
    return result


def run_with_progress(command: list[str], title: str) -> ProcessResult:
    """Run ``command`` in the background; a progress dialog shows its latest line and its Cancel kills it."""
    import slicer

    dialog = slicer.util.createProgressDialog(labelText=title, windowTitle="LesionSeg: installing Python packages",
                                              maximum=0)
    runner = BackgroundProcess(command, on_log=lambda line: _show_line(dialog, title, line))

    def idle() -> None:
        slicer.app.processEvents()
        if dialog.wasCanceled:
            runner.cancel()

    try:
        return runner.start().wait(idle=idle)
    finally:
        dialog.close()


def _show_line(dialog: Any, title: str, line: str) -> None:
    logger.info("pip: %s", line)
    if line.strip():
        dialog.labelText = f"{title}\n{line.strip()[:100]}"


class SlicerInstaller:
    """Installs into Slicer's Python, on the main thread (see the module docstring).

    Args:
        runner: runs a command with progress (default :func:`run_with_progress`; tests inject a fake).
    """

    def __init__(self, runner: Optional[Callable[[list[str], str], ProcessResult]] = None) -> None:
        self.runner = runner

    def install_torch(self, version_requirement: str) -> None:
        try:
            import PyTorchUtils
        except ImportError as exc:
            raise DependencyError("torch is installed through the PyTorch extension: install 'PyTorch' from "
                                  "the Extensions Manager, restart Slicer and retry") from exc
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=version_requirement)
        if torch is None:
            raise DependencyError("the PyTorch extension did not install torch")

    def pip_install(self, requirements: Sequence[str], constraints: Sequence[str] = ()) -> None:
        with tempfile.TemporaryDirectory(prefix="LesionSegPip-") as folder:
            args = ["install", *requirements]
            if constraints:
                path = Path(folder) / "constraints.txt"
                path.write_text("\n".join(constraints) + "\n", encoding="utf-8")
                args += ["-c", str(path)]
            run_pip(args, "Installing " + ", ".join(requirements), self.runner)

    def pip_install_no_deps(self, folder: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="LesionSegBackend-") as temporary:
            copy = copy_backend(folder, Path(temporary))
            run_pip(["install", "--no-deps", "--upgrade", str(copy)], "Installing the LesionSeg backend",
                    self.runner)
