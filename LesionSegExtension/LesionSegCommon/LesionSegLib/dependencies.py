"""Which Python packages LesionSeg needs in Slicer, and installing them only when the user says yes.

Slicer already ships numpy, scipy and SimpleITK; LesionSeg adds the packages in :data:`PACKAGES`:

* torch through the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which picks the
  CUDA or CPU build for this machine; capped below 2.14 like the backend;
* scikit-image, opencv-python-headless, pydicom, tqdm and matplotlib from PyPI, with numpy held at the version
  Slicer already imported (a pip constraint) and OpenCV kept on releases that accept it (:func:`pip_requirements`);
* pydensecrf2 (DenseCRF) is *optional*: it has almost no wheels and builds from source (a C++ compiler) on most
  platforms, so a failed build never blocks a panel; it is checked only where a CRF runs (:func:`crf_available`),
  and those methods run without it or refuse with a clear message;
* the backend ``lesionseg`` itself, from the source folder shipped inside the extension
  (``pip install --no-deps``, from a temporary copy); it counts as missing when the installed version differs
  from the shipped ``pyproject.toml`` (an updated extension reinstalls it).

Nothing is installed at import, at startup or from a worker thread; :func:`ensure_installed` asks first
(one dialog listing every package), never installs in testing mode, and asks for a restart when an install
replaced a package that was already imported (:func:`replaced_imported`). The installing itself is
:class:`LesionSegLib.installer.SlicerInstaller` (progress dialog, Cancel).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import logging
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Protocol, Sequence

logger = logging.getLogger(__name__)

TORCH_VERSION_REQUIREMENT = "<2.14"
"""Same cap as the backend's pyproject (newer torch releases pull a different CUDA stack)."""

OPENCV_NUMPY1_CAP = "<4.12"
"""OpenCV cap while numpy is 1.x (Slicer 5.8 ships numpy 1.26.4). opencv-python(-headless) 4.12.0.88 requires
``numpy>=2,<2.3`` on Python >= 3.9 and 4.13.0.90 ``numpy>=2``; 4.10.0.84 and 4.11.0.86 are built against numpy 2
and declare only lower bounds, so they accept both (opencv-python issues #1122, #1135, #1165; PR #1002)."""

FindSpec = Callable[[str], object]
VersionOf = Callable[[str], Optional[str]]


@dataclass(frozen=True)
class Package:
    """A needed package: its import name, what to install, how (``"torch"``, ``"pip"``, ``"backend"``), and
    whether a panel can work without it (``optional``: only some steps use it, see ``purpose``)."""

    import_name: str
    requirement: str
    via: str
    optional: bool = False
    purpose: str = ""


PACKAGES = (
    Package("torch", f"torch{TORCH_VERSION_REQUIREMENT}", "torch"),
    Package("skimage", "scikit-image>=0.21", "pip"),
    Package("cv2", "opencv-python-headless>=4.8", "pip"),
    Package("pydensecrf", "pydensecrf2>=1.1", "pip", optional=True,
            purpose="DenseCRF refinement (classical-box, recist-coseg, the Lesion GrabCut/CRF effect)"),
    Package("pydicom", "pydicom>=2.4", "pip"),
    Package("tqdm", "tqdm>=4.60", "pip"),
    Package("matplotlib", "matplotlib>=3.7", "pip"),
    Package("lesionseg", "lesionseg (backend shipped with the extension)", "backend"),
)

BACKEND_FOLDER_NAMES = ("LesionSegBackend", "ModelBackend")
"""Where the backend source sits: ``LesionSegBackend`` beside the built/installed scripted modules
(see the top-level CMakeLists.txt), ``ModelBackend`` at the root of a source checkout."""

BACKEND_DISTRIBUTION = "lesionseg"


class DependencyError(RuntimeError):
    """Packages are missing and were not (or could not be) installed, or Slicer must restart first."""


