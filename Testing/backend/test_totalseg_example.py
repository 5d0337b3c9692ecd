"""lesionseg.data.totalseg: the example CT's label placed on the full CT's grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lesionseg import Image
from lesionseg.data.totalseg import PANCREAS, SMALL_BOWEL, place_label, read_example
from lesionseg.errors import InputError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "totalseg-example-ct"
"""``../shared/data/totalseg-example-ct`` from the repository root."""


def _grid(array: np.ndarray) -> Image:
    return Image(array, (0.8, 0.9, 3.0), (-10.0, 20.0, 30.0))


def test_label_goes_to_the_best_matching_run_of_slices():
    ct = np.random.default_rng(0).integers(-1000, 1000, (10, 6, 7)).astype(np.int16)
    seg = np.random.default_rng(1).integers(0, 118, (3, 6, 7)).astype(np.uint8)
    small = ct[4:7] + np.random.default_rng(2).integers(-2, 3, (3, 6, 7)).astype(np.int16)   # a noisy copy
    out = place_label(_grid(ct), _grid(small), _grid(seg))
    assert out.shape == ct.shape and out.array.dtype == np.uint8 and out.same_grid(_grid(ct))
    assert np.array_equal(out.array[4:7], seg) and not out.array[:4].any() and not out.array[7:].any()


def test_bad_shapes_and_missing_files_raise(tmp_path):
    ct = _grid(np.zeros((10, 6, 7), np.int16))
    with pytest.raises(InputError, match="not a run of slices"):
        place_label(ct, _grid(np.zeros((3, 6, 8), np.int16)), _grid(np.zeros((3, 6, 8), np.uint8)))
    with pytest.raises(InputError, match="not a run of slices"):
        place_label(ct, _grid(np.zeros((11, 6, 7), np.int16)), _grid(np.zeros((11, 6, 7), np.uint8)))
    with pytest.raises(InputError, match="not on the small CT's grid"):
        place_label(ct, _grid(np.zeros((3, 6, 7), np.int16)), _grid(np.zeros((2, 6, 7), np.uint8)))
    with pytest.raises(InputError, match="example_ct.nii.gz, example_ct_sm.nii.gz, example_seg.nii.gz"):
        read_example(tmp_path)


@pytest.mark.skipif(not (DATA / "example_ct.nii.gz").is_file(), reason="no ../shared/data/totalseg-example-ct")
def test_the_example_label_covers_slices_82_to_111():
    ct, label = read_example(DATA)
    assert ct.shape == (112, 101, 122) and label.same_grid(ct)
    covered = np.flatnonzero(label.array.any(axis=(1, 2)))
    assert covered[0] == 82 and covered[-1] == 111
    assert (label.array == PANCREAS).any() and (label.array == SMALL_BOWEL).any()
