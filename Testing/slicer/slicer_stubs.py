"""Stub Slicer modules and fakes shared by the offline tests of the whole-volume panels (PET/CT, small lesions,
screening): a module file loaded under stub ``slicer``/``qt``/``vtk``, its logic running a fake backend script in
a real background process, and the checks of the module's CMake list and ``.ui`` file.

Not a test file: the tests import it (``Testing/slicer`` is on ``sys.path``, as for ``conftest``).
"""
from __future__ import annotations

import importlib.util
import re
import struct
import sys
import types
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from LesionSegLib import dependencies, labelmaps, process

from lesionseg.io import write_image


def stub_modules(tmp_path: Path, node_classes: Iterable[str]) -> dict[str, types.ModuleType]:
    """``{name: module}`` for ``slicer``, ``slicer.util``, ``slicer.ScriptedLoadableModule``,
    ``slicer.parameterNodeWrapper``, ``qt`` and ``vtk``: enough to import a panel's module file.

    ``slicer.util.tempDirectory(key)`` makes ``tmp_path/<key>-<n>``; ``parameterNodeWrapper`` returns the class,
    ``Choice``/``WithinRange`` return tuples the tests compare; ``slicer.<name>`` exists for each of
    ``node_classes``; ``slicer.app.processEvents`` does nothing. Add what else a test needs to the returned modules.
    """
    slicer = types.ModuleType("slicer")
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    folders = iter(range(100))

    def temp_directory(key="__SlicerTemp__", tempDir=None, includeDateTime=True):
        path = tmp_path / f"{key}-{next(folders)}"
        path.mkdir()
        return str(path)

    util.tempDirectory = temp_directory
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    slm.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {"__init__": lambda self, parent: None})
    slm.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
    slm.ScriptedLoadableModuleLogic = type("ScriptedLoadableModuleLogic", (),
                                           {"__init__": lambda self, parent=None: None})
    slm.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (unittest.TestCase,), {})
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = lambda cls: cls
    pnw.Choice = lambda choices: ("Choice", tuple(choices))
    pnw.WithinRange = lambda lo, hi: ("WithinRange", lo, hi)
    for name in node_classes:
        setattr(slicer, name, type(name, (), {}))
    slicer.app = types.SimpleNamespace(processEvents=lambda: None)
    slicer.util, slicer.ScriptedLoadableModule, slicer.parameterNodeWrapper = util, slm, pnw
    vtk, vtk_util, numpy_support = (types.ModuleType(n) for n in ("vtk", "vtk.util", "vtk.util.numpy_support"))
    numpy_support.numpy_to_vtk = lambda num_array, deep=False, array_type=None: FakeVTKArray(num_array, array_type)
    vtk.util, vtk_util.numpy_support = vtk_util, numpy_support
    return {"slicer": slicer, "slicer.util": util, "slicer.ScriptedLoadableModule": slm,
            "slicer.parameterNodeWrapper": pnw, "qt": types.ModuleType("qt"), "vtk": vtk, "vtk.util": vtk_util,
            "vtk.util.numpy_support": numpy_support}


class FakeVTKArray:
    """What ``vtk.util.numpy_support.numpy_to_vtk`` returns: the values (a copy, their numpy type kept unless
    ``array_type`` forces one, as Slicer 5.8's ``updateTableFromArray`` does with VTK_FLOAT) and a name."""

    def __init__(self, values: Any, array_type: Any = None) -> None:
        self.values = np.array(values, dtype=np.float32 if array_type is not None else None)
        self.name = ""

    def SetName(self, name: str) -> None:
        self.name = name


class FakeTable:
    """A ``vtkMRMLTableNode``: name, attributes, and ``columns`` ``{name: values}`` in column order."""

    def __init__(self, name: str = "table") -> None:
        self.name, self.attributes, self.columns = name, {}, {}

    def GetName(self) -> str:
        return self.name

    def SetName(self, name: str) -> None:
        self.name = name

    def GetAttribute(self, key: str) -> Any:
        return self.attributes.get(key)

    def SetAttribute(self, key: str, value: str) -> None:
        self.attributes[key] = value

    def RemoveAllColumns(self) -> bool:
        self.columns = {}
        return True

    def AddColumn(self, array: FakeVTKArray) -> FakeVTKArray:
        self.columns[array.name] = array.values
        return array