class Installer(Protocol):
    """The three ways a package gets installed (the Slicer implementation is
    :class:`LesionSegLib.installer.SlicerInstaller`)."""

    def install_torch(self, version_requirement: str) -> None: ...

    def pip_install(self, requirements: Sequence[str], constraints: Sequence[str] = ()) -> None: ...

    def pip_install_no_deps(self, folder: Path) -> None: ...


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of a distribution (``None``: not installed, or importable without metadata)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


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


def shipped_backend_version(folder: Optional[Path]) -> Optional[str]:
    """``version`` of the ``[project]`` table of ``folder/pyproject.toml`` (``None`` without one)."""
    if folder is None or not (Path(folder) / "pyproject.toml").is_file():
        return None
    text = (Path(folder) / "pyproject.toml").read_text(encoding="utf-8")
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    found = re.search(r'^version\s*=\s*["\']([^"\']+)["\']', project.group(1), re.MULTILINE) if project else None
    return found.group(1) if found else None


def editable_install(distribution: str) -> bool:
    """True when the distribution is an editable (development) install (``pip install -e``: PEP 610
    ``direct_url.json`` with ``dir_info.editable``); its code is the source folder itself."""
    try:
        text = importlib.metadata.distribution(distribution).read_text("direct_url.json") or "{}"
    except importlib.metadata.PackageNotFoundError:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable", False))
    except ValueError:
        return False


def backend_outdated(version_of: VersionOf = installed_version, folder: Optional[Path] = None,
                     editable: Optional[Callable[[str], bool]] = None) -> Optional[str]:
    """Why the installed backend must be reinstalled (``"0.1.0 installed, 0.2.0 shipped"``), or ``None``.

    ``None`` as well when either version is unknown (no shipped folder; a backend importable from a source folder
    without package metadata) or the backend is an editable install (a developer's checkout: its metadata keeps the
    version it was installed with, and reinstalling would replace the checkout with a copy).
    """
    installed = version_of(BACKEND_DISTRIBUTION)
    if installed is not None and (editable or editable_install)(BACKEND_DISTRIBUTION):
        return None
    shipped = shipped_backend_version(folder if folder is not None else backend_source_dir())
    if installed is None or shipped is None or installed == shipped:
        return None
    return f"{installed} installed, {shipped} shipped"


def missing_packages(find_spec: FindSpec = importlib.util.find_spec, optional: bool = False,
                     version_of: VersionOf = installed_version) -> list[Package]:
    """The packages of :data:`PACKAGES` that cannot be imported (nothing is imported to find out), the backend
    when its installed version is not the shipped one, and with ``optional`` the optional packages too."""
    importlib.invalidate_caches()
    found = []
    for pkg in PACKAGES:
        if pkg.optional and not optional:
            continue
        if find_spec(pkg.import_name) is None:
            found.append(pkg)
        elif pkg.via == "backend" and backend_outdated(version_of):
            logger.info("the installed backend is outdated: %s", backend_outdated(version_of))
            found.append(pkg)
    return found


def crf_available(find_spec: FindSpec = importlib.util.find_spec) -> bool:
    """True when DenseCRF (pydensecrf2) can be imported (nothing is imported to find out)."""
    return find_spec("pydensecrf") is not None


def pip_requirements(packages: Sequence[Package], numpy_version: Optional[str]) -> list[str]:
    """The pip requirements of ``packages`` (``via == "pip"``), OpenCV capped by :data:`OPENCV_NUMPY1_CAP` when
    the installed numpy is 1.x (or older)."""
    found = []
    for pkg in packages:
        if pkg.via != "pip":
            continue
        requirement = pkg.requirement
        if pkg.import_name == "cv2" and numpy_version and int(numpy_version.split(".")[0]) < 2:
            requirement += "," + OPENCV_NUMPY1_CAP
        found.append(requirement)
    return found


def pip_constraints(numpy_version: Optional[str]) -> list[str]:
    """pip constraints: numpy stays at the installed version (Slicer imported it; replacing it breaks the session)."""
    return [f"numpy=={numpy_version}"] if numpy_version else []


