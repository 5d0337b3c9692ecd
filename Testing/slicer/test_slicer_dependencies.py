"""LesionSegLib.dependencies and .installer with fakes: ask first, install only what is missing, never in tests;
numpy held at Slicer's version, OpenCV capped for numpy 1.x, DenseCRF optional, the backend reinstalled when its
version changed (from a temporary copy), and a restart asked for when an imported package was replaced."""
from __future__ import annotations

import re
import sys
import threading
import types
from pathlib import Path

import pytest
from conftest import REPO
from LesionSegLib import dependencies as deps
from LesionSegLib import installer as inst
from LesionSegLib.process import ProcessResult

SLICER_5_8_NUMPY = "1.26.4"
SLICER_5_10_NUMPY = "2.0.2"
SHIPPED = deps.shipped_backend_version(REPO / "ModelBackend")


class FakeEnvironment:
    """``find_spec`` over a set of installed import names, versions, and an installer that adds to them."""

    def __init__(self, missing: set[str], numpy: str = SLICER_5_8_NUMPY, backend: str = SHIPPED) -> None:
        self.installed = {p.import_name for p in deps.PACKAGES} - missing
        self.versions = {"numpy": numpy, "lesionseg": backend if "lesionseg" not in missing else None}
        self.calls: list[tuple] = []
        self.asked: list[str] = []
        self.fail_pip: set[str] = set()

    def find_spec(self, name: str):
        return object() if name in self.installed else None

    def version_of(self, name: str):
        return self.versions.get(name)

    def install_torch(self, version_requirement: str) -> None:
        self.calls.append(("torch", version_requirement))
        self.installed.add("torch")

    def pip_install(self, requirements, constraints=()) -> None:
        self.calls.append(("pip", tuple(requirements), tuple(constraints)))
        for pkg in deps.PACKAGES:
            if any(r.startswith(pkg.requirement.split(">")[0] + ">") for r in requirements):
                if pkg.import_name in self.fail_pip:
                    raise deps.DependencyError(f"pip failed: could not build {pkg.requirement}")
                self.installed.add(pkg.import_name)

    def pip_install_no_deps(self, folder: Path) -> None:
        self.calls.append(("backend", folder))
        self.installed.add("lesionseg")
        self.versions["lesionseg"] = SHIPPED

    def ask(self, text: str) -> bool:
        self.asked.append(text)
        return True

    def ensure(self, **kwargs):
        kwargs.setdefault("snapshot", lambda: {})
        return deps.ensure_installed(self, kwargs.pop("ask", self.ask), testing=kwargs.pop("testing", False),
                                     find_spec=self.find_spec, version_of=self.version_of, **kwargs)


def test_nothing_missing_asks_nothing():
    env = FakeEnvironment(set())
    assert env.ensure() == []
    assert env.calls == [] and env.asked == []
    deps.require(env.find_spec, env.version_of)


def test_installs_only_what_is_missing_after_asking_with_numpy_held():
    env = FakeEnvironment({"torch", "cv2", "tqdm", "lesionseg"})
    installed = env.ensure()
    assert [p.import_name for p in installed] == ["torch", "cv2", "tqdm", "lesionseg"]
    assert env.calls == [("torch", "<2.14"),
                         ("pip", ("opencv-python-headless>=4.8,<4.12", "tqdm>=4.60"), ("numpy==1.26.4",)),
                         ("backend", REPO / "ModelBackend")]
    assert len(env.asked) == 1
    for requirement in ("torch<2.14", "opencv-python-headless>=4.8", "tqdm>=4.60", "lesionseg"):
        assert requirement in env.asked[0]
    assert "scikit-image" not in env.asked[0]


def test_opencv_accepts_the_numpy_slicer_has():
    """Slicer 5.8 (numpy 1.26.4): OpenCV below 4.12 (4.12.0.88 requires numpy>=2 on Python>=3.9); Slicer 5.10
    (numpy 2.0.2): no cap. numpy itself is always a constraint at the installed version."""
    cv2 = [p for p in deps.PACKAGES if p.import_name == "cv2"]
    assert deps.pip_requirements(cv2, SLICER_5_8_NUMPY) == ["opencv-python-headless>=4.8,<4.12"]
    assert deps.pip_requirements(cv2, SLICER_5_10_NUMPY) == ["opencv-python-headless>=4.8"]
    assert deps.pip_constraints(SLICER_5_8_NUMPY) == ["numpy==1.26.4"] and deps.pip_constraints(None) == []
    env = FakeEnvironment({"cv2"}, numpy=SLICER_5_10_NUMPY)
    env.ensure()
    assert env.calls == [("pip", ("opencv-python-headless>=4.8",), ("numpy==2.0.2",))]


def test_declined_installs_nothing():
    env = FakeEnvironment({"skimage"})
    with pytest.raises(deps.DependencyError, match="declined"):
        env.ensure(ask=lambda text: False)
    assert env.calls == []


