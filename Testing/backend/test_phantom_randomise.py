"""Domain-randomised pancreas phantoms (#18): ``pancreas_ct(style=...)``, :mod:`lesionseg.phantoms.randomise` and
``lesionseg data synthetic s4c --randomise``."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from scipy import ndimage

from lesionseg import InputError
from lesionseg.phantoms.pancreas import LABELS, TUMOUR_MM, pancreas_ct
from lesionseg.phantoms.randomise import (CODE_BASE, RANDOMISED_TUMOUR_MM, RenderParams, render_randomised,
                                          tumour_contrast)

SMALL = {"shape": (30, 100, 120), "spacing": (1.8, 1.8, 4.0)}  # the default field of view, 1/8 of the voxels
PLAIN_SHA256 = {(7, "tumour+duct"): "c571fb0766c7cc20e4868b6259f312648d975901cf1a4cb5b1233d8a2c13050e",
                (11, None): "500e1102dbf39f3cdb6b3c933e11fb05228cfb959f015c530d5b332007413997"}
"""sha256 of arterial, venous and label arrays written by the phantom before #18 (numpy 2 generators)."""


def digest(images) -> str:
    h = hashlib.sha256()
    for image in images:
        h.update(np.ascontiguousarray(image.array).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("seed,kind", list(PLAIN_SHA256))
def test_plain_style_is_the_phantom_of_before(seed, kind):
    assert digest(pancreas_ct(seed=seed, kind=kind, **SMALL)[:3]) == PLAIN_SHA256[seed, kind]
    explicit = pancreas_ct(seed=seed, kind=kind, style="plain", tumour_mm=TUMOUR_MM, **SMALL)
    assert digest(explicit[:3]) == PLAIN_SHA256[seed, kind] and "render" not in explicit[3]


def test_randomised_is_deterministic_and_recorded():
    first, again = (pancreas_ct(seed=5, kind="tumour", style="randomised", **SMALL) for _ in range(2))
    for a, b in zip(first[:3], again[:3]):
        np.testing.assert_array_equal(a.array, b.array)
    assert first[3] == again[3]
    render = json.loads(json.dumps(first[3]["render"]))
    assert render["style"] == "randomised" and len(render["dose"]) == 2
    assert 0.3 <= render["blur_mm"] <= 1.2 and 0.6 <= render["thickness_mm"] <= 5.0 and 5 <= render["noise_hu"] <= 30
    assert len(render["texture_hu"]) == len(first[3]["hu"]["arterial"]) + 1
    assert all(t["contrast"] in ("hyper", "venous-dark", "hypo") for t in first[3]["tumours"])
    other = pancreas_ct(seed=6, kind="tumour", style="randomised", **SMALL)
    assert other[3]["render"] != first[3]["render"]


@pytest.mark.parametrize("seed,kind", [(3, "tumour+duct"), (4, "normal"), (8, "tumour")])
def test_randomised_keeps_the_anatomy_and_label(seed, kind):
    plain = pancreas_ct(seed=seed, kind=kind, **SMALL)
    styled = pancreas_ct(seed=seed, kind=kind, style="randomised", tumour_mm=TUMOUR_MM, **SMALL)
    np.testing.assert_array_equal(styled[2].array, plain[2].array)
    assert [t["centre_lps"] for t in styled[3]["tumours"]] == [t["centre_lps"] for t in plain[3]["tumours"]]
    assert not np.array_equal(styled[0].array, plain[0].array)


def test_randomised_tumours_default_to_5_to_40_mm():
    sizes = [t["diameter_mm"] for seed in range(12)
             for t in pancreas_ct(seed=seed, kind="tumour", style="randomised", **SMALL)[3]["tumours"]]
    assert RANDOMISED_TUMOUR_MM == (5.0, 40.0) and all(5.0 <= d <= 40.0 for d in sizes) and max(sizes) > 20.0


def _core_mean(image, label, value: int) -> float:
    return float(image.array[ndimage.binary_erosion(label.array == value)].mean())


def test_tissue_contrast_varies_beyond_the_plain_12_percent():
    """The pancreas's measured arterial HU over six seeds: plain stays in its +-12 % band (plus noise),
    randomised spreads well beyond it."""
    ratios = {}
    for style in ("plain", "randomised"):
        means = [_core_mean(c[0], c[2], LABELS["pancreas"])
                 for c in (pancreas_ct(seed=s, kind="normal", style=style, **SMALL) for s in range(6))]
        ratios[style] = max(means) / min(means)
    assert ratios["plain"] < 1.12 / 0.88 < 1.5 < ratios["randomised"]


def test_hypo_tumour_is_darker_than_the_pancreas_in_both_phases():
    arterial, venous, label, info = pancreas_ct(seed=6, kind="tumour", style="randomised", **SMALL)
    assert [t["contrast"] for t in info["tumours"]] == ["hypo"] and info["tumours"][0]["conspicuous_phase"] == "both"
    tumour = label.array == LABELS["tumour"]
    shell = ndimage.binary_dilation(tumour, iterations=3) & (label.array == LABELS["pancreas"])
    for image, phase in ((arterial, "arterial"), (venous, "venous")):
        assert info["hu"][phase]["tumour1"] <= info["hu"][phase]["pancreas"] - 20
        assert image.array[tumour].mean() < image.array[shell].mean() - 10


def test_tumour_contrast_odds_and_signs():
    rng = np.random.default_rng(0)
    draws = [tumour_contrast(rng, (100.0, 90.0)) for _ in range(2000)]
    shares = {name: sum(d[0] == name for d in draws) / len(draws) for name in ("hyper", "venous-dark", "hypo")}
    assert abs(shares["hyper"] - 0.4) < 0.04 and abs(shares["venous-dark"] - 0.2) < 0.04
    for contrast, phase, (a, v) in draws:
        if contrast == "hypo":
            assert phase == "both" and 20 <= 100 - a <= 80 and 20 <= 90 - v <= 80
        elif contrast == "hyper":
            assert phase == "arterial" and a >= 140
        else:
            assert phase == "venous" and v <= 60


def _stripes(thickness_mm: float, blur_mm: float = 0.3) -> np.ndarray:
    """Alternating 0 / 100 HU slices (2 mm apart) rendered without texture, bias or noise; ``(16, 32, 32)``."""
    codes = np.where(np.arange(16)[:, None, None] % 2 == 0, CODE_BASE, CODE_BASE - 1) * np.ones((1, 32, 32))
    params = RenderParams(blur_mm=blur_mm, thickness_mm=thickness_mm, texture_mm=2.0, texture_hu=(0.0, 0.0, 0.0),
                          bias_hu=0.0, noise_hu=0.0, noise_blur_voxels=0.0)
    out = render_randomised(codes.astype(np.float32), {"a": (0.0, 0.0), "b": (100.0, 100.0)}, (1.0, 1.0, 2.0),
                            np.random.default_rng(0), params)
    return out[0].astype(float)


def test_slice_thickness_blurs_along_z_only():
    thin, thick = _stripes(0.6), _stripes(5.0)
    assert np.abs(np.diff(thin, axis=0)).mean() > 95
    assert np.abs(np.diff(thick, axis=0)).mean() < 0.2 * np.abs(np.diff(thin, axis=0)).mean()
    assert np.all(np.diff(thick, axis=1) == 0) and np.all(np.diff(thick, axis=2) == 0)
    assert thick.mean() == pytest.approx(50.0, abs=1.0)


def test_bad_style_and_sizes_are_input_errors():
    with pytest.raises(InputError):
        pancreas_ct(seed=0, style="synthseg", **SMALL)
    for sizes in ((20.0, 5.0), (0.0, 5.0), (5.0,), (5.0, float("nan"))):
        with pytest.raises(InputError):
            pancreas_ct(seed=0, style="randomised", tumour_mm=sizes, **SMALL)


def test_grid_flags_need_randomise():
    from lesionseg.methods.s4c.data import SyntheticSettings

    with pytest.raises(InputError, match="--randomise"):
        SyntheticSettings(fov_mm=(200.0, 210.0))
    with pytest.raises(InputError):
        SyntheticSettings(randomise=True, spacing_mm=(1.0, 0.5))
    assert SyntheticSettings(randomise=True, fov_mm=(200.0, 210.0)).randomise


def test_synthetic_randomise_writes_varying_grids(tmp_path):
    from lesionseg import cli
    from lesionseg.data import Dataset
    from lesionseg.outputs import MARKER

    out = tmp_path / "randomised"
    assert cli.main(["--progress", "none", "data", "synthetic", "s4c", "-o", str(out), "--cases", "3", "--seed", "1",
                     "--randomise", "--spacing-mm", "1.4", "2.0", "--z-spacing-mm", "2.0", "5.0"]) == 0
    ds = Dataset(out)
    ds.check()
    assert ds.meta["randomise"] is True and ds.channel_names == ("venous", "arterial")
    command = json.loads((out / MARKER).read_text())["command"]
    assert "--randomise --spacing-mm 1.4 2.0 --z-spacing-mm 2.0 5.0 --fov-mm 190.0 250.0" in command
    spacings = []
    for case, record in zip(ds.cases(), ds.meta["phantoms"]):
        venous, arterial = case.read_images()
        label = case.read_label()
        assert venous.same_grid(label, tol=1e-6) and arterial.same_grid(label, tol=1e-6)
        assert record["info"]["render"]["style"] == "randomised"
        xy, _, z = record["info"]["spacing"]
        assert 1.4 <= xy <= 2.0 and 2.0 <= z <= 5.0 and label.array.shape[0] >= 16
        spacings.append(tuple(np.round(label.spacing, 3)))
    assert len(set(spacings)) == len(spacings)
