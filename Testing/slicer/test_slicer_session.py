"""LesionSegLib.session with fake segmenters: the 'prompt + Image -> backend -> label' step of the logic."""
from __future__ import annotations

import numpy as np
import pytest
from LesionSegLib import results, scene, selftests, session

from lesionseg import Box, Image, InputError, LesionSegError
from lesionseg.geometry import box_to_index


class ThresholdInBox:
    """Fake method: voxels above ``level`` inside the box (exact, so geometry errors show up as Dice < 1)."""

    instances = 0

    def __init__(self, level: float = 0.0) -> None:
        type(self).instances += 1
        self.level = level
        self.set_calls = 0
        self.prompts = []
        self.image = None

    def set_image(self, image: Image, *others: Image) -> None:
        self.set_calls += 1
        self.image = image

    def predict(self, prompt=None) -> Image:
        self.prompts.append(prompt)
        index_box = box_to_index(self.image, prompt)
        out = np.zeros(self.image.shape, np.uint8)
        out[index_box.slices] = self.image.array[index_box.slices] > self.level
        return self.image.with_array(out)


@pytest.fixture
def built():
    made = []

    def builder(method: str, device: str):
        seg = ThresholdInBox()
        made.append((method, device, seg))
        return seg

    return builder, made


def ct_image():
    ct = selftests.synthetic_ct()
    return ct, scene.image_from_volume_array(ct.array, ct.ijk_to_ras)


def test_end_to_end_geometry_with_exact_fake(built):
    """RAS ROI -> LPS box -> backend voxels -> patch -> full mask equals the sphere exactly."""
    builder, made = built
    ct, image = ct_image()
    box = scene.roi_to_box(ct.centre_ras, ct.box_size)
    result = session.segment_box(session.SegmenterSession(builder), "fake", "cpu", "key", lambda: image, box)
    mask = results.paste(result.patch, image.shape)
    assert selftests.dice(mask, ct.sphere) == 1.0
    assert result.prompt is box and result.method == "fake" and result.warnings == ()
    assert result.seconds >= 0.0


def test_segmenter_and_image_are_cached(built):
    builder, made = built
    ct, image = ct_image()
    box = scene.roi_to_box(ct.centre_ras, ct.box_size)
    loads = []

    def load():
        loads.append(1)
        return image

    sess = session.SegmenterSession(builder)
    assert not sess.warm
    for _ in range(3):
        session.segment_box(sess, "fake", "cpu", ("vol1", 7), load, box)
    assert len(made) == 1 and made[0][2].set_calls == 1 and len(loads) == 1 and sess.warm
    session.segment_box(sess, "fake", "cpu", ("vol1", 8), load, box)  # voxels modified
    assert len(made) == 1 and made[0][2].set_calls == 2 and len(loads) == 2
    session.segment_box(sess, "other", "cpu", ("vol1", 8), load, box)  # another method: rebuilt
    assert len(made) == 2 and made[1][:2] == ("other", "cpu") and made[1][2].set_calls == 1
    sess.clear()
    assert not sess.warm


def test_failed_set_image_is_not_cached(built):
    builder, made = built
    sess = session.SegmenterSession(builder)

    def broken():
        raise InputError("no voxels")

    with pytest.raises(InputError):
        sess.prepare("fake", "cpu", "k", broken)
    assert not sess.warm
    with pytest.raises(InputError):
        sess.predict(None)


def test_current_slice_only_flattens_box_and_clears_other_slices(built):
    builder, made = built
    ct, image = ct_image()
    box = scene.roi_to_box(ct.centre_ras, ct.box_size)
    k = 8
    point = scene.ras_to_lps((ct.ijk_to_ras @ [10.0, 10.0, k, 1.0])[:3])
    result = session.segment_box(session.SegmenterSession(builder), "fake", "cpu", "key", lambda: image, box, point)
    assert result.patch.lo[2] == k and result.patch.hi[2] == k
    used = box_to_index(image, result.prompt)
    assert used.lo[2] == used.hi[2] == k
    np.testing.assert_array_equal(results.paste(result.patch, image.shape)[k], ct.sphere[k])


