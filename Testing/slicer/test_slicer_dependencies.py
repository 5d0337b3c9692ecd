"""LesionSegLib.dependencies with a fake installer: ask first, install only what is missing, never in tests."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from conftest import REPO
from LesionSegLib import dependencies as deps


class FakeEnvironment:
    """``find_spec`` over a set of installed import names, and an installer that adds to it."""

    def __init__(self, missing: set[str]) -> None:
        self.installed = {p.import_name for p in deps.PACKAGES} - missing
        self.calls: list[tuple] = []
        self.asked: list[str] = []

    def find_spec(self, name: str):
        return object() if name in self.installed else None

    def install_torch(self, version_requirement: str) -> None:
        self.calls.append(("torch", version_requirement))
        self.installed.add("torch")

    def pip_install(self, requirements) -> None:
        self.calls.append(("pip", tuple(requirements)))
        for pkg in deps.PACKAGES:
            if pkg.requirement in requirements:
                self.installed.add(pkg.import_name)

    def pip_install_no_deps(self, folder: Path) -> None:
        self.calls.append(("backend", folder))
        self.installed.add("lesionseg")

    def ask(self, text: str) -> bool:
        self.asked.append(text)
        return True


def test_nothing_missing_asks_nothing():
    env = FakeEnvironment(set())
    assert deps.ensure_installed(env, env.ask, testing=False, find_spec=env.find_spec) == []
    assert env.calls == [] and env.asked == []
    deps.require(env.find_spec)


def test_installs_only_what_is_missing_after_asking():
    env = FakeEnvironment({"torch", "cv2", "tqdm", "lesionseg"})
    installed = deps.ensure_installed(env, env.ask, testing=False, find_spec=env.find_spec)
    assert [p.import_name for p in installed] == ["torch", "cv2", "tqdm", "lesionseg"]
    assert env.calls == [("torch", "<2.14"), ("pip", ("opencv-python-headless>=4.8", "tqdm>=4.60")),
                         ("backend", REPO / "ModelBackend")]
    assert len(env.asked) == 1
    for requirement in ("torch<2.14", "opencv-python-headless>=4.8", "tqdm>=4.60", "lesionseg"):
        assert requirement in env.asked[0]
    assert "scikit-image" not in env.asked[0]


def test_declined_installs_nothing():
    env = FakeEnvironment({"skimage"})
    with pytest.raises(deps.DependencyError, match="declined"):
        deps.ensure_installed(env, lambda text: False, testing=False, find_spec=env.find_spec)
    assert env.calls == []


def test_testing_mode_never_asks_or_installs():
    env = FakeEnvironment({"pydicom"})
    with pytest.raises(deps.DependencyError, match="pydicom>=2.4"):
        deps.ensure_installed(env, env.ask, testing=True, find_spec=env.find_spec)
    assert env.calls == [] and env.asked == []


def test_worker_thread_is_refused():
    env = FakeEnvironment({"pydicom"})
    errors = []

    def work():
        try:
            deps.ensure_installed(env, env.ask, testing=False, find_spec=env.find_spec)
        except deps.DependencyError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0] and env.calls == [] and env.asked == []


def test_still_missing_after_install_raises():
    env = FakeEnvironment({"pydensecrf"})
    env.pip_install = lambda requirements: env.calls.append(("pip", tuple(requirements)))  # installs nothing
    with pytest.raises(deps.DependencyError, match="still cannot be imported: pydensecrf2"):
        deps.ensure_installed(env, env.ask, testing=False, find_spec=env.find_spec)


def test_require_names_missing_packages():
    env = FakeEnvironment({"torch", "lesionseg"})
    with pytest.raises(deps.DependencyError) as info:
        deps.require(env.find_spec)
    assert "torch<2.14" in str(info.value) and "lesionseg" in str(info.value)
    assert [p.import_name for p in deps.missing_packages(env.find_spec)] == ["torch", "lesionseg"]


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
