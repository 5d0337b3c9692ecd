"""``lesionseg demo`` end to end on one method (the full demo runs in `make demo`)."""
from __future__ import annotations

import json

import numpy as np

from lesionseg import read_image
from lesionseg.demo import CASES, lesion_prompts, run_demo
from lesionseg.prompts import Box, RecistLine


def test_demo_writes_nifti_montage_and_report(tmp_path):
    report = run_demo(tmp_path / "demo", seed=0, device="cpu", methods=["classical-box"])
    out = tmp_path / "demo"
    saved = json.loads((out / "report.json").read_text())
    assert saved["synthetic"] is True and [r["method"] for r in saved["results"]] == ["classical-box"]
    assert saved["results"][0]["dice"] > 0.8
    assert (out / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "synthetic phantoms" in (out / "report.md").read_text()
    pred = read_image(out / "outputs" / "chest_ct_classical-box.nii.gz")
    assert pred.same_grid(read_image(out / "inputs" / "chest_ct_image0.nii.gz"))
    assert report["montage"] == str(out / "montage.png")
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary folder left behind


def test_prompts_derived_from_truth_cover_each_lesion():
    case = CASES["chest_ct"](seed=2)
    boxes = lesion_prompts(case, "box")
    lines = lesion_prompts(case, "recist")
    n = len(case.info["lesions"])
    assert len(boxes) == len(lines) == n and lesion_prompts(case, "none") == [None]
    assert all(isinstance(b, Box) for b in boxes) and all(isinstance(r, RecistLine) for r in lines)
    for box, lesion in zip(sorted(boxes, key=lambda b: tuple(b.lo)),
                           sorted(case.info["lesions"], key=lambda les: tuple(les["box_lps"][0]))):
        centre = np.asarray(lesion["centre_lps"])
        assert np.all(box.lo <= centre) and np.all(centre <= box.hi)


def test_detection_counts_of_an_automatic_method():
    from lesionseg import Image
    from lesionseg.demo import detection_counts

    truth = np.zeros((10, 20, 20), np.uint8)
    truth[2:4, 2:4, 2:4] = 1                      # hit
    truth[6:8, 12:14, 12:14] = 1                  # missed
    pred = np.zeros_like(truth)
    pred[3, 3, 3] = 1
    pred[8, 2, 15] = 1                            # a false positive
    counts = detection_counts(Image(pred, (1, 1, 1)), Image(truth, (1, 1, 1)))
    assert (counts["lesions"], counts["found"], counts["hit"]) == (2, 2, 1)
    assert counts["notes"] == "2 lesions found; 1 of 2 true lesions hit"


def test_an_automatic_multi_class_label_reaches_the_method_and_the_output_unbinarised(monkeypatch):
    """s4c's demo verdict reads tumour (2) and duct (3) labels: the demo must not flatten them to 1."""
    import lesionseg.registry
    from lesionseg.demo import _run_method
    from lesionseg.methods.s4c.evaluate import S4CEvaluation

    case = CASES["pancreas_ct"](0)
    seen = {}

    class Truthful:
        prompt_kind = "none"

        def set_image(self, *images):
            pass

        def predict(self, prompt=None):
            return case.truth

    def notes(cls, segmenter, pred, truth):
        seen["labels"] = sorted(np.unique(pred.array).tolist())
        return {"notes": "fake"}

    monkeypatch.setattr(lesionseg.registry, "build", lambda name, device="cpu": Truthful())
    monkeypatch.setattr(S4CEvaluation, "demo_notes", classmethod(notes))
    result = _run_method("s4c", case, "cpu")
    assert seen["labels"] == sorted(np.unique(case.truth.array).tolist()) and 2 in seen["labels"]
    assert result["dice"] == 1.0 and int(result["_pred"].array.max()) == int(case.truth.array.max())