def test_box_partly_outside_reports_warning(built):
    builder, made = built
    ct, image = ct_image()
    near_edge = ct.centre_ras + np.array([0.0, 0.0, 15.0])  # the box pokes out of the last slices
    box = scene.roi_to_box(near_edge, ct.box_size)
    result = session.segment_box(session.SegmenterSession(builder), "fake", "cpu", "key", lambda: image, box)
    assert any("partly outside" in w for w in result.warnings)


def test_nothing_found_raises(built):
    builder, made = built
    ct, image = ct_image()
    corner = (ct.ijk_to_ras @ [4.0, 40.0, 3.0, 1.0])[:3]  # lung only: nothing above 0 HU
    box = scene.roi_to_box(corner, [4.0, 4.0, 4.0])
    with pytest.raises(LesionSegError, match="found no lesion"):
        session.segment_box(session.SegmenterSession(builder), "fake", "cpu", "key", lambda: image, box)


def test_box_outside_raises_backend_input_error(built):
    builder, made = built
    ct, image = ct_image()
    box = scene.roi_to_box(ct.centre_ras + np.array([0.0, 0.0, 500.0]), ct.box_size)
    with pytest.raises(InputError, match="entirely outside"):
        session.segment_box(session.SegmenterSession(builder), "fake", "cpu", "key", lambda: image, box)


def test_label_off_grid_is_rejected():
    class OffGrid(ThresholdInBox):
        def predict(self, prompt=None):
            return Image(np.ones((1, 2, 2), np.uint8))

    ct, image = ct_image()
    box = scene.roi_to_box(ct.centre_ras, ct.box_size)
    with pytest.raises(LesionSegError, match="not on the image grid"):
        session.segment_box(session.SegmenterSession(lambda m, d: OffGrid()), "fake", "cpu", "k", lambda: image, box)


def test_box_methods_and_default():
    class M:
        def __init__(self, name, prompt_kind, needs_weights):
            self.name, self.prompt_kind, self.needs_weights = name, prompt_kind, needs_weights

    classes = [M("classical-box", "box", False), M("tsfcn", "box", True), M("autopet-l2snet", "none", True),
               M("recist-coseg", "recist", True)]
    assert session.box_methods(classes, lambda name: False) == ["classical-box"]
    assert session.box_methods(classes, lambda name: True) == ["classical-box", "tsfcn"]
    assert session.default_method(["classical-box", "tsfcn"]) == "tsfcn"
    assert session.default_method(["classical-box"]) == "classical-box"
    assert session.default_method(["other"]) == "other"
    assert session.default_method([]) is None


def test_box_methods_from_real_registry_only_lists_box_methods():
    names = session.box_methods()
    import lesionseg

    assert all(lesionseg.get_method(n).prompt_kind == "box" for n in names)


def test_synthetic_ct_is_consistent():
    ct = selftests.synthetic_ct()
    assert ct.array.shape == ct.sphere.shape == ct.user_mask.shape == (20, 56, 64)
    assert ct.sphere.sum() > 400 and not np.any(ct.sphere & ct.user_mask)
    assert selftests.dice(ct.sphere, ct.sphere) == 1.0 and selftests.dice(ct.sphere, 0 * ct.sphere) == 0.0
    assert selftests.dice(np.zeros(3), np.zeros(3)) == 1.0
    image = scene.image_from_volume_array(ct.array, ct.ijk_to_ras)
    centre = np.argwhere(ct.sphere).mean(axis=0)[::-1]  # (i, j, k)
    from lesionseg.geometry import world_to_index
    np.testing.assert_allclose(world_to_index(image, scene.ras_to_lps(ct.centre_ras))[0], centre, atol=1e-6)
    assert isinstance(scene.roi_to_box(ct.centre_ras, ct.box_size), Box)
