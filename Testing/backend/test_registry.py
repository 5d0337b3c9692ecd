"""Every registered method follows the one protocol; parametrised over the registry."""
from __future__ import annotations

import numpy as np
import pytest

import lesionseg
from lesionseg import InputError
from lesionseg.demo import CASES, lesion_prompts
from lesionseg.modelfolder import find_model_folder
from lesionseg.registry import get_method, method_names, register


def _runnable(name: str) -> bool:
    cls = get_method(name)
    return not cls.needs_weights or find_model_folder(name) is not None


@pytest.mark.parametrize("name", method_names())
def test_method_metadata(name):
    cls = get_method(name)
    assert cls.name == name and cls.summary and cls.prompt_kind in ("box", "recist", "none")
    assert cls.spec.demo_case in CASES


@pytest.mark.parametrize("name", method_names())
def test_predict_keeps_geometry(name):
    if not _runnable(name):
        pytest.skip(f"{name}: no weights in this installation")
    cls = get_method(name)
    case = CASES[cls.spec.demo_case](seed=3)
    seg = lesionseg.build(name, device="cpu")
    with pytest.raises(InputError, match="set_image"):
        seg.predict(lesion_prompts(case, cls.prompt_kind)[0])
    seg.set_image(*case.images)
    for prompt in lesion_prompts(case, cls.prompt_kind)[:2]:
        out = seg.predict(prompt)
        assert out.same_grid(case.images[0], tol=0)
        assert out.array.dtype == np.uint8 and out.array.max() >= 1
        again = seg.predict(prompt)
        np.testing.assert_array_equal(again.array, out.array)  # predict is repeatable


def test_unknown_method_and_double_registration():
    with pytest.raises(InputError, match="unknown method"):
        lesionseg.build("no-such-method")
    with pytest.raises(ValueError, match="registered twice"):
        register(method_names()[0], prompt="box", summary="x")(type("Other", (lesionseg.Segmenter,), {}))


EXPECTED_PROMPT = {"box": "needs a Box prompt", "recist": "needs a RecistLine prompt", "none": "takes no prompt"}


@pytest.mark.parametrize("name", method_names())
def test_python_api_misuse_raises_input_error_saying_what_is_expected(name):
    """``seg.set_image(array)``, ``seg.set_image("ct.nii.gz")``, ``seg.predict("box")``: InputError, not
    AttributeError, for every method (all go through the base class's ``set_image``)."""
    if not _runnable(name):
        pytest.skip(f"{name}: no weights in this installation")
    seg = lesionseg.build(name, device="cpu")
    others = [np.zeros((4, 4, 4))] * (len(seg.inputs) - 1)
    what = "set_image" if len(seg.inputs) == 1 else f"set_image ({seg.inputs[0]})"
    for value, got in ((np.zeros((4, 4, 4)), "numpy.ndarray of shape (4, 4, 4)"), ("ct.nii.gz", "str 'ct.nii.gz'")):
        with pytest.raises(InputError) as caught:
            seg.set_image(value, *others)
        assert str(caught.value) == (f"{what} expects a lesionseg.Image (read one with lesionseg.read_image(path), or "
                                     f"wrap an array: lesionseg.Image(array, spacing, origin, direction)); got {got}")
    with pytest.raises(InputError, match=f"takes {len(seg.inputs)} image"):
        seg.set_image(*([lesionseg.Image(np.zeros((4, 4, 4)))] * (len(seg.inputs) + 1)))
    for prompt in ("box", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)):
        with pytest.raises(InputError, match=EXPECTED_PROMPT[get_method(name).prompt_kind]):
            seg.predict(prompt)