def test_testing_mode_never_asks_or_installs():
    env = FakeEnvironment({"pydicom"})
    with pytest.raises(deps.DependencyError, match="pydicom>=2.4"):
        env.ensure(testing=True)
    assert env.calls == [] and env.asked == []


def test_worker_thread_is_refused():
    env = FakeEnvironment({"pydicom"})
    errors = []

    def work():
        try:
            env.ensure()
        except deps.DependencyError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0] and env.calls == [] and env.asked == []


def test_still_missing_after_install_raises():
    env = FakeEnvironment({"tqdm"})
    env.pip_install = lambda requirements, constraints=(): env.calls.append(("pip", tuple(requirements)))
    with pytest.raises(deps.DependencyError, match="still cannot be imported.*tqdm>=4.60"):
        env.ensure()


def test_require_names_missing_packages():
    env = FakeEnvironment({"torch", "lesionseg"})
    with pytest.raises(deps.DependencyError) as info:
        deps.require(env.find_spec, env.version_of)
    assert "torch<2.14" in str(info.value) and "lesionseg" in str(info.value)
    assert [p.import_name for p in deps.missing_packages(env.find_spec, version_of=env.version_of)] == \
        ["torch", "lesionseg"]


def test_densecrf_is_optional_and_checked_only_where_a_crf_runs():
    env = FakeEnvironment({"pydensecrf"})
    assert not deps.crf_available(env.find_spec)
    deps.require(env.find_spec, env.version_of)  # every panel works without it
    assert env.ensure() == [] and env.asked == []  # nothing asked by a panel that needs no CRF
    assert [p.import_name for p in env.ensure(optional=["pydensecrf"])] == ["pydensecrf"]
    assert env.calls == [("pip", ("pydensecrf2>=1.1",), ("numpy==1.26.4",))] and "Optional" in env.asked[0]
    assert deps.crf_available(env.find_spec)


def test_failed_densecrf_build_does_not_block_the_rest(caplog):
    env = FakeEnvironment({"pydensecrf", "tqdm"})
    env.fail_pip = {"pydensecrf"}
    installed = env.ensure()  # a required package is missing: the optional one is offered in the same dialog
    assert [p.import_name for p in installed] == ["tqdm"]
    assert [c[1] for c in env.calls] == [("tqdm>=4.60",), ("pydensecrf2>=1.1",)]
    assert "pydensecrf2>=1.1 was not installed" in caplog.text and not deps.crf_available(env.find_spec)


def test_shipped_backend_version_reads_the_project_table(tmp_path):
    assert re.match(r"^\d+\.\d+", SHIPPED)
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["x"]\n\n[project]\nname = "lesionseg"\n'
                                             'version = "1.2.3"\n\n[tool.other]\nversion = "9.9"\n')
    assert deps.shipped_backend_version(tmp_path) == "1.2.3"
    assert deps.shipped_backend_version(tmp_path / "missing") is None


def test_outdated_backend_is_reinstalled(monkeypatch):
    assert deps.backend_outdated(lambda name: "0.0.1", editable=lambda name: True) is None  # a developer checkout
    monkeypatch.setattr(deps, "editable_install", lambda name: False)  # this venv's backend is an editable install
    env = FakeEnvironment(set(), backend="0.0.1")
    assert deps.backend_outdated(env.version_of) == f"0.0.1 installed, {SHIPPED} shipped"
    assert [p.import_name for p in deps.missing_packages(env.find_spec, version_of=env.version_of)] == ["lesionseg"]
    assert [p.import_name for p in env.ensure()] == ["lesionseg"]
    assert env.calls == [("backend", REPO / "ModelBackend")] and "lesionseg" in env.asked[0]
    env.versions["lesionseg"] = None  # importable from a source folder without metadata: left alone
    assert deps.backend_outdated(env.version_of) is None


def test_restart_asked_when_an_imported_package_was_replaced():
    before = {"numpy": ("1.26.4", ("numpy",)), "tqdm": ("4.60.0", ("tqdm",))}
    after = {"numpy": ("2.0.2", ("numpy",)), "tqdm": ("4.66.0", ("tqdm",)), "torch": ("2.3.0", ("torch",))}
    assert deps.replaced_imported(before, after, {"numpy": object()}) == ["numpy 1.26.4 -> 2.0.2"]
    assert deps.replaced_imported(before, before, {"numpy": object()}) == []
    env = FakeEnvironment({"tqdm"})
    snapshots = iter([before, after])
    asked = []
    env.ensure(snapshot=lambda: next(snapshots), restart=asked.append, modules={"numpy": 1, "tqdm": 1})
    assert asked == [["numpy 1.26.4 -> 2.0.2", "tqdm 4.60.0 -> 4.66.0"]]


