from __future__ import annotations

import io
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from lesionseg import Image, WeightsError, write_image
from lesionseg.errors import InputError, OutputExistsError
from lesionseg.cli import main
from lesionseg.modelfolder import find_model_folder, load_model_folder, save_model_folder, sha256_of
from lesionseg.registry import build, get_method, list_methods


def _save(folder, method="tsfcn", overwrite=False):
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}
    return save_model_folder(folder, {"method": method, "network": {"class": "X", "kwargs": {}}},
                             {"weights.pt": state}, overwrite=overwrite)


def test_save_load_round_trip_fp16(tmp_path):
    mf = _save(tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert set(card["files"]) == {"weights.pt"} and len(card["files"]["weights.pt"]) == 64
    state = load_model_folder(tmp_path / "m", "tsfcn").load_state_dict()
    assert state["w"].dtype == torch.float32 and state["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert state["n"].item() == 3
    raw = torch.load(mf.path / "weights.pt", weights_only=True)
    assert raw["w"].dtype == torch.float16


def test_sha256_mismatch_is_clear(tmp_path):
    mf = _save(tmp_path / "m")
    with open(mf.path / "weights.pt", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(WeightsError, match="sha256"):
        load_model_folder(mf.path).load_state_dict()


def test_wrong_method_missing_card_and_no_overwrite(tmp_path):
    _save(tmp_path / "m", method="s4c")
    with pytest.raises(WeightsError, match="not 'tsfcn'"):
        load_model_folder(tmp_path / "m", "tsfcn")
    with pytest.raises(WeightsError, match="not a model folder"):
        load_model_folder(tmp_path)
    with pytest.raises(OutputExistsError, match="not empty"):
        _save(tmp_path / "m")
    assert _save(tmp_path / "m", overwrite=True).method == "tsfcn"        # an earlier model of ours is replaced
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="did not write"):
        _save(tmp_path / "m", overwrite=True)


def test_search_order(tmp_path, monkeypatch):
    _save(tmp_path / "env" / "tsfcn")
    _save(tmp_path / "explicit")
    monkeypatch.setenv("LESIONSEG_WEIGHTS", str(tmp_path / "env"))
    assert find_model_folder("tsfcn", tmp_path / "explicit").path == tmp_path / "explicit"
    assert find_model_folder("tsfcn").path == tmp_path / "env" / "tsfcn"
    monkeypatch.setenv("LESIONSEG_WEIGHTS", str(tmp_path / "nowhere"))
    assert find_model_folder("no-such-method") is None


# --- broken model folders: every fault is a WeightsError naming the file, never torch's weights_only advice ---

WEIGHTED = [cls.name for cls in list_methods() if cls.needs_weights]

REQUIRED = {
    "tsfcn": [("networks", "weights.pt", "kwargs"), ("preprocessing",), ("preprocessing", "mean"),
              ("preprocessing", "largest_component")],
    "autopet-l2snet": [("networks",), ("networks", "seg.pt", "kwargs"), ("preprocessing",),
                       ("preprocessing", "ct_window"), ("preprocessing", "adaptive_threshold")],
    "s4c": [("network",), ("network", "class"), ("preprocessing",), ("preprocessing", "window"), ("rule",),
            ("rule", "keep_fraction")],
    "small-lesion-il": [("network",), ("variant",), ("preprocessing",), ("preprocessing", "window_hu"),
                        ("preprocessing", "body_hu")],
    "recist-coseg": [("networks", "weights.pt", "kwargs"), ("preprocessing",), ("preprocessing", "crop_size")],
    "box-unet": [("networks", "weights.pt", "kwargs"), ("preprocessing",), ("preprocessing", "soft"),
                 ("preprocessing", "threshold")],
    "recist-3d": [("networks", "weights.pt", "kwargs"), ("preprocessing", "factor")],
}
"""Card fields each method cannot run without (tuple = path into the card)."""
OPTIONAL = [("labels",), ("training",), ("metrics",), ("paper",), ("postprocessing",), ("preprocessing", "batch_size"),
            ("preprocessing", "channels"), ("preprocessing", "plane")]
"""Card fields a model still runs without (descriptions, or speed-only settings); absent ones are skipped."""


@pytest.fixture
def copied(request, tmp_path):
    """A copy of the shipped model folder of the test's ``method`` (skips where it is not installed)."""
    method = request.node.callspec.params["method"]
    folder = find_model_folder(method)
    if folder is None:
        pytest.skip(f"no {method} weights installed")
    shutil.copytree(folder.path, tmp_path / "model")
    return tmp_path / "model"


def _card(folder):
    return json.loads((folder / "model.json").read_text())


def _write_card(folder, card):
    (folder / "model.json").write_text(json.dumps(card, indent=2))


def _weight_file(folder) -> str:
    """The weight file the method loads first (``weights.pt``, or the first listed)."""
    files = [name for name in _card(folder)["files"] if name.endswith(".pt")]
    return "weights.pt" if "weights.pt" in files else files[0]


def _replace_weights(folder, name, data: bytes) -> None:
    """Overwrite weight file ``name`` and give the card its new sha256 (a badly trained or edited folder)."""
    (folder / name).write_bytes(data)
    card = _card(folder)
    card["files"][name] = sha256_of(folder / name)
    _write_card(folder, card)


def _build_error(method, folder) -> str:
    with pytest.raises(WeightsError) as info:
        build(method, weights=folder, device="cpu")
    message = str(info.value)
    assert "weights_only" not in message and "\n" not in message
    return message


class _Marker:
    """Unpickling runs ``os.system("touch MARKER")``: what a malicious weights file does."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class _Plain:
    """An arbitrary Python object (not a tensor) inside a weights file."""


def _pickled(kind: str, marker) -> bytes:
    if kind == "pickle":
        return pickle.dumps({"x": _Marker(marker)}, protocol=2)
    buffer = io.BytesIO()
    torch.save({"x": _Marker(marker) if kind == "torch-code" else _Plain()}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "json"])
@pytest.mark.parametrize("method", WEIGHTED)
def test_corrupt_weights_with_matching_sha256(method, kind, copied):
    name = _weight_file(copied)
    original = (copied / name).read_bytes()
    data = {"garbage": bytes(range(256)) * 64, "truncated": original[: len(original) // 2], "empty": b"",
            "json": b'{"weights": [1, 2, 3]}'}[kind]
    _replace_weights(copied, name, data)
    message = _build_error(method, copied)
    assert str(copied / name) in message and "not a PyTorch weights file" in message


@pytest.mark.parametrize("kind", ["torch-code", "pickle", "object"])
@pytest.mark.parametrize("method", WEIGHTED)
def test_weights_carrying_code_are_refused_unrun(method, kind, copied, tmp_path):
    marker = tmp_path / "code-ran"
    name = _weight_file(copied)
    _replace_weights(copied, name, _pickled(kind, marker))
    message = _build_error(method, copied)
    assert not marker.exists()
    assert str(copied / name) in message and "carries code" in message


@pytest.mark.parametrize("change", ["drop", "reshape", "extra"])
@pytest.mark.parametrize("method", WEIGHTED)
def test_weights_of_another_architecture(method, change, copied):
    name = _weight_file(copied)
    state = torch.load(copied / name, weights_only=True)
    key = next(k for k, v in state.items() if v.ndim >= 1)
    if change == "drop":
        del state[key]
    elif change == "reshape":
        state[key] = torch.zeros((state[key].shape[0] + 1, *state[key].shape[1:]), dtype=state[key].dtype)
    else:
        state["no_such_layer.weight"] = torch.zeros(3)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _replace_weights(copied, name, buffer.getvalue())
    message = _build_error(method, copied)
    assert str(copied / name) in message and "does not fit" in message
    assert (key if change != "extra" else "no_such_layer.weight") in message


def _first_spec(card) -> dict:
    return next(iter(card["networks"].values())) if "networks" in card else card["network"]


@pytest.mark.parametrize("change", ["unknown", "wider", "negative", "wrong-type"])
@pytest.mark.parametrize("method", WEIGHTED)
def test_bad_network_arguments_in_the_card(method, change, copied):
    card = _card(copied)
    kwargs = _first_spec(card)["kwargs"]
    if change == "unknown":
        kwargs["no_such_argument"] = 1
    else:
        key = next(k for k, v in kwargs.items() if isinstance(v, list) and v and isinstance(v[0], int))
        kwargs[key] = {"wider": [2 * kwargs[key][0], *kwargs[key][1:]], "negative": [-4, *kwargs[key][1:]],
                       "wrong-type": "sixteen"}[change]
    _write_card(copied, card)
    message = _build_error(method, copied)
    assert str(copied) in message
    if change == "unknown":
        assert "no_such_argument" in message and "model.json" in message


def _delete(card: dict, path: tuple) -> None:
    for key in path[:-1]:
        card = card[key]
    del card[path[-1]]


@pytest.mark.parametrize("method, path", [(m, p) for m in WEIGHTED for p in REQUIRED.get(m, [])])
def test_card_without_a_required_field(method, path, copied):
    card = _card(copied)
    _delete(card, path)
    _write_card(copied, card)
    message = _build_error(method, copied)
    assert f"{copied / 'model.json'} lacks" in message and repr(".".join(path)) in message


def test_every_weighted_method_lists_its_required_card_fields():
    assert set(WEIGHTED) <= set(REQUIRED)


@pytest.mark.parametrize("method", WEIGHTED)
def test_optional_card_fields_may_be_missing(method, copied):
    card = _card(copied)
    removed = 0
    for path in OPTIONAL:
        parent = card if len(path) == 1 else card.get(path[0], {})
        if path[-1] in parent:
            _delete(card, path)
            removed += 1
    _write_card(copied, card)
    assert removed >= 2
    assert build(method, weights=copied, device="cpu").model.path == copied


@pytest.mark.parametrize("method", WEIGHTED)
def test_cli_predict_with_corrupt_weights_is_one_error_line(method, copied, tmp_path, capsys):
    cls = get_method(method)
    images = []
    for n, _ in enumerate(cls.inputs):
        images.append(tmp_path / f"in{n}.nii.gz")
        write_image(Image((np.arange(256) % 50).reshape(4, 8, 8).astype(np.int16), (1.0, 1.0, 2.0)), images[-1])
    prompt = {"box": ["--box", 1, 1, 1, 5, 5, 5], "recist": ["--recist", 1, 1, 2, 5, 5, 2]}.get(cls.prompt_kind, [])
    units = ["--pet-units", "suv"] if "PET" in cls.inputs else []
    name = _weight_file(copied)
    _replace_weights(copied, name, bytes(range(256)) * 16)
    out = tmp_path / "label.nii.gz"
    code = main(["--progress", "none", "predict", method, *map(str, images), "-o", str(out), *map(str, prompt),
                 *units, "--weights", str(copied)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "weights_only" not in err
    assert name in err and not out.exists()


@pytest.mark.parametrize("payload", [[torch.zeros(2)], {"a": 3}, {1: torch.zeros(2)}])
def test_weights_that_are_not_a_state_dict(tmp_path, payload):
    mf = _save(tmp_path / "m")
    torch.save(payload, mf.path / "weights.pt")
    card = _card(mf.path)
    card["files"]["weights.pt"] = sha256_of(mf.path / "weights.pt")
    _write_card(mf.path, card)
    with pytest.raises(WeightsError, match="not a state dict"):
        load_model_folder(mf.path).load_state_dict()
