"""The extension's CMake files: required calls and variables present, every listed file exists."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from conftest import EXTENSION, REPO

TOP = REPO / "CMakeLists.txt"
MODULE_DIRS = sorted(p.parent for p in EXTENSION.glob("*/CMakeLists.txt"))


def strip_comments(text: str) -> str:
    """``text`` without ``# ...`` comments (a ``#`` inside a quoted string is kept; so is ``## NEXT_MODULE``)."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("## NEXT_MODULE"):
            out.append(line)
            continue
        quoted, kept = False, ""
        for ch in line:
            if ch == '"':
                quoted = not quoted
            elif ch == "#" and not quoted:
                break
            kept += ch
        out.append(kept)
    return "\n".join(out)


def calls(text: str, name: str) -> list[str]:
    """Argument texts of every ``name(...)`` call; parentheses inside quoted strings are skipped."""
    text = strip_comments(text)
    found = []
    for match in re.finditer(rf"\b{name}\s*\(", text, re.IGNORECASE):
        depth, quoted, start = 1, False, match.end()
        for pos in range(start, len(text)):
            ch = text[pos]
            if ch == '"':
                quoted = not quoted
            elif not quoted and ch == "(":
                depth += 1
            elif not quoted and ch == ")":
                depth -= 1
                if depth == 0:
                    found.append(text[start:pos])
                    break
    return found


def set_values(text: str) -> dict[str, str]:
    out = {}
    for args in calls(text, "set"):
        parts = args.strip().split(None, 1)
        out[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return out


def module_problems(folder: Path, slicer_api: dict) -> list[str]:
    """What is wrong with one module's CMakeLists.txt (empty = fine)."""
    text = (folder / "CMakeLists.txt").read_text(encoding="utf-8")
    problems = []
    values = set_values(text)
    name = values.get("MODULE_NAME")
    if name != folder.name:
        problems.append(f"MODULE_NAME {name!r} != folder {folder.name!r}")
    macro = calls(text, "slicerMacroBuildScriptedModule")
    if len(macro) != 1:
        return problems + ["one slicerMacroBuildScriptedModule call expected"]
    spec = slicer_api["extension_metadata"]["slicerMacroBuildScriptedModule"]
    keywords = set(spec["options"]) | set(spec["oneValueArgs"]) | set(spec["multiValueArgs"])
    words = [w for w in macro[0].split() if w.isupper() and not w.startswith("$")]
    problems += [f"unknown keyword {w}" for w in words if w not in keywords]
    for required in ("NAME", "SCRIPTS", "RESOURCES"):
        if required not in words:
            problems.append(f"slicerMacroBuildScriptedModule without {required}")
    listed = []
    for var in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        for item in values.get(var, "").split():
            path = item.replace("${MODULE_NAME}", folder.name)
            listed.append(path)
            if not (folder / path).is_file():
                problems.append(f"{var} lists a missing file {path}")
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts}
    problems += [f"{p} is not listed in MODULE_PYTHON_SCRIPTS" for p in sorted(on_disk - set(listed))]
    return problems


def test_top_level_cmake(slicer_api):
    text = TOP.read_text(encoding="utf-8")
    meta = slicer_api["extension_metadata"]
    assert calls(text, "cmake_minimum_required")
    assert calls(text, "project") == ["LesionSeg"]
    assert not "LesionSeg".startswith("Slicer")  # ExtensionsIndex rule (the repository is SlicerLesionSeg)
    values = set_values(text)
    for var in meta["cmake_variables_in_template"]:
        assert values.get(var, "").strip('"'), f"{var} missing or empty"
    assert "PyTorch" in values["EXTENSION_DEPENDS"]
    assert values["EXTENSION_ICONURL"].strip('"').endswith("/LesionSegExtension.png")
    assert "find_package(Slicer REQUIRED)" in text
    cleaned = strip_comments(text)
    order = [cleaned.index(s) for s in ("project(LesionSeg)", "find_package(Slicer REQUIRED)",
                                        "include(${Slicer_USE_FILE})", "add_subdirectory(", "## NEXT_MODULE",
                                        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                                        "include(${Slicer_EXTENSION_CPACK})")]
    assert order == sorted(order), "calls out of the template's order"


def test_every_module_is_added_once():
    added = [Path(a.strip()) for a in calls(TOP.read_text(encoding="utf-8"), "add_subdirectory")]
    assert sorted(REPO / a for a in added) == MODULE_DIRS
    assert len(set(added)) == len(added)


def test_backend_shipped_where_dependencies_looks():
    """The backend folder installed by CMake is where LesionSegLib.dependencies looks for it."""
    from LesionSegLib import dependencies

    text = strip_comments(TOP.read_text(encoding="utf-8"))
    assert re.search(r"install\(DIRECTORY \$\{CMAKE_CURRENT_SOURCE_DIR\}/ModelBackend/\s+DESTINATION "
                     r"\$\{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR\}/LesionSegBackend", text)
    assert "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/LesionSegBackend" in text
    assert dependencies.BACKEND_FOLDER_NAMES[0] == "LesionSegBackend"
    assert (REPO / "ModelBackend" / "pyproject.toml").is_file()


@pytest.mark.parametrize("folder", MODULE_DIRS, ids=lambda p: p.name)
def test_module_cmake(folder, slicer_api):
    assert module_problems(folder, slicer_api) == []


def test_panel_module_has_tests_icon_and_ui():
    folder = EXTENSION / "LesionSegBoxPrompt"
    text = strip_comments((folder / "CMakeLists.txt").read_text(encoding="utf-8"))
    assert "WITH_GENERIC_TESTS" in calls(text, "slicerMacroBuildScriptedModule")[0]
    assert re.search(r"if\(BUILD_TESTING\)\s+slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", text)
    resources = set_values(text)["MODULE_PYTHON_RESOURCES"].split()
    assert "Resources/Icons/${MODULE_NAME}.png" in resources
    assert "Resources/UI/${MODULE_NAME}.ui" in resources


@pytest.mark.parametrize("path", [REPO / "LesionSegExtension.png",
                                  EXTENSION / "LesionSegBoxPrompt" / "Resources" / "Icons" / "LesionSegBoxPrompt.png"],
                         ids=lambda p: p.name)
def test_icons_are_128px_png(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (128, 128)


def test_module_checker_can_fail(tmp_path, slicer_api):
    folder = tmp_path / "Broken"
    folder.mkdir()
    (folder / "Broken.py").write_text("x = 1\n")
    (folder / "Extra.py").write_text("y = 2\n")
    (folder / "CMakeLists.txt").write_text(
        "set(MODULE_NAME Brokn)\nset(MODULE_PYTHON_SCRIPTS\n  Broken.py\n  Missing.py\n  )\n"
        "set(MODULE_PYTHON_RESOURCES\n  Resources/Icons/Broken.png\n  )\n"
        "slicerMacroBuildScriptedModule(NAME ${MODULE_NAME} SCRIPTS ${MODULE_PYTHON_SCRIPTS} WITH_TESTS)\n")
    problems = module_problems(folder, slicer_api)
    assert problems == ["MODULE_NAME 'Brokn' != folder 'Broken'", "unknown keyword WITH_TESTS",
                        "slicerMacroBuildScriptedModule without RESOURCES",
                        "MODULE_PYTHON_SCRIPTS lists a missing file Missing.py",
                        "MODULE_PYTHON_RESOURCES lists a missing file Resources/Icons/Broken.png",
                        "Extra.py is not listed in MODULE_PYTHON_SCRIPTS"]
