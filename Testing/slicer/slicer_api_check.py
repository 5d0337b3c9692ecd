"""Static checks of Slicer API use in Python sources, against the JSON dump of Slicer's API.

What is checked (each returns a list of :class:`Finding`; empty = clean):

* ``slicer.util.X(...)`` / ``slicer.packaging.X(...)``: X exists; keyword arguments exist in its signature
  (and, for functions whose signature changed, in the v5.8.1 signature too); not too many positional ones.
* VTK/MRML-style calls ``obj.Method(...)`` (capitalised method names): the method exists. When the receiver
  is known -- ``slicer.mrmlScene``, ``slicer.vtkX``, or a variable named as in :data:`RECEIVER_CLASSES` --
  it must exist in that class's chain and be wrapped for Python; a name added after v5.8.1 must be guarded
  by ``hasattr(obj, "Name")`` in the same file. Otherwise it must exist in some class of the dump.
* ``AddNewNodeByClass("vtkMRML...")`` and friends name a known node class.

Receivers are typed per function: a variable assigned there gets the class its value has (``AddNewNodeByClass``'s
argument, or the return type of a method in the dump), refined by the naming convention when that is a subclass;
an unknown value makes the variable unknown. Module structure is checked in :mod:`slicer_module_check`.

Qt/CTK/PythonQt calls are not in the dump and are not checked.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

RECEIVER_CLASSES = {
    "volumeNode": "vtkMRMLScalarVolumeNode",
    "petNode": "vtkMRMLScalarVolumeNode",
    "ctNode": "vtkMRMLScalarVolumeNode",
    "segmentationNode": "vtkMRMLSegmentationNode",
    "roiNode": "vtkMRMLMarkupsROINode",
    "unplaced": "vtkMRMLMarkupsROINode",
    "outside": "vtkMRMLMarkupsROINode",
    "lineNode": "vtkMRMLMarkupsLineNode",
    "shortLineNode": "vtkMRMLMarkupsLineNode",
    "node": "vtkMRMLDisplayableNode",
    "created": "vtkMRMLSegmentationNode",
    "displayNode": "vtkMRMLDisplayNode",
    "segmentation": "vtkSegmentation",
    "segment": "vtkSegment",
    "shNode": "vtkMRMLSubjectHierarchyNode",
    "labelmap": "vtkOrientedImageData",
    "scene": "vtkMRMLScene",
    "logic": "vtkSlicerSegmentationsModuleLogic",
    "sliceNode": "vtkMRMLSliceNode",
    "tableNode": "vtkMRMLTableNode",
    "editorNode": "vtkMRMLSegmentEditorNode",
}
"""Variable names the LesionSeg sources use for MRML/VTK objects, and their classes (be specific)."""

OUTSIDE_DUMP = {
    "vtkMRMLSliceNode": ("vtkMRMLNode", {"GetSliceToRAS", "GetFieldOfView"}),
    "vtkDataSetAttributes": (None, {"GetScalars"}),
    "vtkSlicerMarkupsLogic": ("vtkSlicerModuleLogic", {"StartPlaceMode", "SetActiveList", "JumpSlicesToLocation"}),
    "vtkMRMLTableNode": ("vtkMRMLStorableNode", {"AddColumn", "RemoveAllColumns", "GetNumberOfColumns"}),
}
"""Classes the dump does not cover: ``(base class in the dump, the only own methods allowed)`` (names stable for
years: vtkMRMLSliceNode.h ``GetSliceToRAS``/``GetFieldOfView``; vtkDataSetAttributes ``GetScalars``;
vtkSlicerMarkupsLogic.h ``StartPlaceMode``/``SetActiveList``/``JumpSlicesToLocation``; vtkMRMLTableNode.h at v5.8.1
``AddColumn`` (line 145), ``RemoveAllColumns`` (162), ``GetNumberOfColumns`` (208), a vtkMRMLStorableNode)."""

CREATORS = ("AddNewNodeByClass", "GetFirstNodeByClass", "CreateNodeByClass")
"""Scene methods whose first argument names the class of the node they return."""

MODULE_LOGICS = {
    "slicer.modules.markups.logic": "vtkSlicerMarkupsLogic",
    "slicer.modules.segmentations.logic": "vtkSlicerSegmentationsModuleLogic",
}
"""``slicer.modules.<name>.logic()`` receivers and their classes."""

_CAPITALISED = re.compile(r"^[A-Z][A-Za-z0-9_]*[a-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _split_params(signature: str) -> list[str]:
    """Parameter names of a signature text like ``(a, b: dict[str, str] | None=None, **kw)``."""
    text = signature.strip()
    if text.startswith("("):
        text = text[1:text.rfind(")")]
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [re.split(r"[:=]", p, maxsplit=1)[0].strip() for p in parts]


class SlicerAPI:
    """Lookups over the JSON dump."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.util = data["slicer.util"]["functions"]
        self.util_classes = set(data["slicer.util"].get("classes", {}))
        self.util_changed = data["slicer.util"].get("signature_changed_since_v5.8.1", {})
        self.packaging = data["slicer.packaging"]["functions"]
        self.classes = data["cpp_classes"]
        note = data.get("vtk_base_note", "")
        self.vtk_base = set(re.findall(r"\b([A-Z][a-z]+[A-Z][A-Za-z0-9]*|Modified|Register)\b", note))
        self.all_methods = set(self.vtk_base)
        for info in self.classes.values():
            self.all_methods.update(info["methods"])
        for _, methods in OUTSIDE_DUMP.values():
            self.all_methods.update(methods)
        pnw = data["slicer.parameterNodeWrapper"]
        self.pnw_exports = {name for names in pnw["exports"].values() for name in names}
        self.pnw_exports.update(pnw.get("annotation_helpers", {}))
        self.pnw_exports.update(pnw.get("validators", {}))
        self.pnw_exports.add("FloatRange")
        self.slm = data["slicer.ScriptedLoadableModule"]

    def chain(self, cls: str) -> list[str]:
        if cls in OUTSIDE_DUMP:
            base = OUTSIDE_DUMP[cls][0]
            return [cls] + (self.chain(base) if base else [])
        return self.classes[cls]["chain"] if cls in self.classes else [cls]

    def returns(self, cls: str, method: str) -> Optional[str]:
        """The class a method returns (first overload), when that class is known here."""
        for name in self.chain(cls):
            signatures = self.classes.get(name, {}).get("methods", {}).get(method)
            if signatures:
                match = re.match(r"(?:static\s+)?(?:const\s+)?(\w+)", str(signatures[0]))
                result = match.group(1) if match else None
                return result if result in self.classes or result in OUTSIDE_DUMP else None
        return None

    def lookup(self, cls: str, method: str) -> Optional[str]:
        """``None`` when ``cls`` (with its chain) has a Python-callable ``method``; else the problem."""
        if cls in OUTSIDE_DUMP:
            base, allowed = OUTSIDE_DUMP[cls]
            if method in allowed or (base and self.lookup(base, method) is None):
                return None
            return f"{cls}.{method} is not an allowed method"
        if cls not in self.classes:
            return f"class {cls} is not in the Slicer API dump"
        for name in self.chain(cls):
            info = self.classes.get(name)
            if info and method in info["methods"]:
                if all(str(s).endswith("[not wrapped]") for s in info["methods"][method]):
                    return f"{name}.{method} is not wrapped for Python"
                return None
        if method in self.vtk_base:
            return None
        return f"{cls} (chain {' > '.join(self.chain(cls))}) has no method {method}"

    def newer_than_58(self, cls: str, method: str) -> bool:
        return method in self.classes.get(cls, {}).get("not_in_v5.8.1", [])

    def is_mrml_node_class(self, name: str) -> bool:
        return (name in self.classes or name in OUTSIDE_DUMP) and "vtkMRMLNode" in self.chain(name)


