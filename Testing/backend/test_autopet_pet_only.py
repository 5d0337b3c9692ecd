"""autopet-l2snet without a CT: the registry's optional inputs, PET-only mode (the CT channel filled with NO_CT),
the refusal of models not trained for it, ``--allow-pet-only``, and bad PET input as one clear error, through the
Python API and the CLI (no output file left). Tiny networks check the plumbing only; they are no model."""
from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lesionseg import Image
from lesionseg.errors import InputError, WeightsError
from lesionseg.io import write_image
from lesionseg.methods.autopet.network import loc_network, seg_network
from lesionseg.methods.autopet.inputs import read_inputs
from lesionseg.methods.autopet.pipeline import NO_CT, L2SPreprocessing, network_input
from lesionseg.methods.autopet.segmenter import L2SNetSegmenter, L2SOptions
from lesionseg.modelfolder import save_model_folder
from lesionseg.registry import list_specs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY_PREP = dict(loc_size=(16, 16), seg_patch=(8, 8, 8), ct_window=(-100.0, 250.0))


class Recording(nn.Module):
    """Fake network: logit ``20 * (x[0] - centre)`` per voxel from the PET channel; remembers every value of the
    CT channel (channel 1) it was given."""

    def __init__(self, centre_suv: float) -> None:
        super().__init__()
        self.centre = centre_suv / 15.0
        self.ct_values: set[float] = set()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > 1:
            self.ct_values |= set(np.unique(x[:, 1].numpy()).tolist())
        return 20.0 * (x[:, :1] - self.centre)


def _pair() -> tuple[Image, Image]:
    """PET (SUV 1, region A 2 SUV, region B 4 SUV; 20 x 24 x 16 voxels of 4 mm) and a CT over the same box."""
    pet = np.ones((20, 24, 16), np.float32)
    pet[4:8, 5:10, 3:7] = 2.0
    pet[12:16, 14:20, 8:13] = 4.0
    pet_image = Image(pet, (4.0, 4.0, 4.0), (-30.0, 40.0, -200.0), np.eye(3), {"units": "SUV"})
    ct = np.full((42, 50, 34), 40.0, np.float32)
    ct[:, :, :4] = -1000.0
    return pet_image, Image(ct, (2.0, 2.0, 2.0), (-33.0, 37.0, -203.0))


def _far(ct: Image) -> Image:
    return Image(ct.array, ct.spacing, (5000.0, 0.0, 0.0), ct.direction)


def _segmenter(ct_dropout: float = 0.3, **kwargs) -> L2SNetSegmenter:
    prep = L2SPreprocessing(**TINY_PREP, ct_dropout=ct_dropout)
    return L2SNetSegmenter(None, "cpu", loc_net=Recording(1.5), seg_net=Recording(3.0), preprocessing=prep, **kwargs)


# --- the registry's optional inputs --------------------------------------------------------------------------

def test_only_autopet_has_an_optional_input():
    optional = {spec.name: spec.optional_inputs for spec in list_specs() if spec.optional_inputs}
    assert optional == {"autopet-l2snet": 1}
    assert L2SNetSegmenter.optional_inputs == 1 and L2SNetSegmenter.inputs == ("PET", "CT")
    pet, ct = _pair()
    with pytest.raises(InputError, match=r"takes 2 image\(s\): PET, CT \(optional\); got 3"):
        _segmenter().set_image(pet, ct, ct)
    with pytest.raises(InputError, match="one or two images"):
        read_inputs([], L2SOptions(pet_units="suv"))
    from lesionseg.server.sessions import image_count_error

    spec = L2SNetSegmenter.spec
    assert image_count_error(spec, 1) is None and image_count_error(spec, 2) is None
    assert "takes 1 to 2 image(s)" in str(image_count_error(spec, 3))


def test_reader_takes_the_pet_alone(tmp_path):
    pet, ct = _pair()
    write_image(pet, tmp_path / "pet.nii.gz")
    write_image(ct, tmp_path / "ct.nii.gz")
    (alone,) = read_inputs([tmp_path / "pet.nii.gz"], L2SOptions(pet_units="suv"))
    assert alone.same_grid(pet) and np.array_equal(alone.array, pet.array)
    assert len(read_inputs([tmp_path / "pet.nii.gz", tmp_path / "ct.nii.gz"], L2SOptions(pet_units="suv"))) == 2
    with pytest.raises(InputError, match="one or two images"):
        read_inputs([tmp_path / "pet.nii.gz"] * 3, L2SOptions(pet_units="suv"))


