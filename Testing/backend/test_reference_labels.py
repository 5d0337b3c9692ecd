"""Every shipped model gives the labels it gave before the dataset/method-spec redesign (issue #16).

``Testing/data/reference_labels.npz`` holds the labels each shipped model (and ``classical-box``) produced on
the demo phantoms (seed 0) and on a few real cases of ``../shared/data``, saved at commit 41aed2c, before the
redesign, by::

    python Testing/backend/test_reference_labels.py --write

A model replaced on purpose gets its own labels rewritten, and only those (``--write tsfcn``): tsfcn's were
rewritten when the ``lite`` model replaced the ``slim`` one (issue #19). ``box-unet`` and ``recist-3d`` (one model,
issue #23) got theirs when that model first shipped (``--write box-unet recist-3d``).

The test recomputes them through ``lesionseg.build`` / ``set_image`` / ``predict`` and asks for the same labels:
at most ``max(2, 0.1 %)`` of the voxels labelled in either may differ (one float rounding at a threshold can
flip a voxel when the thread count differs), and the label values must be the same set. Real cases skip when
``../shared/data`` is absent; phantom cases always run.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference_labels.npz"
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LIDC_NODULES = ("LIDC-IDRI-0011_R_10", "LIDC-IDRI-0012_R_4")
STS_CASES = ("STS_002", "STS_009")


def _demo_case(name: str):
    from lesionseg.demo import CASES

    return CASES[name](0)


def _predict_all(method: str, images, truth, kind: str):
    """Union of ``predict`` over the demo prompts of ``truth`` (as the demo does), as uint8 ``(K, J, I)``."""
    import lesionseg
    from lesionseg.demo import DemoCase, lesion_prompts

    seg = lesionseg.build(method, device="cpu")
    seg.set_image(*images)
    out = np.zeros(truth.shape, np.uint8)
    for prompt in lesion_prompts(DemoCase("ref", tuple(images), truth), kind):
        out = np.maximum(out, np.asarray(seg.predict(prompt).array, np.uint8))
    return out


def _phantom(method: str, case: str, kind: str) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        demo = _demo_case(case)
        return _predict_all(method, demo.images, demo.truth, kind)
    return run


def _lidc(method: str, nodule: str, kind: str) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        from lesionseg import read_image

        image = read_image(DATA / "lidc-nodule-vois" / "image" / f"{nodule}.nii.gz")
        mask = read_image(DATA / "lidc-nodule-vois" / "nodule_mask" / f"{nodule}.nii.gz")
        return _predict_all(method, (image,), mask.with_array((mask.array > 0).astype(np.uint8)), kind)
    return run


def _sts(case: str) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        from lesionseg import read_image

        folder = DATA / "ibsi-sts-petct" / case
        pet, ct = read_image(folder / "PET_image.nii.gz"), read_image(folder / "CT_image.nii.gz")
        return _predict_all("autopet-l2snet", (pet, ct), pet, "none")
    return run


def _sts_ct(method: str, case: str, kind: str) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        from lesionseg import read_image

        folder = DATA / "ibsi-sts-petct" / case
        ct, mask = read_image(folder / "CT_image.nii.gz"), read_image(folder / "CT_mask.nii.gz")
        return _predict_all(method, (ct,), mask.with_array((mask.array > 0).astype(np.uint8)), kind)
    return run


def _real_ct(method: str) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        from lesionseg import read_image

        ct = read_image(DATA / "totalseg-example-ct" / "example_ct_sm.nii.gz")
        return _predict_all(method, (ct,), ct, "none")
    return run


def cases() -> Iterator[tuple[str, bool, Callable[[], np.ndarray]]]:
    """``(key, needs real data, compute)`` of every reference label."""
    yield "classical-box/chest_ct", False, _phantom("classical-box", "chest_ct", "box")
    yield "tsfcn/chest_ct", False, _phantom("tsfcn", "chest_ct", "box")
    yield "recist-coseg/chest_ct", False, _phantom("recist-coseg", "chest_ct", "recist")
    yield "autopet-l2snet/wholebody_petct", False, _phantom("autopet-l2snet", "wholebody_petct", "none")
    yield "s4c/pancreas_ct", False, _phantom("s4c", "pancreas_ct", "none")
    yield "small-lesion-il/smallbowel_ct", False, _phantom("small-lesion-il", "smallbowel_ct", "none")
    yield "box-unet/chest_ct", False, _phantom("box-unet", "chest_ct", "box")
    yield "recist-3d/chest_ct", False, _phantom("recist-3d", "chest_ct", "recist")
    for nodule in LIDC_NODULES:
        yield f"tsfcn/{nodule}", True, _lidc("tsfcn", nodule, "box")
        yield f"recist-coseg/{nodule}", True, _lidc("recist-coseg", nodule, "recist")
        yield f"box-unet/{nodule}", True, _lidc("box-unet", nodule, "box")
        yield f"recist-3d/{nodule}", True, _lidc("recist-3d", nodule, "recist")
    for case in STS_CASES:
        yield f"box-unet/{case}_CT", True, _sts_ct("box-unet", case, "box")
        yield f"recist-3d/{case}_CT", True, _sts_ct("recist-3d", case, "recist")
    for case in STS_CASES:
        yield f"autopet-l2snet/{case}", True, _sts(case)
    yield "s4c/totalseg_example_ct_sm", True, _real_ct("s4c")
    yield "small-lesion-il/totalseg_example_ct_sm", True, _real_ct("small-lesion-il")


@pytest.fixture(scope="module")
def references() -> dict:
    import torch

    if not REFERENCE.is_file():
        pytest.fail(f"{REFERENCE} is missing")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    with np.load(REFERENCE) as data:
        yield {key: data[key] for key in data.files}
    torch.set_num_threads(threads)


@pytest.mark.parametrize("key,real,compute", list(cases()), ids=[c[0] for c in cases()])
def test_labels_are_unchanged(references, key, real, compute):
    if real and not DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    expected = references[key.replace("/", "__")]
    got = compute()
    assert got.shape == expected.shape
    assert set(np.unique(got)) == set(np.unique(expected)), key
    differ = int((got != expected).sum())
    labelled = int(((got > 0) | (expected > 0)).sum())
    assert differ <= max(2, labelled // 1000), f"{key}: {differ} of {labelled} labelled voxels differ"


def write(methods: tuple[str, ...] = ()) -> None:
    """Compute the reference labels and save them: all of them (run once, before a change that must not alter
    them), or only those of ``methods`` (a shipped model replaced on purpose), keeping the others."""
    import torch

    torch.set_num_threads(2)
    arrays = {}
    if methods:
        with np.load(REFERENCE) as data:
            arrays = {key: data[key] for key in data.files}
    for key, real, compute in cases():
        if methods and key.split("/")[0] not in methods:
            continue
        if real and not DATA.is_dir():
            raise SystemExit(f"{DATA} is needed to write the references")
        arrays[key.replace("/", "__")] = compute()
        print(key, arrays[key.replace("/", "__")].shape, int((arrays[key.replace("/", "__")] > 0).sum()), flush=True)
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **arrays)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"]:
        raise SystemExit("usage: python Testing/backend/test_reference_labels.py --write [METHOD ...]")
    write(tuple(sys.argv[2:]))