def dotted_name(node: ast.AST) -> Optional[str]:
    """``a.b.c`` for Name/Attribute chains, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Types:
    """Classes of expressions in one function: its own assignments first, then the naming convention."""

    def __init__(self, api: SlicerAPI, scope: ast.AST, parent: Optional["_Types"] = None) -> None:
        self.api, self.parent, self.assigned = api, parent, {}
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.assigned.setdefault(target.id, []).append(node.value)
            stack.extend(ast.iter_child_nodes(node))

    def of(self, expr: ast.AST, depth: int = 0) -> Optional[str]:
        if depth > 6:
            return None
        if isinstance(expr, ast.Call):
            if not isinstance(expr.func, ast.Attribute):
                return None
            if expr.func.attr in CREATORS and expr.args and isinstance(expr.args[0], ast.Constant):
                return str(expr.args[0].value)
            owner = self.of(expr.func.value, depth + 1)
            if owner is not None:
                return self.api.returns(owner, expr.func.attr)
            return MODULE_LOGICS.get(dotted_name(expr.func) or "")
        dotted = dotted_name(expr)
        if dotted is None:
            return None
        if dotted == "slicer.mrmlScene":
            return "vtkMRMLScene"
        if dotted.startswith("slicer.vtk") and dotted.count(".") == 1:
            return dotted.split(".")[1]
        if isinstance(expr, ast.Name):
            types = self
            while types is not None and expr.id not in types.assigned:
                types = types.parent
            if types is not None:
                found = {types.of(value, depth + 1) for value in types.assigned[expr.id]}
                cls = found.pop() if len(found) == 1 else None
                convention = RECEIVER_CLASSES.get(expr.id)
                # A base-class return (e.g. GetNodeByID -> vtkMRMLNode) is refined by the naming convention.
                return convention if cls and convention and cls in self.api.chain(convention) else cls
        return RECEIVER_CLASSES.get(dotted.split(".")[-1])


def _scopes(tree: ast.AST, api: SlicerAPI):
    """``(node, types of its innermost function)`` for every node of the tree."""
    def visit(node: ast.AST, types: _Types):
        for child in ast.iter_child_nodes(node):
            inner = _Types(api, child, types) if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else types
            yield child, inner
            yield from visit(child, inner)

    return visit(tree, _Types(api, tree))


def _imports(tree: ast.AST) -> tuple[set[str], dict[str, str]]:
    """Names bound to modules by imports, and aliases of Slicer API modules (alias -> full name)."""
    modules, aliases = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                modules.add(bound)
                if alias.name in ("slicer.util", "slicer.packaging"):
                    aliases[bound] = alias.name if alias.asname else "slicer"
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                modules.add(alias.asname or alias.name)
    return modules, aliases


def check_source(source: str, path: str, api: SlicerAPI, stats: Optional[dict] = None) -> list[Finding]:
    """All API findings of one Python source (see the module docstring)."""
    tree = ast.parse(source, filename=path)
    findings: list[Finding] = []
    modules, aliases = _imports(tree)
    guarded = {node.args[1].value for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr"
               and len(node.args) == 2 and isinstance(node.args[1], ast.Constant)}
    stats = stats if stats is not None else {}

    def add(node: ast.AST, message: str) -> None:
        findings.append(Finding(path, getattr(node, "lineno", 0), message))

    for node, types in _scopes(tree, api):
        if isinstance(node, ast.ImportFrom) and node.module in ("slicer.util", "slicer.ScriptedLoadableModule",
                                                                 "slicer.parameterNodeWrapper"):
            known = {"slicer.util": set(api.util) | api.util_classes,
                     "slicer.ScriptedLoadableModule": set(api.slm["__all__"]),
                     "slicer.parameterNodeWrapper": api.pnw_exports}[node.module]
            for alias in node.names:
                if alias.name not in known:
                    add(node, f"{node.module} has no {alias.name}")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name, receiver = node.func.attr, node.func.value
        dotted = dotted_name(receiver)
        if dotted is not None and dotted.split(".")[0] in aliases:
            dotted = aliases[dotted.split(".")[0]] + dotted[len(dotted.split(".")[0]):]
        if dotted in ("slicer.util", "slicer.packaging"):
            stats["python_api"] = stats.get("python_api", 0) + 1
            _check_python_call(node, dotted, name, api, add)
            continue
        if not _CAPITALISED.match(name):
            continue
        root = dotted.split(".")[0] if dotted else None
        if dotted is not None and "." not in dotted and root in modules and root not in RECEIVER_CLASSES:
            continue  # module.Class(...) or module.function(...): not a VTK method call
        if root in ("qt", "ctk"):
            continue
        stats["vtk_calls"] = stats.get("vtk_calls", 0) + 1
        cls = types.of(receiver)
        if cls is not None:
            stats["typed_calls"] = stats.get("typed_calls", 0) + 1
            problem = api.lookup(cls, name)
            if problem:
                add(node, problem)
            elif api.newer_than_58(cls, name) and name not in guarded:
                add(node, f"{cls}.{name} is not in Slicer 5.8.1; guard it with hasattr(obj, {name!r})")
        elif name not in api.all_methods:
            add(node, f"no class in the Slicer API dump has a method {name}")
        if name in ("AddNewNodeByClass", "GetFirstNodeByClass", "GetNodesByClass", "CreateNodeByClass") \
                and node.args and isinstance(node.args[0], ast.Constant):
            if not api.is_mrml_node_class(node.args[0].value):
                add(node, f"{node.args[0].value!r} is not a known MRML node class")
    return findings


def _check_python_call(node: ast.Call, module: str, name: str, api: SlicerAPI, add) -> None:
    functions = api.util if module == "slicer.util" else api.packaging
    if name not in functions:
        if not (module == "slicer.util" and name in api.util_classes):
            add(node, f"{module} has no function {name}")
        return
    params = _split_params(functions[name])
    star_args = any(p.startswith("*") and not p.startswith("**") for p in params)
    star_kwargs = any(p.startswith("**") for p in params)
    plain = [p for p in params if p and not p.startswith("*")]
    if not star_args and len(node.args) > len(plain):
        add(node, f"{module}.{name} takes at most {len(plain)} positional arguments")
    old = api.util_changed.get(name, {}).get("v5.8.1") if module == "slicer.util" else None
    old_params = set(_split_params(old)) if old else None
    for keyword in node.keywords:
        if keyword.arg is None:
            continue
        if keyword.arg not in plain and not star_kwargs:
            add(node, f"{module}.{name} has no parameter {keyword.arg}")
        elif old_params is not None and keyword.arg not in old_params:
            add(node, f"{module}.{name}({keyword.arg}=...) does not exist in Slicer 5.8.1")


def python_sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