# --- PET-only mode through the Python API -------------------------------------------------------------------

def test_pet_only_fills_the_ct_channel_and_warns(caplog):
    pet, ct = _pair()
    both = _segmenter()
    both.set_image(pet, ct)
    assert not both.pet_only and both.nets["seg"].ct_values - {NO_CT}  # the CT reached the 3D net
    seg = _segmenter()
    with caplog.at_level(logging.WARNING, logger="lesionseg"):
        seg.set_image(pet)
    assert seg.pet_only and seg.nets["seg"].ct_values == {NO_CT}
    assert "no CT was given: PET-only mode" in caplog.text
    label = seg.predict()
    assert label.same_grid(pet, tol=0) and label.array.dtype == np.uint8
    np.testing.assert_array_equal(label.array, both.predict().array)  # the fakes read the PET only
    assert int(label.array.sum()) == 4 * 5 * 4 + 4 * 6 * 5  # region B, and region A through the adaptive threshold
    seg.set_image(pet, ct)  # the next image with its CT is PET/CT again
    assert not seg.pet_only
    work = network_input(pet, None, seg.prep)
    assert work.shape == (2, *pet.shape) and np.all(work[1] == NO_CT)


def test_a_model_without_ct_dropout_refuses_pet_only():
    pet, ct = _pair()
    old = _segmenter(ct_dropout=0.0)
    with pytest.raises(WeightsError, match=r"not trained for PET-only input .* --ct-dropout"):
        old.set_image(pet)
    with pytest.raises(InputError, match="set_image"):
        old.predict()  # the refused image left no maps behind
    old.set_image(pet, ct)  # PET + CT stays fine
    assert old.predict().array.sum() == 200
    loc_only = _segmenter(ct_dropout=0.0, mode="2d")  # the localisation net reads the PET alone
    loc_only.set_image(pet)
    assert loc_only.pet_only and loc_only.predict().array.sum() == 200
    with pytest.raises(WeightsError, match="not trained for PET-only"):
        loc_only.set_mode("l2snet")
    assert loc_only.mode == "2d"


def test_allow_pet_only_drops_a_ct_that_does_not_overlap(caplog):
    pet, ct = _pair()
    with pytest.raises(InputError, match=r"do not overlap.*--allow-pet-only to drop the CT"):
        _segmenter().set_image(pet, _far(ct))
    seg = _segmenter(options=L2SOptions(allow_pet_only=True))
    with caplog.at_level(logging.WARNING, logger="lesionseg"):
        seg.set_image(pet, _far(ct))
    assert seg.pet_only and seg.nets["seg"].ct_values == {NO_CT}
    assert "do not overlap" in caplog.text and "the CT is dropped" in caplog.text and "--allow-pet-only" in caplog.text
    assert seg.predict().array.sum() == 200
    seg.set_image(pet, ct)  # a CT that overlaps is used
    assert not seg.pet_only
    with pytest.raises(WeightsError, match="not trained for PET-only"):
        _segmenter(ct_dropout=0.0, options=L2SOptions(allow_pet_only=True)).set_image(pet, _far(ct))


def _bad_pets(pet: Image) -> dict[str, tuple[Image, str]]:
    """name -> (bad PET, what its error says)."""
    return {"zero": (pet.with_array(np.zeros(pet.shape, np.float32)), "constant"),
            "constant": (pet.with_array(np.full(pet.shape, 3.0, np.float32)), "constant"),
            "slice": (Image(pet.array[12:13].copy(), pet.spacing, pet.origin), "a 3D PET volume is needed"),
            "slab": (Image(pet.array[12:14].copy(), pet.spacing, pet.origin), "a 3D PET volume is needed"),
            "bqml": (pet.with_array(pet.array * 5000.0), "Bq/mL.*--pet-units bqml with --weight-kg and --dose-bq")}