def add_tables_to_scene(slicer: Any, tables: list) -> None:
    """``slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)`` appends a :class:`FakeTable` to ``tables``;
    ``slicer.util.getNodesByClass("vtkMRMLTableNode")`` lists them (other classes: nothing)."""
    def add(cls: str, name: str = "") -> FakeTable:
        if cls != "vtkMRMLTableNode":
            raise AssertionError(f"unexpected node class {cls}")
        tables.append(FakeTable(name))
        return tables[-1]

    slicer.mrmlScene.AddNewNodeByClass = add
    slicer.util.getNodesByClass = lambda cls: tables if cls == "vtkMRMLTableNode" else []


def load_module(monkeypatch: Any, stubs: dict[str, types.ModuleType], module_dir: Path) -> types.ModuleType:
    """Import ``module_dir/<folder name>.py`` as ``<folder name>_offline`` with ``stubs`` in ``sys.modules``
    (both undone by ``monkeypatch`` after the test)."""
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, stub)
    spec = importlib.util.spec_from_file_location(f"{module_dir.name}_offline", module_dir / f"{module_dir.name}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


def fake_backend(monkeypatch: Any, script: str, written: list, new_node: Callable[[Any, Any, str], Any]) -> None:
    """Run ``script`` (Python source reading ``sys.argv`` like ``lesionseg``) instead of the backend, and fake the
    scene side of a run: dependencies are present, ``export_volume`` writes the node's ``image`` attribute,
    ``volume_grid`` is ``(image.shape, node.ijk_to_ras)``, and ``replace_owned_segments`` appends
    ``(segmentationNode, labels, owner, method, newName)`` to ``written`` and reports the segments of the first
    label as written into ``segmentationNode`` or, when None, into ``new_node(segmentationNode, labels, newName)``.
    """
    monkeypatch.setattr(dependencies, "require", lambda: None)
    monkeypatch.setattr(process, "backend_command", lambda args: [sys.executable, "-c", script,
                                                                  "--progress", "lines", *args])
    monkeypatch.setattr(labelmaps, "export_volume", lambda node, path: write_image(node.image, path))
    monkeypatch.setattr(labelmaps, "volume_grid", lambda node: (node.image.shape, node.ijk_to_ras))

    def replace(segmentationNode, labels, owner, method, newName):
        written.append((segmentationNode, labels, owner, method, newName))
        node = segmentationNode or new_node(segmentationNode, labels, newName)
        names = tuple(s.name for s in labels[0].specs)
        return labelmaps.WrittenSegments(node, names, segmentationNode is None, 0)

    monkeypatch.setattr(labelmaps, "replace_owned_segments", replace)


def panel_widgets(module_dir: Path, node: type) -> dict[str, str]:
    """``{widget name: class}`` of the module's ``.ui`` after checking what every panel shares: a ``qMRMLWidget``
    root, one ``SlicerParameterName`` per parameter of ``node`` (no other), and every ``self.ui.<name>`` of the
    module file naming a widget of the ``.ui``; the module file has at most 300 lines."""
    name = module_dir.name
    source = (module_dir / f"{name}.py").read_text()
    assert source.count("\n") <= 300
    ui = ET.parse(module_dir / "Resources" / "UI" / f"{name}.ui").getroot()
    assert ui.find("widget").get("class") == "qMRMLWidget"
    bound = {w.find("string").text for w in ui.iter("property") if w.get("name") == "SlicerParameterName"}
    assert bound == set(node.__annotations__)
    classes = {w.get("name"): w.get("class") for w in ui.iter("widget")}
    assert set(re.findall(r"self\.ui\.(\w+)", source)) <= set(classes)
    return classes


def check_cmake_lists(module_dir: Path) -> None:
    """The module's ``CMakeLists.txt`` lists exactly its .py/.ui/.png files and adds its self-test; the icon is
    a 128x128 PNG."""
    name = module_dir.name
    text = (module_dir / "CMakeLists.txt").read_text()
    listed = {item.replace("${MODULE_NAME}", name)
              for item in re.findall(r"^\s+(\S+\.(?:py|ui|png))\s*$", text, re.MULTILINE)}
    on_disk = {str(p.relative_to(module_dir)) for p in module_dir.rglob("*") if p.suffix in (".py", ".ui", ".png")
               and "__pycache__" not in p.parts}
    assert listed == on_disk
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text and "WITH_GENERIC_TESTS" in text
    header = (module_dir / "Resources" / "Icons" / f"{name}.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (128, 128)
