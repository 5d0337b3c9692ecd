from __future__ import annotations

import numpy as np
import pytest

from lesionseg import Box, InputError, Points, RecistLine
from lesionseg.prompts import prompt_from_dict


def test_box_orders_corners():
    box = Box((5, -1, 3), (1, 4, 0))
    assert box.lo.tolist() == [1, -1, 0] and box.hi.tolist() == [5, 4, 3]
    assert box.corners.shape == (8, 3)
    assert {tuple(c) for c in box.corners} == {(x, y, z) for x in (1, 5) for y in (-1, 4) for z in (0, 3)}


@pytest.mark.parametrize("prompt", [
    Box((1, 2, 3), (4, 5, 6)),
    RecistLine((0, 0, 0), (3, 4, 0)),
    RecistLine((0, 0, 0), (3, 4, 0), (1, 1, 0), (2, 0, 0)),
    Points([[1, 2, 3], [4, 5, 6]], [1, 0]),
])
def test_round_trip_dict(prompt):
    again = prompt_from_dict(prompt.to_dict())
    assert type(again) is type(prompt)
    assert again.to_dict() == prompt.to_dict()


def test_recist_lengths():
    line = RecistLine((0, 0, 0), (3, 4, 0), (1, 1, 0), (1, 3, 0))
    assert line.long_length_mm == 5.0 and line.short_length_mm == 2.0


@pytest.mark.parametrize("make", [
    lambda: Box((0, 0), (1, 1, 1)),
    lambda: Box((0, np.inf, 0), (1, 1, 1)),
    lambda: RecistLine((0, 0, 0), (1, 0, 0), (0, 0, 0)),
    lambda: Points([[0, 0, 0]], [2]),
    lambda: Points(np.zeros((0, 3)), []),
    lambda: prompt_from_dict({"kind": "circle"}),
])
def test_bad_prompts_raise(make):
    with pytest.raises(InputError):
        make()
