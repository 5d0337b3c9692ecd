"""``lesionseg batch`` (lesionseg.batch): a dataset folder of 6 phantom cases (one corrupt file, one missing image)
-> 4 done, 2 failed with their messages; a rerun recomputes nothing; a run killed mid-way (SIGINT, SIGKILL) leaves
no partial case and a rerun finishes it; worker processes and Ray give the same labels; CSV input with prompt
columns; DICOM SEG and PET SUV figures per case.

The weight-free ``classical-box`` (GrabCut + DenseCRF, deterministic) runs the cases; one Ray instance
(``ray.init(num_cpus=2)``) serves the whole module.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lesionseg
from lesionseg import InputError, read_image
from lesionseg.batch import RECORD, list_cases, run_batch
from lesionseg.batch.worker import describe_error
from lesionseg.cli import main
from lesionseg.geometry import world_to_index
from lesionseg.pet import read_pet
from lesionseg.phantoms import chest_ct

from test_dicomseg import pet_threshold, read_seg, seg_label, small_pet, write_ct_dicom, write_pet_dicom  # noqa: F401

METHOD = "classical-box"
CORRUPT, MISSING = "c2", "c4"


def phantom_case(seed: int, shape=(12, 64, 64)):
    """A chest phantom with one nodule and a box around it (3 mm margin), LPS mm."""
    ct, _, info = chest_ct(seed=seed, shape=shape, spacing=(1.5, 1.5, 3.0), n_nodules=1, diameter_mm=(12.0, 15.0))
    lo, hi = (np.asarray(v) for v in info["lesions"][0]["box_lps"])
    return ct, lesionseg.Box(lo - 3.0, hi + 3.0)


def write_dataset(root: Path, n: int = 6, broken: bool = True, shape=(12, 64, 64)) -> Path:
    """A dataset folder with ``n`` test cases ``c0..`` and a box per case in prompts.json; with ``broken``, case c2's
    file is cut to 500 bytes and case c4 has a prompt but no image."""
    (root / "imagesTs").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 0,
                                                   "labels": {"background": 0, "lesion": 1}}))
    prompts = {}
    for i in range(n):
        ct, box = phantom_case(i, shape)
        prompts[f"c{i}"] = [box.to_dict()]
        if not (broken and f"c{i}" == MISSING):
            lesionseg.write_image(ct, root / "imagesTs" / f"c{i}_0000.nii.gz")
    if broken:
        path = root / "imagesTs" / f"{CORRUPT}_0000.nii.gz"
        path.write_bytes(path.read_bytes()[:500])
    (root / "prompts.json").write_text(json.dumps(prompts))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("batch") / "Dataset900_Chest")


def summary(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", newline="") as fh:
        return {row["case"]: row for row in csv.DictReader(fh)}


def stamps(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob(f"*/{RECORD}") if not p.parent.name.startswith(".")}


def hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".lesionseg-batch.json")


def labels(out: Path) -> dict[str, np.ndarray]:
    return {p.parent.name: read_image(p).array for p in sorted(out.glob("*/label.nii.gz"))
            if not p.parent.name.startswith(".")}


def test_cohort_with_a_corrupt_and_a_missing_case(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--progress", "none", "batch", METHOD, str(dataset), "-o", str(out)]) == 3
    captured = capsys.readouterr()
    rows = summary(out)
    assert [r["status"] for r in rows.values()] == ["done", "done", "failed", "done", "failed", "done"]
    corrupt = f"cannot read {dataset / 'imagesTs' / 'c2_0000.nii.gz'}: the file is truncated or corrupt"
    assert rows[CORRUPT]["error"].startswith(corrupt)
    assert rows[MISSING]["error"] == "no image imagesTs/c4_0000.nii.gz for this case (named in prompts.json)"
    assert f"error: case {CORRUPT}: {rows[CORRUPT]['error']}" in captured.err
    assert "4 done (0 from an earlier run), 2 failed" in captured.out
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["c0", "c1", "c3", "c5"]
    for case in ("c0", "c1", "c3", "c5"):
        record = json.loads((out / case / RECORD).read_text())
        assert record["files"] == ["label.nii.gz"] and record["method"] == METHOD
        label = read_image(out / case / "label.nii.gz")
        image = read_image(dataset / "imagesTs" / f"{case}_0000.nii.gz")
        assert label.same_grid(image, tol=0) and label.array.any()
        voxels = int((label.array > 0).sum())
        assert float(rows[case]["volume_ml"]) == pytest.approx(voxels * label.voxel_volume_ml)
        assert int(rows[case]["lesions"]) >= 1 and rows[case]["suv_max"] == ""
    meta = json.loads((out / "summary.json").read_text())
    assert meta["counts"] == {"done": 4, "failed": 2, "not run": 0, "reused": 0}

    before = stamps(out)
    assert main(["--progress", "none", "batch", METHOD, str(dataset), "-o", str(out)]) == 3
    assert stamps(out) == before  # nothing recomputed
    rows = summary(out)
    assert [rows[c]["reused"] for c in ("c0", "c1", "c3", "c5")] == ["true"] * 4
    assert rows[CORRUPT]["status"] == rows[MISSING]["status"] == "failed"  # failed cases are tried again
    assert "4 done (4 from an earlier run), 2 failed" in capsys.readouterr().out

    assert main(["--progress", "none", "batch", METHOD, str(dataset), "-o", str(out), "--iterations", "3"]) == 2
    assert "was made with other settings (options); pass --redo" in capsys.readouterr().err
    assert main(["--progress", "none", "batch", METHOD, str(dataset), "-o", str(out), "--redo"]) == 3
    assert all(stamps(out)[c] > before[c] for c in before)


def test_bad_folders_and_sources_are_refused(dataset, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["batch", METHOD, str(dataset), "-o", str(foreign)]) == 2
    assert "is not empty and is not a lesionseg batch folder" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    assert main(["batch", METHOD, str(tmp_path / "nothing"), "-o", str(tmp_path / "o")]) == 2
    assert "no such dataset folder or CSV file" in capsys.readouterr().err
    assert main(["batch", METHOD, str(dataset), "-o", str(tmp_path / "o"), "--output-format", "dicom-seg"]) == 2
    assert "a dataset folder holds image files" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_csv_with_prompt_columns(tmp_path, dataset):
    images = dataset / "imagesTs"
    _, box1 = phantom_case(1)
    ct3 = read_image(images / "c3_0000.nii.gz")
    _, box3 = phantom_case(3)
    ijk = [np.rint(v).astype(int) for v in world_to_index(ct3, np.array([box3.lo, box3.hi]))]
    table = tmp_path / "cases.csv"
    table.write_text("case,image,box,box_ijk\n"
                     f"one,{images / 'c1_0000.nii.gz'},{' '.join(map(str, (*box1.lo, *box1.hi)))},\n"
                     f"three,{os.path.relpath(images / 'c3_0000.nii.gz', tmp_path)},,{' '.join(map(str, (*ijk[0], *ijk[1])))}\n"
                     f"none,{images / 'c0_0000.nii.gz'},,\n"
                     f"gone,{tmp_path / 'absent.nii.gz'},1 2 3 4 5 6,\n")
    result = run_batch(table, METHOD, tmp_path / "out")
    rows = {r["case"]: r for r in result.rows}
    assert [rows[c]["status"] for c in ("one", "three", "none", "gone")] == ["done", "done", "failed", "failed"]
    assert rows["none"]["error"].startswith("classical-box needs a box prompt and case none has none")
    assert rows["gone"]["error"] == f"no such file or folder: {tmp_path / 'absent.nii.gz'}"
    reference = tmp_path / "reference.nii.gz"
    assert main(["predict", METHOD, str(images / "c1_0000.nii.gz"), "-o", str(reference),
                 "--box", *map(str, (*box1.lo, *box1.hi))]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "one" / "label.nii.gz").array,
                                  read_image(reference).array)
    assert read_image(tmp_path / "out" / "three" / "label.nii.gz").array.any()
    record = json.loads((tmp_path / "out" / "three" / RECORD).read_text())
    assert record["prompts"] == [{"kind": "box_ijk", "lo": [int(min(a, b)) for a, b in zip(*ijk)],
                                  "hi": [int(max(a, b)) for a, b in zip(*ijk)]}]


def test_csv_problems_are_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("case,ct\na/b,x.nii.gz\n")
    with pytest.raises(InputError, match=r"case id 'a/b' \(row 2 of bad.csv\) cannot name an output folder"):
        list_cases(bad, ("CT",))
    bad.write_text("case,ct\nx,a.nii.gz\nx,b.nii.gz\n")
    with pytest.raises(InputError, match="case id 'x' appears twice"):
        list_cases(bad, ("CT",))
    bad.write_text("case,pet\nx,a.nii.gz\n")
    with pytest.raises(InputError, match=r"has no column 'ct'; its columns: case, pet"):
        list_cases(bad, ("CT",))
    bad.write_text("ct,box\na_0000.nii.gz,1 2 3\n")
    with pytest.raises(InputError, match=r"row 2: column 'box' needs 6 numbers"):
        list_cases(bad, ("CT",))
    bad.write_text("PET,CT\np.nii.gz,\n")
    (case,) = list_cases(bad, ("PET", "CT"), optional_inputs=1)
    assert case.name == "p" and len(case.images) == 1 and case.problem == f"no such file or folder: {tmp_path / 'p.nii.gz'}"


def test_describe_error_matches_the_cli_line():
    assert describe_error(InputError("bad box")) == "bad box"
    assert describe_error(MemoryError("cannot allocate")) == "out of memory (MemoryError: cannot allocate)"
    assert describe_error(RuntimeError("CUDA out of memory. Tried")) == \
        "out of memory (RuntimeError: CUDA out of memory. Tried)"
    assert describe_error(KeyError("x")) == "unexpected KeyError: 'x'"


def _start(dataset: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lesionseg", "--progress", "none", "batch", METHOD, str(dataset),
                             "-o", str(out), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_mid_case(proc: subprocess.Popen, out: Path, timeout: float = 120.0) -> None:
    """Wait until at least one case is finished and another one is being written (its hidden folder exists)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the batch ended before it could be interrupted: {proc.communicate()}")
        if out.is_dir() and stamps(out) and any(n.endswith("~tmp") for n in hidden(out)):
            return
        time.sleep(0.01)
    pytest.fail("no case finished in time")


