"""S4C verdicts (issue #18): the checks that make a phase inconclusive (pancreas in view, plausible adult volume,
an abdominal scan), how phases fuse, and the verdict values of the report."""
from __future__ import annotations

import numpy as np
import pytest

from lesionseg import Image
from lesionseg.errors import InputError
from lesionseg.methods.s4c.rules import ScreeningRule, fuse, phase_findings
from lesionseg.methods.s4c.verdict import (abdomen_problem, air_fraction_at_pancreas, as_verdict, axial_axis,
                                           positive_of)


def _label(shape=(20, 40, 40), spacing=(1.0, 1.0, 1.0)) -> Image:
    return Image(np.zeros(shape, np.uint8), spacing, (10.0, -20.0, 30.0))


def _organ(millilitres: float, tumour_voxels: int = 0) -> Image:
    """Labels on a 2 mm grid (8 mm^3 voxels, 20 x 40 x 40 voxels: up to 256 mL) holding ``millilitres`` of
    pancreas (label 1, filled in array order) and a tumour block of ``tumour_voxels`` (label 2) inside it."""
    lab = _label(spacing=(2.0, 2.0, 2.0))
    arr = np.zeros(lab.array.size, np.uint8)
    arr[:round(millilitres * 1000 / 8)] = 1
    arr = arr.reshape(lab.array.shape)
    arr.reshape(-1)[:tumour_voxels] = 2
    return lab.with_array(arr)


@pytest.mark.parametrize("millilitres, verdict, reason", [
    (0.0, "inconclusive", "no pancreas in view (venous phase: 0.0 mL segmented, under 5 mL): is this an abdominal "
                          "CT covering the pancreas?"),
    (4.992, "inconclusive", "no pancreas in view (venous phase: 5.0 mL segmented, under 5 mL)"),  # one voxel short
    (5.0, "inconclusive", "pancreas smaller than a plausible adult one (venous phase: 5.0 mL segmented, under 15 mL; "
                          "the adult mean is about 72 mL, Saisho et al., Clin Anat 2007): partly out of view or not "
                          "fully segmented"),
    (14.992, "inconclusive", "pancreas smaller than a plausible adult one (venous phase: 15.0 mL segmented, under "
                             "15 mL"),
    (15.0, "negative", "venous: tumour 0 mm3 (< 40) and duct 0 mm3 (< 500) in 15.0 mL of pancreas"),
    (250.0, "negative", "venous: tumour 0 mm3 (< 40) and duct 0 mm3 (< 500) in 250.0 mL of pancreas"),
    (250.008, "inconclusive", "pancreas larger than a plausible adult one (venous phase: 250.0 mL segmented, over "
                              "250 mL; the adult mean is about 72 mL, Saisho et al., Clin Anat 2007): the segmentation "
                              "spilled into other organs"),
])
def test_each_pancreas_volume_check_gives_one_reason(millilitres, verdict, reason):
    """No pancreas in view below 5 mL, outside plausible adult limits below 15 mL or above 250 mL (the bounds
    themselves pass): inconclusive, ``positive`` None, one reason that says which limit."""
    found = phase_findings(_organ(millilitres), ScreeningRule(), "venous")
    assert found.verdict == verdict and found.inconclusive is (verdict == "inconclusive")
    assert found.positive is (None if verdict == "inconclusive" else False)
    assert len(found.reasons) == 1 and found.reasons[0].startswith(reason)
    assert found.to_dict()["verdict"] == verdict and found.to_dict()["positive"] is found.positive


def test_a_finding_without_a_plausible_pancreas_is_set_aside_not_positive():
    """A 160 mm^3 'tumour' in 2 mL of segmented organ (a stray blob on a chest CT): inconclusive, never positive."""
    found = phase_findings(_organ(2.0, tumour_voxels=20), ScreeningRule(), "venous")
    assert found.verdict == "inconclusive" and found.positive is None and found.tumour_mm3 == 160.0
    assert found.reasons[0].startswith("no pancreas in view (venous phase: 2.0 mL segmented")
    assert found.reasons[1].startswith("venous: set aside, since the checks failed: tumour 160 mm3 (>= 40 mm3)")
    assert [f.kind for f in found.findings] == ["tumour"]            # still listed, for a person to look at
    assert phase_findings(_organ(20.0, tumour_voxels=20), ScreeningRule(), "venous").verdict == "positive"