def test_declining_the_restart_raises(monkeypatch):
    answers = []
    slicer = types.SimpleNamespace(util=types.SimpleNamespace(
        confirmOkCancelDisplay=lambda text, windowTitle=None: answers.append(text) or False,
        restart=lambda: pytest.fail("restarted although declined")))
    monkeypatch.setitem(sys.modules, "slicer", slicer)
    with pytest.raises(deps.DependencyError, match="restart Slicer.*numpy 1.26.4 -> 2.0.2"):
        deps._offer_restart(["numpy 1.26.4 -> 2.0.2"])
    assert "numpy 1.26.4 -> 2.0.2" in answers[0]


def test_installed_distributions_name_their_top_level_modules():
    found = deps.installed_distributions()
    assert "numpy" in found["numpy"][1] and found["numpy"][0] == deps.installed_version("numpy")


def test_pip_gets_the_constraints_file_and_reports_failures(tmp_path):
    seen = []

    def runner(command, title):
        constraints = Path(command[command.index("-c") + 1])
        seen.append((command, constraints.read_text()))
        return ProcessResult(0, output=["Successfully installed tqdm"])

    inst.SlicerInstaller(runner).pip_install(["tqdm>=4.60"], ["numpy==1.26.4"])
    command, text = seen[0]
    assert command[1:5] == ["-m", "pip", "install", "tqdm>=4.60"] and text == "numpy==1.26.4\n"
    assert not Path(command[command.index("-c") + 1]).exists()  # temporary
    failing = inst.SlicerInstaller(lambda command, title: ProcessResult(1, output=["error: Microsoft Visual C++ "
                                                                                    "14.0 or greater is required"]))
    with pytest.raises(deps.DependencyError, match="Visual C"):
        failing.pip_install(["pydensecrf2>=1.1"])
    cancelled = inst.SlicerInstaller(lambda command, title: ProcessResult(-15, cancelled=True))
    with pytest.raises(deps.DependencyError, match="cancelled"):
        cancelled.pip_install(["tqdm"])


def test_backend_installed_from_a_temporary_copy(tmp_path):
    """pip never writes build/ or *.egg-info into the (possibly read-only) shipped folder; the copy leaves them
    out and is removed afterwards."""
    shipped = tmp_path / "LesionSegBackend"
    (shipped / "src" / "lesionseg" / "__pycache__").mkdir(parents=True)
    (shipped / "pyproject.toml").write_text('[project]\nname = "lesionseg"\nversion = "0.1.0"\n')
    (shipped / "src" / "lesionseg" / "__init__.py").write_text("")
    (shipped / "build").mkdir()
    (shipped / "src" / "lesionseg.egg-info").mkdir()
    before = sorted(p.relative_to(shipped) for p in shipped.rglob("*"))
    seen = []

    def runner(command, title):
        copy = Path(command[command.index("--upgrade") + 1])
        seen.append((copy, sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))))
        return ProcessResult(0)

    inst.SlicerInstaller(runner).pip_install_no_deps(shipped)
    copy, files = seen[0]
    assert shipped not in copy.parents and copy.name == "LesionSegBackend"
    assert files == ["pyproject.toml", "src", "src/lesionseg", "src/lesionseg/__init__.py"]
    assert not copy.exists() and sorted(p.relative_to(shipped) for p in shipped.rglob("*")) == before


def test_backend_found_in_checkout_and_in_built_layout(tmp_path):
    assert deps.backend_source_dir() == REPO / "ModelBackend"
    modules = tmp_path / "lib" / "Slicer-5.8" / "qt-scripted-modules"
    (modules / "LesionSegLib").mkdir(parents=True)
    (modules / "LesionSegBackend").mkdir()
    (modules / "LesionSegBackend" / "pyproject.toml").write_text("[project]\nname = 'lesionseg'\n")
    fake_file = modules / "LesionSegLib" / "dependencies.py"
    assert deps.backend_source_dir(fake_file) == modules / "LesionSegBackend"
    (modules / "LesionSegBackend" / "pyproject.toml").unlink()
    assert deps.backend_source_dir(fake_file) is None


def test_requirements_match_backend_pyproject():
    """The packages installed in Slicer are the backend's own dependencies, with the same torch cap."""
    text = (REPO / "ModelBackend" / "pyproject.toml").read_text(encoding="utf-8")
    declared = dict(re.findall(r'"([A-Za-z0-9_.-]+)([<>=!~][^"]*)"', text))
    for pkg in deps.PACKAGES:
        if pkg.via in ("pip", "torch"):
            name = re.match(r"[A-Za-z0-9_.-]+", pkg.requirement).group(0)
            assert name in declared, f"{name} is not a backend dependency"
    assert "<2.14" in declared["torch"] and deps.TORCH_VERSION_REQUIREMENT == "<2.14"