@pytest.mark.parametrize("name", ["zero", "constant", "slice", "slab", "bqml"])
@pytest.mark.parametrize("with_ct", [False, True])
def test_bad_pet_is_one_clear_error(name, with_ct):
    pet, ct = _pair()
    bad, message = _bad_pets(pet)[name]
    seg = _segmenter()
    with pytest.raises(InputError, match=message):
        seg.set_image(bad, *([ct] if with_ct else []))
    with pytest.raises(InputError, match="set_image"):
        seg.predict()


# --- the CLI -----------------------------------------------------------------------------------------------------

def _model(folder, ct_dropout: float):
    """A model folder of random tiny networks; ``ct_dropout`` 0 writes a card from before PET-only mode (no
    ``ct_dropout`` entry at all, as the first shipped card)."""
    torch.manual_seed(0)
    loc, seg = loc_network([4, 8], [4], 1), seg_network([4, 8])
    prep = L2SPreprocessing(**TINY_PREP, ct_dropout=ct_dropout).to_dict()
    if not ct_dropout:
        del prep["ct_dropout"]
    card = {"method": "autopet-l2snet",
            "networks": {"loc.pt": {"class": "L2SLocNet", "kwargs": loc.config},
                         "seg.pt": {"class": "UNet", "kwargs": seg.config}},
            "preprocessing": prep,
            "training": {"synthetic": True, "note": "random tiny networks for plumbing tests; not a model"}}
    return save_model_folder(folder, card, {"loc.pt": loc.state_dict(), "seg.pt": seg.state_dict()}).path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("autopet_models")
    return {"pet_only": _model(root / "dropout", 0.3), "old": _model(root / "old", 0.0)}


def _predict(argv: list[str]) -> int:
    from lesionseg import cli

    return cli.main(["--progress", "none", "predict", "autopet-l2snet", *argv])


@pytest.fixture
def files(tmp_path):
    pet, ct = _pair()
    paths = {"pet": write_image(pet, tmp_path / "pet.nii.gz"), "ct": write_image(ct, tmp_path / "ct.nii.gz"),
             "far": write_image(_far(ct), tmp_path / "far.nii.gz")}
    for name, (bad, _) in _bad_pets(pet).items():
        paths[name] = write_image(bad, tmp_path / f"{name}.nii.gz")
    return paths


