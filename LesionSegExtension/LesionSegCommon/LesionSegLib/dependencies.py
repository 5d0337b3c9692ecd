"""Which Python packages LesionSeg needs in Slicer, and installing them only when the user says yes.

Slicer already ships numpy, scipy and SimpleITK; LesionSeg adds the packages in :data:`PACKAGES`:

* torch through the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which picks the
  CUDA or CPU build for this machine; capped below 2.14 like the backend;
* scikit-image, opencv-python-headless, pydensecrf2, pydicom and tqdm from PyPI, with
  ``slicer.packaging.pip_ensure`` on Slicer 5.12+ and ``slicer.util.pip_install`` before;
* the backend ``lesionseg`` itself, from the source folder shipped inside the extension
  (``pip install --no-deps <folder>``: its dependencies are the packages above, installed first).

Nothing is installed at import, at startup or from a worker thread; :func:`ensure_installed` asks first
(one dialog listing every package) and never installs in testing mode.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

logger = logging.getLogger(__name__)

TORCH_VERSION_REQUIREMENT = "<2.14"
"""Same cap as the backend's pyproject (newer torch releases pull a different CUDA stack)."""


@dataclass(frozen=True)
class Package:
    """A needed package: its import name, what to install, and how (``"torch"``, ``"pip"``, ``"backend"``)."""

    import_name: str
    requirement: str
    via: str


PACKAGES = (
    Package("torch", f"torch{TORCH_VERSION_REQUIREMENT}", "torch"),
    Package("skimage", "scikit-image>=0.21", "pip"),
    Package("cv2", "opencv-python-headless>=4.8", "pip"),
    Package("pydensecrf", "pydensecrf2>=1.1", "pip"),
    Package("pydicom", "pydicom>=2.4", "pip"),
    Package("tqdm", "tqdm>=4.60", "pip"),
    Package("matplotlib", "matplotlib>=3.7", "pip"),
    Package("lesionseg", "lesionseg (backend shipped with the extension)", "backend"),
)

BACKEND_FOLDER_NAMES = ("LesionSegBackend", "ModelBackend")
"""Where the backend source sits: ``LesionSegBackend`` beside the built/installed scripted modules
(see the top-level CMakeLists.txt), ``ModelBackend`` at the root of a source checkout."""


class DependencyError(RuntimeError):
    """Packages are missing and were not (or could not be) installed."""


class Installer(Protocol):
    """The three ways a package gets installed (the Slicer implementation is :class:`SlicerInstaller`)."""

    def install_torch(self, version_requirement: str) -> None: ...

    def pip_install(self, requirements: Sequence[str]) -> None: ...

    def pip_install_no_deps(self, folder: Path) -> None: ...


def missing_packages(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[Package]:
    """The packages of :data:`PACKAGES` that cannot be imported (nothing is imported to find out)."""
    importlib.invalidate_caches()
    return [pkg for pkg in PACKAGES if find_spec(pkg.import_name) is None]


def backend_source_dir(module_file: Optional[Path] = None) -> Optional[Path]:
    """The backend source folder (holding ``pyproject.toml``) shipped with this extension, or ``None``.

    Looked for beside the ``LesionSegLib`` folder (built or installed extension), then up to two folders
    higher (source checkout: ``<repo>/ModelBackend``). ``module_file`` stands for this file in tests.
    """
    here = Path(module_file or __file__).resolve().parent
    for folder in list(here.parents)[:3]:
        for name in BACKEND_FOLDER_NAMES:
            candidate = folder / name
            if (candidate / "pyproject.toml").is_file():
                return candidate
    return None


def install_summary(missing: Sequence[Package]) -> str:
    """The text of the confirmation dialog: every package, and how it will be installed."""
    how = {"torch": "via the PyTorch extension (CUDA build when a GPU is present)",
           "pip": "from PyPI", "backend": "from the folder shipped with the extension"}
    lines = ["LesionSeg needs these Python packages, which are not installed in Slicer yet:", ""]
    lines += [f"  - {pkg.requirement}  ({how[pkg.via]})" for pkg in missing]
    lines += ["", "Install them now? This downloads several hundred MB and can take a few minutes.",
              "Slicer may ask to restart afterwards."]
    return "\n".join(lines)


def require(find_spec: Callable[[str], object] = importlib.util.find_spec) -> None:
    """Raise :class:`DependencyError` naming the missing packages (never installs)."""
    missing = missing_packages(find_spec)
    if missing:
        raise DependencyError(
            "LesionSeg needs Python packages that are not installed: "
            + ", ".join(pkg.requirement for pkg in missing)
            + ". Install them from a LesionSeg panel, or run LesionSegLib.dependencies.ensure_installed() "
              "in the Python console."
        )


def ensure_installed(installer: Optional[Installer] = None, ask: Optional[Callable[[str], bool]] = None,
                     testing: Optional[bool] = None,
                     find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[Package]:
    """Install what is missing after the user agrees; returns the packages that were installed.

    Args:
        installer: does the installing (default :class:`SlicerInstaller`).
        ask: shows the question and returns the answer (default: Slicer's OK/Cancel dialog).
        testing: True in Slicer's testing mode (default: ``slicer.app.testingEnabled()``); nothing is
            installed then and missing packages raise.
        find_spec: how importability is checked.

    Raises:
        DependencyError: called from a worker thread, in testing mode with packages missing, declined by
            the user, the backend folder is not found, or packages are still missing afterwards.
    """
    missing = missing_packages(find_spec)
    if not missing:
        return []
    if threading.current_thread() is not threading.main_thread():
        raise DependencyError("packages can only be installed from Slicer's main thread")
    if testing is None:
        import slicer

        testing = bool(slicer.app.testingEnabled())
    if testing:
        require(find_spec)
    ask = ask or _ask_in_slicer
    if not ask(install_summary(missing)):
        raise DependencyError("installation of the required Python packages was declined; "
                              + ", ".join(pkg.requirement for pkg in missing) + " are still missing")
    backend = None
    if any(pkg.via == "backend" for pkg in missing):
        backend = backend_source_dir()
        if backend is None:
            raise DependencyError("the LesionSeg backend folder was not found inside the extension; "
                                  "reinstall the extension")
    installer = installer or SlicerInstaller()
    if any(pkg.via == "torch" for pkg in missing):
        installer.install_torch(TORCH_VERSION_REQUIREMENT)
    pip_requirements = [pkg.requirement for pkg in missing if pkg.via == "pip"]
    if pip_requirements:
        installer.pip_install(pip_requirements)
    if backend is not None:
        installer.pip_install_no_deps(backend)
    still = missing_packages(find_spec)
    if still:
        raise DependencyError("installation finished but these packages still cannot be imported: "
                              + ", ".join(pkg.requirement for pkg in still) + " (restart Slicer and retry)")
    logger.info("installed: %s", ", ".join(pkg.requirement for pkg in missing))
    return missing


def _ask_in_slicer(text: str) -> bool:
    import slicer

    return bool(slicer.util.confirmOkCancelDisplay(text, windowTitle="LesionSeg: install Python packages?"))


class SlicerInstaller:
    """Installs into Slicer's Python, on the main thread (see the module docstring)."""

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

    def pip_install(self, requirements: Sequence[str]) -> None:
        import slicer

        try:
            import slicer.packaging as packaging
        except ImportError:
            packaging = None
        if packaging is not None:
            packaging.pip_ensure(list(requirements), prompt_install=False, requester="LesionSeg")
        else:
            slicer.util.pip_install(list(requirements))

    def pip_install_no_deps(self, folder: Path) -> None:
        import slicer

        slicer.util.pip_install(["--no-deps", str(folder)])
