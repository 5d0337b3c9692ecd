"""small-lesion-il evaluation: global vs per-case vs per-tumour Dice on hand-made masks, the paired tests,
``lesionseg evaluate small-lesion-il`` per variant and the pooled Table 1 (``--pool``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ttest_rel

from lesionseg import Image
from lesionseg.errors import InputError
from lesionseg.methods.smalllesion.evaluate import score_case, summarise, table, tumour_dice


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
    records = [{"row": "seg", "case": name, "scores": score} for name, score in (("a", score_a), ("b", score_b))]
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
        return {"row": variant, "case": case, "scores": {
            "dice": dice, "intersection": 1, "pred_voxels": 2, "truth_voxels": 2,
            "tumours": [{"tumour": 1, "dice": tumour_dice, "volume_mm3": 200.0}]}}

    seg, il = [0.2, 0.5, 0.4, 0.1], [0.3, 0.55, 0.6, 0.1]
    records = [record("seg", f"c{i}", d, d) for i, d in enumerate(seg)]
    records += [record("seg+il", f"c{i}", d, d / 2) for i, d in enumerate(il)]
    summary = summarise(records)
    assert summary["seg"]["p_per_case"] is None
    assert summary["seg+il"]["p_per_case"] == pytest.approx(ttest_rel(il, seg).pvalue)
    assert summary["seg+il"]["p_per_tumour"] == pytest.approx(ttest_rel(np.array(il) / 2, seg).pvalue)
    lines = table(summary).splitlines()
    assert lines[0].startswith("| variant | cases | tumours | global Dice %") and len(lines) == 4
    assert lines[3].startswith("| seg+il | 4 | 4 | 50.0 | 38.8 ± 23.2 | 19.4 ± 11.6 | 19.4 ± 11.6 |")
    assert summarise(records[:4] + [record("seg+pp", "c0", 0.2, 0.2)])["seg+pp"]["p_per_case"] is None  # one pair


def _dataset(folder, n):
    """``n`` cases c0, c1, ...: a (20, 24, 28) CT at 1 mm with one 4^3 lesion of 150 HU, shifted per case."""
    from lesionseg.data import DatasetWriter

    with DatasetWriter(folder, ("CT",), {"background": 0, "lesion": 1}, meta={"synthetic": True}) as writer:
        for i in range(n):
            arr = np.full((20, 24, 28), -1000, np.int16)
            arr[1:19, 2:22, 2:26] = 40
            arr[6:10, 6 + 4 * i:10 + 4 * i, 8:12] = 150
            ct = Image(arr, (1.0, 1.0, 1.0), (3.0, -4.0, 5.0))
            writer.add(f"c{i}", [ct], ct.with_array((arr == 150).astype(np.uint8)))
    return folder


def _model(path, variant, held_out):
    import hashlib

    from lesionseg.methods.smalllesion.prior import IntensityPrior
    from lesionseg.methods.smalllesion.segmenter import CHANNELS, SmallLesionPreprocessing
    from lesionseg.methods.smalllesion.train import prior_json_text
    from lesionseg.modelfolder import save_model_folder
    from lesionseg.nets.unet import UNet

    net = UNet(3, *CHANNELS[variant], channels=(4, 8), norm="group")
    text = prior_json_text(IntensityPrior.gaussian(150.0, 20.0))
    card = {"method": "small-lesion-il", "variant": variant, "network": {"class": "UNet", "kwargs": net.config},
            "preprocessing": SmallLesionPreprocessing(patch=(32, 32, 32)).to_dict(),
            "prior": {"file": "prior.json", "sha256": hashlib.sha256(text.encode()).hexdigest()},
            "training": {"held_out_cases": held_out}}
    save_model_folder(path, card, {"weights.pt": net.state_dict()}, extra_files={"prior.json": text})
    return str(path)


def _evaluate(*argv):
    from lesionseg import cli

    return cli.main(["--progress", "none", "evaluate", "small-lesion-il", *map(str, argv)])


def test_variants_are_scored_one_by_one_then_pooled_into_table_1(tmp_path):
    data = _dataset(tmp_path / "data", 2)
    f0, f1 = _model(tmp_path / "f0", "seg", ["c0"]), _model(tmp_path / "f1", "seg", ["c1"])
    il = _model(tmp_path / "il", "seg+il", ["c0", "c1"])
    seg_json, il_json, out_json, out_md = (tmp_path / n for n in ("seg.json", "il.json", "t1.json", "t1.md"))
    assert _evaluate("--data", data, "--model", f0, "--model", f1, "--json", seg_json, "--device", "cpu") == 0
    assert _evaluate("--data", data, "--model", il, "--json", il_json, "--device", "cpu") == 0
    seg = json.loads(seg_json.read_text())
    assert [(r["row"], r["case"]) for r in seg["records"]] == [("seg", "c0"), ("seg+pp", "c0"), ("seg", "c1"),
                                                               ("seg+pp", "c1")]
    assert list(seg["summary"]) == ["seg", "seg+pp"] and seg["summary"]["seg"]["cases"] == 2
    out_md.write_text("old")
    data.rename(tmp_path / "moved")                                            # pooling needs no dataset
    args = ["--pool", seg_json, "--pool", il_json, "--json", out_json, "--markdown", out_md]
    assert _evaluate(*args) == 2 and not out_json.exists()                     # the table exists: no work done
    assert _evaluate(*args, "--overwrite") == 0
    pooled = json.loads(out_json.read_text())
    assert list(pooled["summary"]) == ["seg", "seg+pp", "seg+il"]
    records = pooled["records"]
    assert pooled["summary"] == summarise(records)
    for row in ("seg+pp", "seg+il"):                                            # paired with seg, case by case
        dice = {r["case"]: r["scores"]["dice"] for r in records if r["row"] == row}
        base = {r["case"]: r["scores"]["dice"] for r in records if r["row"] == "seg"}
        expected = None if [dice[c] for c in sorted(dice)] == [base[c] for c in sorted(dice)] else \
            pytest.approx(ttest_rel([dice[c] for c in sorted(dice)], [base[c] for c in sorted(dice)]).pvalue)
        assert pooled["summary"][row]["p_per_case"] == expected
    assert out_md.read_text(encoding="utf-8").endswith(table(pooled["summary"]))
    assert _evaluate("--data", tmp_path / "moved", "--model", f0, "--model", f0) == 2   # c0 held out twice
    assert _evaluate("--pool", seg_json, "--pool", seg_json) == 2              # a case twice in one row


def test_seg_pp_can_be_asked_for_alone_and_not_of_other_variants(tmp_path):
    data = _dataset(tmp_path / "data", 1)
    f0, il = _model(tmp_path / "f0", "seg", ["c0"]), _model(tmp_path / "il", "seg+il", ["c0"])
    out = tmp_path / "pp.json"
    assert _evaluate("--data", data, "--model", f0, "--variant", "seg+pp", "--json", out, "--device", "cpu") == 0
    assert list(json.loads(out.read_text())["summary"]) == ["seg+pp"]
    assert _evaluate("--data", data, "--model", il, "--variant", "seg+pp", "--device", "cpu") == 2


def test_all_cases_scores_every_case(tmp_path):
    data = _dataset(tmp_path / "data", 3)
    il = _model(tmp_path / "il", "seg+il", ["c0"])
    out_json = tmp_path / "eval.json"
    assert _evaluate("--data", data, "--model", il, "--all-cases", "--json", out_json, "--device", "cpu") == 0
    records = json.loads(out_json.read_text())["records"]
    assert [r["case"] for r in records] == ["c0", "c1", "c2"]                   # not only the held-out c0