def test_cli_pet_only(files, models, tmp_path, capsys, caplog):
    out = tmp_path / "seg.nii.gz"
    with caplog.at_level(logging.WARNING, logger="lesionseg"):
        code = _predict([str(files["pet"]), "-o", str(out), "--pet-units", "suv", "--weights", str(models["pet_only"]),
                         "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert out.is_file() and "no CT was given: PET-only mode" in caplog.text
    code = _predict([str(files["pet"]), "-o", str(tmp_path / "old.nii.gz"), "--pet-units", "suv",
                     "--weights", str(models["old"]), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: this autopet-l2snet model was not trained for PET-only input")
    assert err.count("\n") == 1 and not (tmp_path / "old.nii.gz").exists()
    assert _predict([str(files["pet"]), str(files["ct"]), "-o", str(tmp_path / "both.nii.gz"), "--pet-units", "suv",
                     "--weights", str(models["old"]), "--device", "cpu"]) == 0


def test_cli_allow_pet_only(files, models, tmp_path, capsys, caplog):
    out = tmp_path / "seg.nii.gz"
    args = [str(files["pet"]), str(files["far"]), "-o", str(out), "--pet-units", "suv",
            "--weights", str(models["pet_only"]), "--device", "cpu"]
    assert _predict(args) == 2
    err = capsys.readouterr().err
    assert "do not overlap" in err and "--allow-pet-only" in err and err.count("\n") == 1 and not out.exists()
    with caplog.at_level(logging.WARNING, logger="lesionseg"):
        assert _predict([*args, "--allow-pet-only"]) == 0
    assert out.is_file() and "the CT is dropped" in caplog.text


@pytest.mark.parametrize("name, message", [
    ("zero", "error: the PET (zero.nii.gz as suv) is constant (every voxel is 0)"),
    ("constant", "error: the PET (constant.nii.gz as suv) is constant (every voxel is 3)"),
    ("slice", "error: the PET (slice.nii.gz as suv) is 16x24x1 voxels (I x J x K): a 3D PET volume is needed"),
    ("slab", "error: the PET (slab.nii.gz as suv) is 16x24x2 voxels (I x J x K): a 3D PET volume is needed"),
    ("bqml", "error: the PET bqml.nii.gz holds Bq/mL-like values"),
])
@pytest.mark.parametrize("with_ct", [False, True])
def test_cli_bad_pet_writes_nothing(files, models, tmp_path, capsys, name, message, with_ct):
    out = tmp_path / "seg.nii.gz"
    code = _predict([str(files[name]), *([str(files["ct"])] if with_ct else []), "-o", str(out), "--pet-units", "suv",
                     "--weights", str(models["pet_only"]), "--device", "cpu", "--table", str(tmp_path / "t.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    if name == "bqml":
        assert "--pet-units bqml with --weight-kg and --dose-bq" in err
    assert not out.exists() and not (tmp_path / "t.csv").exists()


def test_cli_warning_reaches_stderr_with_default_logging(files, models, tmp_path):
    """The PET-only notice is a log warning, shown by the CLI's default logging (a fresh process)."""
    out = tmp_path / "seg.nii.gz"
    run = subprocess.run([sys.executable, "-m", "lesionseg", "--progress", "none", "predict", "autopet-l2snet",
                          str(files["pet"]), "-o", str(out), "--pet-units", "suv", "--weights", str(models["pet_only"]),
                          "--device", "cpu"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    assert "WARNING lesionseg.methods.autopet.segmenter: autopet-l2snet: no CT was given: PET-only mode" in run.stderr
    assert out.is_file()


# --- the whole-body PET-only evaluation and its script -----------------------------------------------------------

def test_wholebody_pet_only_on_the_real_pet(shared_data):
    """Plumbing on the real STS_001 whole-body PET with fake networks (P > 0.5 where SUV > 3): the figures are the
    metrics of that threshold against the tumour mask."""
    from lesionseg.io import read_image
    from lesionseg.methods.autopet.evaluate import wholebody_pet_only
    from lesionseg.metrics import dice

    folder = shared_data / "sts001-wholebody-fdgpet"
    prep = L2SPreprocessing(spacing_mm=8.0, loc_size=(128, 128), seg_patch=(64, 64, 64), ct_dropout=0.3)
    seg = L2SNetSegmenter(None, "cpu", loc_net=Recording(100.0), seg_net=Recording(3.0), preprocessing=prep,
                          mode="l2snet", adaptive=False)
    result = wholebody_pet_only(seg, folder)
    assert seg.pet_only and seg.nets["seg"].ct_values == {NO_CT}
    assert set(result) == {"case", "mode", "adaptive", "found", "dice", "fpv_ml", "fnv_ml", "outside_mask_ml",
                           "pred_ml", "truth_ml", "seconds"}
    pred, mask = seg.predict(), read_image(folder / "mask_GTV_Mass.nii.gz")
    truth = mask.with_array((mask.array > 0).astype(np.uint8))
    assert result["found"] is bool(((pred.array > 0) & (truth.array > 0)).any())
    assert result["dice"] == round(dice(pred, truth), 4) and result["truth_ml"] == round(truth.array.sum()
                                                                                         * truth.voxel_volume_ml, 3)
    assert result["pred_ml"] >= result["outside_mask_ml"] >= 0 and result["mode"] == "l2snet"
    with pytest.raises(WeightsError, match="not trained for PET-only"):
        wholebody_pet_only(_segmenter(ct_dropout=0.0), folder)


def test_wholebody_script_refuses_to_overwrite(tmp_path, models, capsys):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "scripts"))
    import autopet_wholebody

    out = tmp_path / "result.json"
    out.write_text("mine")
    assert autopet_wholebody.main([str(models["pet_only"]), "--json", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "mine"
    args = [str(models["old"]), "--folder", str(tmp_path), "--json", str(tmp_path / "n.json")]
    assert autopet_wholebody.main(args) == 2
    assert "is missing" in capsys.readouterr().err and not (tmp_path / "n.json").exists()
