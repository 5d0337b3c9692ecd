"""small-lesion-il evaluation: global vs per-case vs per-tumour Dice on hand-made masks, tests, the command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ttest_rel

from lesionseg import Image
from lesionseg.errors import InputError
from lesionseg.methods.smalllesion.evaluate import (main, markdown, parse_models, score_case, summarise,
                                                    tumour_dice)


def _pair(shape, spacing, truth_boxes, pred_boxes):
    truth, pred = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for box in truth_boxes:
        truth[box] = 1
    for box in pred_boxes:
        pred[box] = 1
    return Image(pred, spacing), Image(truth, spacing)


def _designed_cases():
    """Case A (1 mm voxels): a 27-voxel tumour found exactly, an 8-voxel tumour half found, an 8-voxel false
    positive far from both. Case B (2 mm voxels): one 64-voxel tumour (512 mm^3) missed."""
    a = _pair((10, 20, 20), (1.0, 1.0, 1.0),
              [np.s_[2:5, 2:5, 2:5], np.s_[2:4, 12:14, 12:14]],
              [np.s_[2:5, 2:5, 2:5], np.s_[2:3, 12:14, 12:14], np.s_[7:9, 16:18, 2:4]])
    b = _pair((10, 10, 10), (2.0, 2.0, 2.0), [np.s_[3:7, 3:7, 3:7]], [])
    return a, b


def test_global_per_case_and_per_tumour_dice_differ_as_designed():
    a, b = _designed_cases()
    score_a, score_b = score_case(*a), score_case(*b)
    assert (score_a["intersection"], score_a["pred_voxels"], score_a["truth_voxels"]) == (31, 39, 35)
    assert score_a["dice"] == pytest.approx(62 / 74) and score_b["dice"] == 0.0
    assert [t["dice"] for t in score_a["tumours"]] == [1.0, pytest.approx(2 / 3)]
    assert [t["volume_mm3"] for t in score_a["tumours"] + score_b["tumours"]] == [27.0, 8.0, 512.0]
    records = [{"variant": "seg", "case": name, **score} for name, score in (("a", score_a), ("b", score_b))]
    summary = summarise(records)["seg"]
    assert summary["global_dice"] == round(100 * 62 / (39 + 99), 2)             # 44.93: voxels pooled
    assert summary["per_case"]["mean"] == round(100 * 31 / 74, 2)               # 41.89: mean of 83.8 and 0
    assert summary["per_tumour"]["mean"] == round(100 * 5 / 9, 2)               # 55.56: mean of 1, 2/3, 0
    assert summary["per_tumour_large"] == {"mean": 0.0, "sd": 0.0, "n": 1}      # only the 512 mm^3 tumour
    assert summary["per_case"]["sd"] == round(float(np.std([100 * 62 / 74, 0.0], ddof=1)), 2)
    assert summary["cases"] == 2 and summary["tumours"] == 3


def test_tumour_box_is_padded_in_voxels_and_ignores_other_tumours():
    pred, truth = _pair((12, 12, 12), (0.7, 0.7, 3.0), [np.s_[5, 5, 5]], [np.s_[5, 5, 5], np.s_[5, 5, 7:9]])
    assert tumour_dice(pred, truth)[0]["dice"] == pytest.approx(2 / 3)          # i = 7 inside the box, 8 outside
    assert tumour_dice(pred, truth, pad=3)[0]["dice"] == pytest.approx(0.5)
    assert tumour_dice(pred, truth, pad=0)[0]["dice"] == 1.0
    pred, truth = _pair((12, 12, 12), (1, 1, 1), [np.s_[5, 5, 5], np.s_[5, 5, 7]], [np.s_[5, 5, 5], np.s_[5, 5, 7]])
    assert [t["dice"] for t in tumour_dice(pred, truth)] == [1.0, 1.0]          # the neighbour counts for neither
    with pytest.raises(InputError):
        tumour_dice(pred, truth, pad=-1)
    with pytest.raises(InputError, match="same grid"):
        score_case(pred, Image(truth.array, (2, 2, 2)))


def test_paired_tests_and_table():
    def record(variant, case, dice, tumour_dice):
        return {"variant": variant, "case": case, "dice": dice, "intersection": 1, "pred_voxels": 2,
                "truth_voxels": 2, "tumours": [{"tumour": 1, "dice": tumour_dice, "volume_mm3": 200.0}]}

    seg, il = [0.2, 0.5, 0.4, 0.1], [0.3, 0.55, 0.6, 0.1]
    records = [record("seg", f"c{i}", d, d) for i, d in enumerate(seg)]
    records += [record("seg+il", f"c{i}", d, d / 2) for i, d in enumerate(il)]
    summary = summarise(records)
    assert summary["seg"]["p_per_case"] is None
    assert summary["seg+il"]["p_per_case"] == pytest.approx(ttest_rel(il, seg).pvalue)
    assert summary["seg+il"]["p_per_tumour"] == pytest.approx(ttest_rel(np.array(il) / 2, seg).pvalue)
    table = markdown(summary).splitlines()
    assert table[0].startswith("| variant | cases | tumours | global Dice %") and len(table) == 4
    assert table[3].startswith("| seg+il | 4 | 4 | 50.0 | 38.8 ± 23.2 | 19.4 ± 11.6 | 19.4 ± 11.6 |")
    assert summarise(records[:4] + [record("seg+pp", "c0", 0.2, 0.2)])["seg+pp"]["p_per_case"] is None  # one pair


def test_parse_models():
    assert parse_models(["seg=a,b", "seg+il=c"]) == {"seg": [Path("a"), Path("b")], "seg+il": [Path("c")]}
    for bad in (["seg"], ["=a"], ["seg="], ["seg=a", "seg=b"]):
        with pytest.raises(InputError):
            parse_models(bad)


def _write_case(folder, name, shift):
    from lesionseg.io import write_image

    arr = np.full((20, 24, 28), -1000, np.int16)
    arr[1:19, 2:22, 2:26] = 40
    arr[6:10, 6 + shift:10 + shift, 8:12] = 150
    ct = Image(arr, (1.0, 1.0, 1.0), (3.0, -4.0, 5.0))
    write_image(ct, folder / f"{name}_ct.nii.gz")
    write_image(ct.with_array((arr == 150).astype(np.uint8)), folder / f"{name}_label.nii.gz")


def _model(path, variant, held_out):
    from lesionseg.methods.smalllesion.prior import IntensityPrior
    from lesionseg.methods.smalllesion.segmenter import CHANNELS, SmallLesionPreprocessing
    from lesionseg.modelfolder import save_model_folder
    from lesionseg.nets.unet import UNet

    import hashlib

    from lesionseg.methods.smalllesion.train import prior_json_text

    net = UNet(3, *CHANNELS[variant], channels=(4, 8), norm="group")
    text = prior_json_text(IntensityPrior.gaussian(150.0, 20.0))
    card = {"method": "small-lesion-il", "variant": variant, "network": {"class": "UNet", "kwargs": net.config},
            "preprocessing": SmallLesionPreprocessing(patch=(32, 32, 32)).to_dict(),
            "prior": {"file": "prior.json", "sha256": hashlib.sha256(text.encode()).hexdigest()},
            "training": {"held_out_cases": held_out}}
    save_model_folder(path, card, {"weights.pt": net.state_dict()}, extra_files={"prior.json": text})
    return str(path)


def test_command_pools_folds_adds_seg_pp_and_writes_outputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        _write_case(data, f"c{i}", 4 * i)
    f0, f1 = _model(tmp_path / "f0", "seg", ["c0"]), _model(tmp_path / "f1", "seg", ["c1"])
    il = _model(tmp_path / "il", "seg+il", ["c0", "c1"])
    out_json, out_md = tmp_path / "eval.json", tmp_path / "eval.md"
    out_md.write_text("old")
    args = ["--data", str(data), "--model", f"seg={f0},{f1}", "--model", f"seg+il={il}", "--pp", "seg",
            "--json", str(out_json), "--markdown", str(out_md)]
    assert main(args) == 2 and not out_json.exists()                            # the table exists: no work done
    assert main([*args, "--overwrite"]) == 0
    result = json.loads(out_json.read_text())
    rows = [(r["variant"], r["case"]) for r in result["records"]]
    assert rows == [("seg", "c0"), ("seg+pp", "c0"), ("seg", "c1"), ("seg+pp", "c1"), ("seg+il", "c0"),
                    ("seg+il", "c1")]
    assert list(result["summary"]) == ["seg", "seg+pp", "seg+il"] and result["summary"]["seg"]["cases"] == 2
    assert out_md.read_text(encoding="utf-8") == markdown(result["summary"])
    assert main(["--data", str(data), "--model", f"seg={f0},{f0}"]) == 2        # c0 held out twice
    assert main(["--data", str(data), "--model", f"seg+il={il}", "--pp", "seg+il"]) == 2   # not a seg model


def test_all_cases_scores_every_case_with_one_model_per_row(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        _write_case(data, f"c{i}", 4 * i)
    il = _model(tmp_path / "il", "seg+il", ["c0"])
    out_json = tmp_path / "eval.json"
    assert main(["--data", str(data), "--model", f"seg+il={il}", "--all-cases", "--json", str(out_json)]) == 0
    records = json.loads(out_json.read_text())["records"]
    assert [r["case"] for r in records] == ["c0", "c1", "c2"]                   # not only the held-out c0
    f1 = _model(tmp_path / "f1", "seg", ["c1"])
    assert main(["--data", str(data), "--model", f"seg={il},{f1}", "--all-cases"]) == 2
