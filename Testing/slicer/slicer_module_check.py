"""Static checks of Slicer module structure: parameter-node annotations and module class names.

* ``@parameterNodeWrapper`` annotations use supported types only (no ``X | None``: Slicer 5.8 needs Optional).
* Module classes follow ``<M>``, ``<M>Widget``, ``<M>Logic``, ``<M>Test`` with the matching base classes.
"""
from __future__ import annotations

import ast
from typing import Iterable

from slicer_api_check import Finding, SlicerAPI, dotted_name

_SIMPLE_TYPES = {"int", "float", "str", "bool", "Any", "Path", "pathlib.Path", "typing.Any", "FloatRange"}
_WRAPPERS = {"Optional", "Union", "list", "tuple", "dict", "List", "Tuple", "Dict", "typing.Optional",
             "typing.Union"}


def check_parameter_nodes(source: str, path: str, api: SlicerAPI) -> list[Finding]:
    """Annotations of ``@parameterNodeWrapper`` classes use supported, Slicer 5.8-compatible types."""
    findings = []
    for cls in ast.walk(ast.parse(source, filename=path)):
        if not isinstance(cls, ast.ClassDef):
            continue
        if not any(dotted_name(d) in ("parameterNodeWrapper", "slicer.parameterNodeWrapper.parameterNodeWrapper")
                   for d in cls.decorator_list):
            continue
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign):
                for problem in _annotation_problems(stmt.annotation, api):
                    findings.append(Finding(path, stmt.lineno, f"{cls.name}.{dotted_name(stmt.target)}: {problem}"))
    return findings


def _annotation_problems(node: ast.AST, api: SlicerAPI) -> Iterable[str]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        yield "'X | None' needs Slicer 5.10; use typing.Optional[X]"
        return
    if isinstance(node, ast.Constant) and node.value is None:
        return
    if isinstance(node, ast.Subscript):
        head = dotted_name(node.value)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head in ("Annotated", "typing.Annotated"):
            yield from _annotation_problems(items[0], api)
            for extra in items[1:]:
                helper = dotted_name(extra.func) if isinstance(extra, ast.Call) else dotted_name(extra)
                if helper is None or helper.split(".")[-1] not in api.pnw_exports:
                    yield f"unknown Annotated helper {helper}"
            return
        if head in _WRAPPERS:
            for item in items:
                yield from _annotation_problems(item, api)
            return
        yield f"unsupported generic {head}"
        return
    dotted = dotted_name(node)
    if dotted in _SIMPLE_TYPES:
        return
    if dotted and dotted.startswith("slicer.vtkMRML"):
        if not api.is_mrml_node_class(dotted.split(".")[-1]):
            yield f"{dotted} is not a known MRML node class"
        return
    yield f"unsupported parameter type {dotted or ast.dump(node)}"


_SUFFIXES = {"ScriptedLoadableModule": "", "ScriptedLoadableModuleWidget": "Widget",
             "ScriptedLoadableModuleLogic": "Logic", "ScriptedLoadableModuleTest": "Test"}


def check_module_classes(source: str, path: str, module_name: str) -> list[Finding]:
    """``<M>``, ``<M>Widget``, ``<M>Logic``, ``<M>Test`` with the matching ScriptedLoadableModule bases."""
    findings, seen = [], set()
    for cls in ast.parse(source, filename=path).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        bases = {(dotted_name(b) or "").split(".")[-1] for b in cls.bases}
        for base, suffix in _SUFFIXES.items():
            if base in bases:
                seen.add(suffix)
                if cls.name != module_name + suffix:
                    findings.append(Finding(path, cls.lineno, f"class {cls.name} derives from {base}; "
                                                              f"it must be named {module_name + suffix}"))
    if "" not in seen:
        findings.append(Finding(path, 1, f"no class {module_name}(ScriptedLoadableModule)"))
    return findings
