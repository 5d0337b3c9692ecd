"""LesionSegLib.results, .undo and .device: naming, tags, changed region, undo order, device choice."""
from __future__ import annotations

import json

import numpy as np
import pytest
from LesionSegLib import device, results, undo

from lesionseg import Box, Image, InputError, RecistLine
from lesionseg.prompts import prompt_from_dict


def test_next_lesion_name():
    assert results.next_lesion_name([]) == "lesion 1"
    assert results.next_lesion_name(["lesion 1", "lesion 3", "liver", "lesion 2a", None]) == "lesion 4"
    assert results.next_lesion_name(["Lesion 7", "lesion"]) == "lesion 1"


def test_lesion_colours_cycle_and_are_rgb():
    n = len(results.LESION_COLORS)
    assert results.lesion_color("lesion 1") == results.LESION_COLORS[0]
    assert results.lesion_color(f"lesion {n + 2}") == results.LESION_COLORS[1]
    assert results.lesion_color("other") == results.LESION_COLORS[0]
    assert all(len(c) == 3 and all(0.0 <= v <= 1.0 for v in c) for c in results.LESION_COLORS)


def test_terminology_entry_format():
    fields = results.TERMINOLOGY_MASS.split("~")
    assert len(fields) == 7
    assert fields[1] == "SCT^49755003^Morphologically Altered Structure"
    assert fields[2] == "SCT^4147007^Mass"


@pytest.mark.parametrize("prompt", [Box((1.5, -2.0, 3.0), (4.0, 5.0, 6.25)),
                                    RecistLine((0, 0, 0), (10, 0, 0), (5, -2, 0), (5, 2, 0)), None])
def test_segment_tags_round_trip(prompt):
    tags = results.segment_tags("classical-box", prompt, "0.1.0")
    assert tags[results.METHOD_TAG] == "classical-box" and tags[results.VERSION_TAG] == "0.1.0"
    back = prompt_from_dict(json.loads(tags[results.PROMPT_TAG]))
    if prompt is None:
        assert back is None
    else:
        assert back.to_dict() == prompt.to_dict()
    with pytest.raises(InputError):
        results.segment_tags("", prompt)


def test_label_patch_is_the_nonzero_bounding_box():
    label = np.zeros((5, 6, 7), np.uint8)
    label[1, 2, 3] = 1
    label[3, 4, 5] = 2
    patch = results.label_patch(label)
    np.testing.assert_array_equal(patch.lo, [3, 2, 1])
    np.testing.assert_array_equal(patch.hi, [5, 4, 3])
    assert patch.extent == (3, 5, 2, 4, 1, 3)
    assert patch.array.shape == (3, 3, 3) and patch.array.dtype == np.uint8
    assert patch.voxels == 2 and set(np.unique(patch.array)) == {0, 1}
    np.testing.assert_array_equal(results.paste(patch, label.shape), label > 0)
    assert results.label_patch(np.zeros((2, 2, 2))) is None
    with pytest.raises(InputError):
        results.label_patch(np.zeros((2, 2)))
    with pytest.raises(InputError):
        results.paste(patch, (2, 2, 2))


def test_slice_index_and_keep_slice():
    image = Image(np.ones((4, 3, 3), np.uint8), (1.0, 1.0, 2.5), (0.0, 0.0, -5.0))
    assert results.slice_index(image, [0.0, 0.0, -5.0]) == 0
    assert results.slice_index(image, [1.0, 1.0, 1.1]) == 2  # (1.1 + 5) / 2.5 = 2.44
    with pytest.raises(InputError):
        results.slice_index(image, [0.0, 0.0, 20.0])
    kept = results.keep_slice(image, 2)
    assert kept.same_grid(image)
    assert kept.array.sum() == 9 and kept.array[2].sum() == 9


def test_undo_stack_reverts_latest_first_and_forgets_oldest():
    log = []
    stack = undo.UndoStack(limit=2)
    assert stack.undo() is None and stack.next_description is None
    for name in ("a", "b", "c"):
        stack.push(name, lambda name=name: log.append(name))
    assert len(stack) == 2 and stack.next_description == "c"
    assert stack.undo() == "c" and stack.undo() == "b" and stack.undo() is None
    assert log == ["c", "b"]
    with pytest.raises(ValueError):
        undo.UndoStack(limit=0)


def test_undo_step_that_fails_is_dropped_and_raises():
    stack = undo.UndoStack()
    stack.push("ok", lambda: None)
    stack.push("broken", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        stack.undo()
    assert stack.undo() == "ok"
    stack.push("x", lambda: None)
    stack.clear()
    assert len(stack) == 0


def test_device_choices_without_torch():
    missing = lambda name: None  # noqa: E731  (find_spec of a machine without torch)
    assert device.cuda_available(missing) is False
    assert device.DEVICE_CHOICES == ("auto", "cpu", "cuda")
    assert device.resolve("auto", cuda=False) == "cpu"
    assert device.resolve("auto", cuda=True) == "cuda"
    assert device.resolve("cpu", cuda=True) == "cpu"
    assert device.resolve("cuda", cuda=True) == "cuda"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        device.resolve("cuda", cuda=False)
    with pytest.raises(ValueError, match="device must be one of"):
        device.resolve("gpu", cuda=True)
    assert device.describe("auto", cuda=False) == "auto: runs on the CPU (no CUDA GPU found)"
    assert device.describe("cuda", cuda=False) == "cuda: not available here (no CUDA GPU found)"
    assert device.describe("cpu", cuda=True) == "cpu: runs on the CPU"
