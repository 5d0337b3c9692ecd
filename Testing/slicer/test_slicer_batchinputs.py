"""The panels' batch path (LesionSegLib.batchinputs): ``Logic.process`` of every panel takes lists of inputs."""
from __future__ import annotations

import ast
import inspect

import pytest
from conftest import EXTENSION
from LesionSegLib.batchinputs import BatchInputError, each_input

PANELS = ("LesionSegBoxPrompt", "LesionSegRECIST", "LesionSegScreening", "LesionSegAutoPET", "LesionSegSmallLesion")


class FakeLogic:
    def __init__(self) -> None:
        self.calls = []

    @each_input("volumeNode", "roiNode", "segmentationNode")
    def process(self, volumeNode, roiNode=None, segmentationNode=None, point=(1.0, 2.0, 3.0),
                waitForCompletion: bool = True):
        """Doc kept."""
        if volumeNode == "bad":
            raise ValueError(f"cannot read {volumeNode}")
        self.calls.append((volumeNode, roiNode, segmentationNode, point))
        return f"segment of {volumeNode}"


def test_one_input_is_one_call():
    logic = FakeLogic()
    assert logic.process("ct", "roi") == "segment of ct"
    assert logic.calls == [("ct", "roi", None, (1.0, 2.0, 3.0))]
    assert FakeLogic.process.__doc__ == "Doc kept." and FakeLogic.process.batch_parameters == (
        "volumeNode", "roiNode", "segmentationNode")
    assert list(inspect.signature(FakeLogic.process).parameters)[:3] == ["self", "volumeNode", "roiNode"]


def test_lists_run_one_after_the_other_with_shared_arguments():
    logic = FakeLogic()
    assert logic.process(["a", "b"], roiNode=("r1", "r2"), point=[4.0, 5.0, 6.0]) == ["segment of a", "segment of b"]
    assert logic.calls == [("a", "r1", None, [4.0, 5.0, 6.0]), ("b", "r2", None, [4.0, 5.0, 6.0])]
    assert logic.lastBatchResults == ["segment of a", "segment of b"]


def test_a_failing_input_does_not_stop_the_others():
    logic = FakeLogic()
    with pytest.raises(BatchInputError, match=r"1 of 3 inputs failed: input 2: cannot read bad") as caught:
        logic.process(["a", "bad", "c"])
    assert [c[0] for c in logic.calls] == ["a", "c"]
    assert caught.value.results[0] == "segment of a" and isinstance(caught.value.results[1], ValueError)
    assert logic.lastBatchResults is caught.value.results


def test_mismatched_lists_and_background_lists_are_refused():
    logic = FakeLogic()
    with pytest.raises(ValueError, match="one element per run"):
        logic.process(["a", "b"], ["r1"])
    with pytest.raises(ValueError, match="waitForCompletion=True"):
        logic.process(["a", "b"], waitForCompletion=False)
    assert logic.calls == []
    with pytest.raises(TypeError, match="has no parameter nope"):
        each_input("nope")(FakeLogic.process.__wrapped__)


@pytest.mark.parametrize("panel", PANELS)
def test_every_panel_logic_process_takes_lists(panel):
    tree = ast.parse((EXTENSION / panel / f"{panel}.py").read_text(encoding="utf-8"))
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{panel}Logic")
    process = next(n for n in logic.body if isinstance(n, ast.FunctionDef) and n.name == "process")
    (decorator,) = [d for d in process.decorator_list if isinstance(d, ast.Call) and d.func.id == "each_input"]
    names = [a.value for a in decorator.args]
    parameters = [a.arg for a in process.args.args]
    assert parameters[1] in names and set(names) <= set(parameters)
    readme = (EXTENSION / "README.md").read_text(encoding="utf-8")
    assert "Lists of inputs" in readme and "lastBatchResults" in readme
