"""scripts/s4c_real_ct.py: the tumour it inserts into a real CT (size, contrast, noise kept, geometry) and its
table; the run on real data itself is a measurement (docs/s4c.md), not a test."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lesionseg.image import Image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("s4c_real_ct", REPO / "scripts" / "s4c_real_ct.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ct(noise: float = 10.0) -> tuple[Image, np.ndarray]:
    rng = np.random.default_rng(0)
    hu = 40.0 + rng.normal(0.0, noise, (30, 40, 50))
    organ = np.zeros(hu.shape, bool)
    organ[5:25, 8:32, 10:40] = True
    hu[~organ] = -100.0 + rng.normal(0.0, noise, (~organ).sum())
    image = Image(np.rint(hu).astype(np.int16), spacing=(1.0, 1.0, 2.0), origin=(5.0, -3.0, 7.0))
    return image, organ


@pytest.mark.parametrize("contrast", [70.0, -40.0])
def test_inserted_tumour_has_the_size_and_contrast_asked_and_keeps_the_noise(script, contrast):
    ct, organ = _ct()
    moved, tumour = script.insert_tumour(ct, organ, radius_mm=6.0, contrast_hu=contrast)
    volume = tumour.sum() * np.prod(ct.spacing)
    assert volume == pytest.approx(4 / 3 * np.pi * 6.0 ** 3, rel=0.15)
    core = ndimage.binary_erosion(tumour)  # wholly inside: the partial-volume rim is fainter by design
    assert moved.array[core].mean() - ct.array[organ].mean() == pytest.approx(contrast, abs=4.0)
    assert moved.array[tumour].std() > 5.0  # the CT's own noise stays inside the tumour
    away = np.ones(organ.shape, bool)
    away[1:29, 8:32, 14:36] = False
    assert np.array_equal(moved.array[away], ct.array[away])
    assert moved.array.dtype == ct.array.dtype and np.allclose(moved.origin, ct.origin)
    centre = np.argwhere(tumour).mean(axis=0)
    assert organ[tuple(np.rint(centre).astype(int))] and organ[tumour].all()  # deep inside: 6 mm < 12 mm depth


def test_dice_and_markdown(script):
    a = np.zeros((4, 4), bool)
    a[:2] = True
    assert script.dice(a, a) == 1.0 and script.dice(a, ~a) == 0.0 and script.dice(a & ~a, a & ~a) is None
    rows = {"model": "m", "pancreas_dice": 0.5, "pancreas_label_mm3": 17000.0,
            "cases": [{"case": "c", "truth": "negative", "verdict": "inconclusive", "pancreas_mm3": 6615.0,
                       "tumour_mm3": 135.0, "reasons": ["too small | odd"]}]}
    text = script.markdown(rows)
    assert "| c | negative | inconclusive | 6.6 | 135 |  | too small / odd |" in text