def install_summary(missing: Sequence[Package]) -> str:
    """The text of the confirmation dialog: every package, and how it will be installed."""
    how = {"torch": "via the PyTorch extension (CUDA build when a GPU is present)",
           "pip": "from PyPI", "backend": "from the folder shipped with the extension"}
    lines = ["LesionSeg needs these Python packages, which are not installed (or are outdated) in Slicer:", ""]
    lines += [f"  - {pkg.requirement}  ({how[pkg.via]})" for pkg in missing if not pkg.optional]
    extras = [pkg for pkg in missing if pkg.optional]
    if extras:
        lines += ["", "Optional (skipped with a warning if it cannot be built on this computer):"]
        lines += [f"  - {pkg.requirement}  ({how[pkg.via]}; {pkg.purpose})" for pkg in extras]
    lines += ["", "Install them now? This downloads several hundred MB and can take a few minutes.",
              "Slicer may ask to restart afterwards."]
    return "\n".join(lines)


def require(find_spec: FindSpec = importlib.util.find_spec, version_of: VersionOf = installed_version) -> None:
    """Raise :class:`DependencyError` naming the missing (or outdated) required packages (never installs)."""
    missing = missing_packages(find_spec, version_of=version_of)
    if missing:
        raise DependencyError(
            "LesionSeg needs Python packages that are not installed (or are outdated): "
            + ", ".join(pkg.requirement for pkg in missing)
            + ". Install them from a LesionSeg panel, or run LesionSegLib.dependencies.ensure_installed() "
              "in the Python console."
        )


Snapshot = Mapping[str, tuple[str, tuple[str, ...]]]
"""``{distribution name (lower case, '-'): (version, top-level import names)}``."""


