"""Every Slicer API use in LesionSegExtension/ exists in Slicer's API dump; the checks themselves can fail."""
from __future__ import annotations

import ast
import xml.etree.ElementTree as ET

import pytest
from conftest import EXTENSION
from slicer_api_check import SlicerAPI, check_source, python_sources
from slicer_module_check import check_module_classes, check_parameter_nodes

SOURCES = python_sources(EXTENSION)
MODULES = sorted(p.parent.name for p in EXTENSION.glob("*/CMakeLists.txt"))


@pytest.fixture(scope="module")
def api(slicer_api) -> SlicerAPI:
    return SlicerAPI(slicer_api)


def _rel(path) -> str:
    return str(path.relative_to(EXTENSION))


def test_sources_found():
    assert {"LesionSegBoxPrompt", "LesionSegCommon"} <= set(MODULES)
    assert len(SOURCES) >= 12


def test_api_calls_exist(api):
    stats: dict = {}
    findings = [f for path in SOURCES
                for f in check_source(path.read_text(encoding="utf-8"), _rel(path), api, stats)]
    assert findings == [], "\n".join(map(str, findings))
    # The scan must have looked at real calls, or this test could not fail.
    assert stats["python_api"] >= 18, stats
    assert stats["vtk_calls"] >= 90, stats
    assert stats["typed_calls"] >= 85, stats


def test_parameter_node_annotations_supported(api):
    findings = [f for path in SOURCES for f in check_parameter_nodes(path.read_text(encoding="utf-8"), _rel(path), api)]
    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize("module", MODULES)
def test_module_class_names(module):
    path = EXTENSION / module / f"{module}.py"
    findings = check_module_classes(path.read_text(encoding="utf-8"), _rel(path), module)
    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize("module", MODULES)
def test_module_file_size(module):
    lines = (EXTENSION / module / f"{module}.py").read_text(encoding="utf-8").count("\n")
    assert lines <= 300
    for path in SOURCES:
        assert path.read_text(encoding="utf-8").count("\n") <= 400, path


def test_no_print_in_library_code():
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                 and n.func.id == "print"]
        assert calls == [], f"print() in {path}"


def test_ui_parameter_names_match_parameter_node():
    """Each SlicerParameterName in the .ui names a parameter whose type the widget can show."""
    module = "LesionSegBoxPrompt"
    tree = ast.parse((EXTENSION / module / f"{module}.py").read_text(encoding="utf-8"))
    params = {}
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and cls.name == f"{module}ParameterNode":
            params = {s.target.id: ast.unparse(s.annotation) for s in cls.body if isinstance(s, ast.AnnAssign)}
    assert params, "parameter node class not found"
    ui = ET.parse(EXTENSION / module / "Resources" / "UI" / f"{module}.ui").getroot()
    assert ui.find("widget").get("class") == "qMRMLWidget"
    bound = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("class")
    assert set(bound) <= set(params)
    assert {"inputVolume", "roi", "segmentation", "currentSliceOnly", "device"} <= set(bound)
    for name, widget_class in bound.items():
        annotation = params[name]
        if widget_class == "qMRMLNodeComboBox":
            assert annotation.startswith("slicer.vtkMRML"), name
        elif widget_class == "QCheckBox":
            assert annotation == "bool", name
        elif widget_class == "QComboBox":
            assert annotation.startswith("Annotated[str, Choice("), name  # the connector needs a Choice
        else:
            pytest.fail(f"unexpected widget {widget_class} for {name}")
    names = {w.get("name") for w in ui.iter("widget")}
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)
            and n.value.attr == "ui"}
    assert used <= names, used - names