@pytest.fixture(scope="module")
def slow_dataset(tmp_path_factory) -> Path:
    """8 clean cases large enough (24 x 128 x 128) that a case takes a while."""
    return write_dataset(tmp_path_factory.mktemp("slow") / "Dataset901_Chest", n=8, broken=False, shape=(24, 128, 128))


@pytest.mark.parametrize("how, workers", [("SIGINT", "1"), ("SIGKILL", "1"), ("SIGINT", "2"), ("SIGKILL", "2")])
def test_a_killed_run_leaves_no_partial_case_and_a_rerun_finishes(slow_dataset, tmp_path, how, workers):
    out = tmp_path / "out"
    proc = _start(slow_dataset, out, "--workers", workers)
    _wait_mid_case(proc, out)
    proc.send_signal(getattr(signal, how))  # to the parent only: its worker processes follow it
    _, err = proc.communicate(timeout=60)
    if how == "SIGINT":
        assert proc.returncode == 130 and "error: interrupted" in err.decode()
        assert not [n for n in hidden(out) if n.endswith("~tmp")]  # the unfinished case folder was removed
        statuses = [r["status"] for r in summary(out).values()]
        assert statuses.count("done") == len(stamps(out)) and "not run" in statuses
    else:
        assert proc.returncode == -signal.SIGKILL
    finished = stamps(out)
    assert 1 <= len(finished) < 8
    for folder in (p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        assert (folder / RECORD).is_file() and (folder / "label.nii.gz").is_file()
    time.sleep(0.5)  # workers of a killed parent stop on their parent-death signal
    assert main(["--progress", "none", "batch", METHOD, str(slow_dataset), "-o", str(out)]) == 0
    assert len(stamps(out)) == 8 and hidden(out) == []
    assert {c: stamps(out)[c] for c in finished} == finished  # what was finished was not recomputed


def test_ray_without_a_cluster_says_so(dataset, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is running in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(InputError, match="no Ray cluster at --ray-address auto"):
        run_batch(dataset, METHOD, tmp_path / "out", engine="ray", ray_address="auto")


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_engines_give_the_same_labels(dataset, tmp_path, ray_instance):
    local = run_batch(dataset, METHOD, tmp_path / "local")
    pool = run_batch(dataset, METHOD, tmp_path / "pool", workers=2)
    ray = run_batch(dataset, METHOD, tmp_path / "ray", engine="ray", workers=2)
    for result in (local, pool, ray):
        assert [r["status"] for r in result.rows] == ["done", "done", "failed", "done", "failed", "done"]
        assert [r["error"] for r in result.rows] == [r["error"] for r in local.rows]
    assert {r["worker"] for r in local.rows if "worker" in r} == {os.getpid()}
    assert os.getpid() not in {r["worker"] for r in pool.rows + ray.rows if "worker" in r}
    reference = labels(tmp_path / "local")
    assert len(reference) == 4
    for engine in ("pool", "ray"):
        found = labels(tmp_path / engine)
        assert found.keys() == reference.keys()
        for case, array in reference.items():
            np.testing.assert_array_equal(found[case], array)


def test_dicom_seg_cases_and_pet_suv_figures(tmp_path, pet_threshold):  # noqa: F811
    ct, box = phantom_case(1)
    ct_dir = write_ct_dicom(ct, tmp_path / "ct")
    table = tmp_path / "ct.csv"
    table.write_text(f"case,image,box\nct1,{ct_dir},{' '.join(map(str, (*box.lo, *box.hi)))}\n"
                     f"file,{tmp_path / 'ct.nii.gz'},{' '.join(map(str, (*box.lo, *box.hi)))}\n")
    lesionseg.write_image(ct, tmp_path / "ct.nii.gz")
    result = run_batch(table, METHOD, tmp_path / "seg", output_format="dicom-seg")
    assert [r["status"] for r in result.rows] == ["done", "failed"]
    assert "needs a DICOM series as the case's first input" in result.rows[1]["error"]
    files = sorted(ct_dir.glob("*.dcm"))
    reference = run_batch(table, METHOD, tmp_path / "nifti")
    np.testing.assert_array_equal(seg_label(read_seg(tmp_path / "seg" / "ct1" / "seg.dcm"), files),
                                  read_image(tmp_path / "nifti" / "ct1" / "label.nii.gz").array)
    assert reference.rows[0]["volume_ml"] == pytest.approx(result.rows[0]["volume_ml"])

    pet, _, _ = small_pet()
    pet_dir = write_pet_dicom(pet, tmp_path / "pet")
    (tmp_path / "pet.csv").write_text(f"case,pet\npet1,{pet_dir}\n")
    rows = run_batch(tmp_path / "pet.csv", pet_threshold, tmp_path / "petout", output_format="dicom-seg").rows
    suv = read_pet(pet_dir)
    mask = suv.array > 3.0
    assert rows[0]["status"] == "done"
    assert rows[0]["suv_max"] == pytest.approx(float(suv.array[mask].max()))
    assert rows[0]["suv_mean"] == pytest.approx(float(suv.array[mask].mean()), rel=1e-6)
    assert rows[0]["volume_ml"] == pytest.approx(mask.sum() * suv.voxel_volume_ml)
    assert rows[0]["tlg_ml"] == pytest.approx(float(suv.array[mask].mean()) * mask.sum() * suv.voxel_volume_ml,
                                              rel=1e-6)
    pet_files = sorted(pet_dir.glob("*.dcm"))
    np.testing.assert_array_equal(seg_label(read_seg(tmp_path / "petout" / "pet1" / "seg.dcm"), pet_files),
                                  mask.astype(np.uint8))


def test_a_table_method_writes_its_lesion_table_and_counts_its_rows(tmp_path):
    from lesionseg.lesions import read_lesion_table
    from lesionseg.modelfolder import find_model_folder
    from lesionseg.phantoms import smallbowel_ct

    if find_model_folder("small-lesion-il") is None:
        pytest.skip("no small-lesion-il weights installed")
    ct, _, _ = smallbowel_ct(seed=3, shape=(24, 64, 64))
    lesionseg.write_image(ct, tmp_path / "bowel.nii.gz")
    (tmp_path / "cases.csv").write_text("CT\nbowel.nii.gz\n")
    (row,) = run_batch(tmp_path / "cases.csv", "small-lesion-il", tmp_path / "out", device="cpu").rows
    assert row["status"] == "done" and row["case"] == "bowel"
    assert json.loads((tmp_path / "out" / "bowel" / RECORD).read_text())["files"] == ["label.nii.gz", "lesions.csv"]
    table = read_lesion_table(tmp_path / "out" / "bowel" / "lesions.csv")["lesions"]
    assert row["lesions"] == len(table) >= 1
    assert row["volume_ml"] == pytest.approx(sum(r["volume_ml"] for r in table))