def installed_distributions() -> dict[str, tuple[str, tuple[str, ...]]]:
    """A :data:`Snapshot` of every installed distribution (``top_level.txt``, else the first part of its files)."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        text = dist.read_text("top_level.txt")
        if text:
            tops = {line.strip() for line in text.splitlines() if line.strip()}
        else:
            tops = {str(f.parts[0]).split(".")[0] for f in (dist.files or ()) if f.parts
                    and not str(f.parts[0]).endswith((".dist-info", ".data", ".egg-info", ".pth"))
                    and f.parts[0] not in ("..", "__pycache__")}
        found[re.sub(r"[-_.]+", "-", name).lower()] = (dist.version, tuple(sorted(tops)))
    return found


def replaced_imported(before: Snapshot, after: Snapshot, modules: Mapping[str, object]) -> list[str]:
    """``"numpy 1.26.4 -> 2.0.2"`` for each distribution an install changed (or removed) while one of its
    top-level modules was imported (those need a restart of Slicer)."""
    found = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is not None and new is not None and old[0] == new[0]:
            continue
        tops = (old or new)[1] + ((new or old)[1])
        if any(top in modules for top in tops):
            found.append(f"{name} {old[0] if old else '(new)'} -> {new[0] if new else 'removed'}")
    return found


def ensure_installed(installer: Optional[Installer] = None, ask: Optional[Callable[[str], bool]] = None,
                     testing: Optional[bool] = None, find_spec: FindSpec = importlib.util.find_spec,
                     optional: Sequence[str] = (), version_of: VersionOf = installed_version,
                     snapshot: Callable[[], Snapshot] = installed_distributions,
                     restart: Optional[Callable[[list[str]], None]] = None,
                     modules: Optional[Mapping[str, object]] = None) -> list[Package]:
    """Install what is missing after the user agrees; returns the packages that were installed.

    Args:
        installer: does the installing (default :class:`LesionSegLib.installer.SlicerInstaller`).
        ask: shows the question and returns the answer (default: Slicer's OK/Cancel dialog).
        testing: True in Slicer's testing mode (default: ``slicer.app.testingEnabled()``); nothing is
            installed then and missing required packages raise.
        find_spec, version_of: how importability and installed versions are checked.
        optional: import names of optional packages wanted now (e.g. ``["pydensecrf"]``); when a required
            package is missing, every missing optional package is offered in the same dialog anyway. Optional
            packages that fail to install only log a warning.
        snapshot, modules: the installed distributions (before and after) and the imported modules
            (``sys.modules``), to find packages replaced while in use.
        restart: called with those replacements (default: ask to restart Slicer, else raise).

    Raises:
        DependencyError: called from a worker thread, in testing mode with required packages missing, declined
            by the user, the backend folder is not found, required packages are still missing afterwards, or an
            imported package was replaced and Slicer was not restarted.
    """
    required = missing_packages(find_spec, version_of=version_of)
    extras = [pkg for pkg in PACKAGES if pkg.optional and find_spec(pkg.import_name) is None
              and (required or pkg.import_name in optional)]
    if not required and not extras:
        return []
    if threading.current_thread() is not threading.main_thread():
        raise DependencyError("packages can only be installed from Slicer's main thread")
    if testing is None:
        import slicer

        testing = bool(slicer.app.testingEnabled())
    if testing:
        require(find_spec, version_of)
        return []
    ask = ask or _ask_in_slicer
    if not ask(install_summary(required + extras)):
        if required:
            raise DependencyError("installation of the required Python packages was declined; "
                                  + ", ".join(pkg.requirement for pkg in required) + " are still missing")
        return []
    backend = None
    if any(pkg.via == "backend" for pkg in required):
        backend = backend_source_dir()
        if backend is None:
            raise DependencyError("the LesionSeg backend folder was not found inside the extension; "
                                  "reinstall the extension")
    if installer is None:
        from .installer import SlicerInstaller

        installer = SlicerInstaller()
    before = snapshot()
    numpy = version_of("numpy")
    if any(pkg.via == "torch" for pkg in required):
        installer.install_torch(TORCH_VERSION_REQUIREMENT)
    if pip_requirements(required, numpy):
        installer.pip_install(pip_requirements(required, numpy), pip_constraints(numpy))
    for pkg in extras:
        try:
            installer.pip_install(pip_requirements([pkg], numpy), pip_constraints(numpy))
        except Exception as exc:  # optional: the methods using it run without it or say why they cannot
            logger.warning("optional package %s was not installed (%s); %s runs without it", pkg.requirement,
                           exc, pkg.purpose)
    if backend is not None:
        installer.pip_install_no_deps(backend)
    still = missing_packages(find_spec, version_of=version_of)
    if still:
        raise DependencyError("installation finished but these packages still cannot be imported (or are "
                              "outdated): " + ", ".join(pkg.requirement for pkg in still) + " (restart Slicer and "
                              "retry)")
    replaced = replaced_imported(before, snapshot(), sys.modules if modules is None else modules)
    if replaced:
        (restart or _offer_restart)(replaced)
    installed = [pkg for pkg in required + extras if find_spec(pkg.import_name) is not None]
    logger.info("installed: %s", ", ".join(pkg.requirement for pkg in installed))
    return installed


def _ask_in_slicer(text: str) -> bool:
    import slicer

    return bool(slicer.util.confirmOkCancelDisplay(text, windowTitle="LesionSeg: install Python packages?"))


def _offer_restart(replaced: list[str]) -> None:
    """Ask to restart Slicer now; raise :class:`DependencyError` when the user wants to carry on."""
    import slicer

    text = ("The installation replaced packages that this Slicer session had already imported:\n\n  "
            + "\n  ".join(replaced) + "\n\nSlicer must restart before LesionSeg (or another extension using them) "
            "can work reliably. Restart now?")
    if slicer.util.confirmOkCancelDisplay(text, windowTitle="LesionSeg: restart Slicer"):
        slicer.util.restart()
    raise DependencyError("restart Slicer: the installation replaced packages that were in use ("
                          + ", ".join(replaced) + ")")