BAD_SNIPPET = '''
import slicer
from slicer.util import VTKObservationMixin, noSuchHelper

def run(volumeNode, segment, segmentationNode):
    slicer.util.arrayFromVolumee(volumeNode)
    slicer.util.loadVolume("ct.nrrd", returnnode=True)
    slicer.util.launchConsoleProcess(["ls"], blocking=False)
    slicer.util.arrayFromVTKMatrix(1, 2, 3)
    volumeNode.GetIJKToRASMatrixx(None)
    segment.GetSegmentation()
    segment.SetTerminology("x")
    segmentationNode.GenerateMergedLabelmap(None, 0)
    slicer.mrmlScene.AddNewNodeByClass("vtkMRMLFooNode")
    slicer.mrmlScene.FrobnicateAll()
    unknownThing.TotallyMadeUpMethod()
    slicer.modules.markups.logic().StartPlaceModee(False)
'''


def test_checker_catches_wrong_names(api):
    findings = check_source(BAD_SNIPPET, "bad.py", api)
    text = "\n".join(map(str, findings))
    expected = ["has no noSuchHelper", "no function arrayFromVolumee", "no parameter returnnode",
                "blocking=...) does not exist in Slicer 5.8.1", "at most 1 positional",
                "no method GetIJKToRASMatrixx", "vtkSegment (chain vtkSegment > vtkObject) has no method "
                "GetSegmentation", "not in Slicer 5.8.1; guard it", "GenerateMergedLabelmap is not wrapped",
                "'vtkMRMLFooNode' is not a known MRML node class", "vtkMRMLScene (chain vtkMRMLScene > vtkObject) "
                "has no method FrobnicateAll", "has a method TotallyMadeUpMethod",
                "vtkSlicerMarkupsLogic.StartPlaceModee is not an allowed method"]
    for piece in expected:
        assert piece in text, f"{piece!r} not reported:\n{text}"
    assert len(findings) == len(expected), text


def test_checker_accepts_guarded_newer_method(api):
    ok = 'def f(segment):\n    if hasattr(segment, "SetTerminology"):\n        segment.SetTerminology("x")\n'
    assert check_source(ok, "ok.py", api) == []


def test_checker_catches_bad_annotations(api):
    bad = '''
from typing import Annotated, Optional
import numpy
import slicer
from slicer.parameterNodeWrapper import parameterNodeWrapper, Choice

@parameterNodeWrapper
class P:
    a: slicer.vtkMRMLScalarVolumeNode | None
    b: numpy.ndarray
    c: slicer.vtkMRMLNoSuchNode
    d: Annotated[str, Bogus("x")]
    e: Optional[slicer.vtkMRMLSegmentationNode]
    f: Annotated[str, Choice(["a", "b"])] = "a"
    g: list[int]
'''
    findings = check_parameter_nodes(bad, "p.py", api)
    text = "\n".join(map(str, findings))
    assert [f.message.split(":")[0] for f in findings] == ["P.a", "P.b", "P.c", "P.d"], text
    assert "needs Slicer 5.10" in text


def test_checker_catches_bad_class_names():
    bad = '''
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleTest
class Foo(ScriptedLoadableModule): pass
class FooWidgett(ScriptedLoadableModuleWidget): pass
class BarTest(ScriptedLoadableModuleTest): pass
'''
    findings = check_module_classes(bad, "Foo.py", "Foo")
    assert sorted(f.message.split()[1] for f in findings) == ["BarTest", "FooWidgett"]
    assert check_module_classes("x = 1\n", "Foo.py", "Foo")[0].message.startswith("no class Foo")


def test_checker_infers_classes_from_assignments(api):
    snippet = '''
import slicer
def f():
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    node.GetSegmentIDs()
    seg = node.GetSegmentation()
    seg.SetTerminology("x")
    sliceNode = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed")
    sliceNode.GetSliceToRAS()
    sliceNode.GetName()
    sliceNode.Frob()
    segmentation = unknownHelper()
    segmentation.GetSegmentation()
'''
    messages = [f.message for f in check_source(snippet, "infer.py", api)]
    assert len(messages) == 3, messages
    assert messages[0].startswith("vtkMRMLSegmentationNode (chain") and messages[0].endswith("GetSegmentIDs")
    assert messages[1] == "vtkSegmentation (chain vtkSegmentation > vtkObject) has no method SetTerminology"
    assert messages[2] == "vtkMRMLSliceNode.Frob is not an allowed method"