def test_case_verdict_is_inconclusive_unless_a_phase_is_positive():
    from lesionseg.methods.s4c.rules import case_verdict

    negative = phase_findings(_organ(80.0), ScreeningRule(), "venous")
    unread = phase_findings(_organ(0.0), ScreeningRule(), "arterial")
    positive = phase_findings(_organ(80.0, tumour_voxels=20), ScreeningRule(), "venous")
    assert (negative.verdict, unread.verdict, positive.verdict) == ("negative", "inconclusive", "positive")
    assert case_verdict([negative]) == ("negative", negative.reasons)
    assert case_verdict([negative, unread]) == ("inconclusive", unread.reasons + negative.reasons)
    assert case_verdict([unread]) == ("inconclusive", unread.reasons)
    assert case_verdict([unread, positive]) == ("positive", positive.reasons)
    assert fuse([negative, unread]) == (None, unread.reasons + negative.reasons)   # positive unknown: None
    assert fuse([negative]) == (False, negative.reasons)
    assert fuse([unread, positive]) == (True, positive.reasons)


def test_verdict_values_and_positive():
    assert [positive_of(v) for v in ("positive", "negative", "inconclusive")] == [True, False, None]
    assert as_verdict("INCONCLUSIVE") == "inconclusive"                # reports before issue #18
    with pytest.raises(InputError, match="unknown verdict 'maybe'"):
        positive_of("maybe")


def _torso(lungs: bool) -> Image:
    """(12, 24, 28) CT, 1.5 x 1.5 x 2 mm: air around a 40 HU body of 18 x 22 voxels per slice on slices 2-9;
    with ``lungs``, two air-filled lungs (-850 HU, 14 x 8 voxels each) fill 224 / 396 = 57 % of it."""
    arr = np.full((12, 24, 28), -1000, np.int16)
    arr[2:10, 3:21, 3:25] = 40
    if lungs:
        arr[2:10, 5:19, 5:13] = -850
        arr[2:10, 5:19, 15:23] = -850
    return Image(arr, (1.5, 1.5, 2.0), (-20.0, 10.0, -300.0))


def _blob(slices=slice(4, 8)) -> np.ndarray:
    """A 'pancreas' block on :func:`_torso`'s grid, among the lungs when there are some."""
    lab = np.zeros((12, 24, 28), np.uint8)
    lab[slices, 8:14, 6:22] = 1
    return lab


def test_the_anatomy_check_measures_air_in_the_body_at_the_pancreas():
    chest, belly = _torso(lungs=True), _torso(lungs=False)
    assert air_fraction_at_pancreas(chest, chest.with_array(_blob())) == pytest.approx(224 / 396)
    assert air_fraction_at_pancreas(belly, belly.with_array(_blob())) == 0.0
    assert air_fraction_at_pancreas(belly, belly.with_array(_blob(slice(0, 2)))) == 1.0  # no body there: all air
    assert air_fraction_at_pancreas(chest, chest.with_array(np.zeros((12, 24, 28), np.uint8))) is None
    assert abdomen_problem(belly, belly.with_array(_blob()), "venous") is None
    assert abdomen_problem(chest, chest.with_array(_blob()), "venous") == (
        "not an abdominal scan (venous phase: air fills 57 % of the body at the levels of the segmented pancreas, "
        "over 25 %): it lies in the chest, among the lungs")
    with pytest.raises(InputError, match="not on the grid"):
        air_fraction_at_pancreas(chest, _label())


def test_the_anatomy_check_follows_the_axial_axis():
    """The air share is measured on axial slices, whichever array axis runs along LPS z."""
    chest = _torso(lungs=True)
    assert axial_axis(chest) == 0
    swap = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])          # j runs along z, k along y
    turned = Image(np.ascontiguousarray(chest.array.transpose(1, 0, 2)), (1.5, 2.0, 1.5), direction=swap)
    assert axial_axis(turned) == 1
    label = turned.with_array(np.ascontiguousarray(_blob().transpose(1, 0, 2)))
    assert air_fraction_at_pancreas(turned, label) == pytest.approx(224 / 396)
    label = turned.with_array(np.ascontiguousarray(_blob(slice(0, 12)).transpose(1, 0, 2)))
    assert air_fraction_at_pancreas(turned, label) == pytest.approx((8 * 224 / 396 + 4) / 12)


def test_phase_findings_runs_the_anatomy_check_with_the_ct():
    rule = ScreeningRule(pancreas_min_mm3=0.0, pancreas_adult_min_mm3=0.0)
    chest = _torso(lungs=True)
    label = chest.with_array(_blob())
    assert phase_findings(label, rule, "venous").verdict == "negative"          # no CT: no anatomy check
    found = phase_findings(label, rule, "venous", chest)
    assert found.verdict == "inconclusive" and found.positive is None
    assert found.reasons[0].startswith("not an abdominal scan (venous phase: air fills 57 %")
    assert phase_findings(label, rule, "venous", _torso(lungs=False)).verdict == "negative"
