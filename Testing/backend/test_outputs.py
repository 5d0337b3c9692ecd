"""Issue #22: lose nothing, publish nothing broken — output folders, verified atomic writes, signals, sweeping."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lesionseg import Image, read_image, write_image
from lesionseg.cli import main
from lesionseg.errors import InputError, OutputError, OutputExistsError
from lesionseg.outputs import MARKER, atomic_write, output_folder, publish_together, sweep_stale

LESIONSEG = [sys.executable, "-m", "lesionseg"]


def _ct() -> Image:
    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[:8, :32, :32]
    sphere = ((i - 16) ** 2 + (j - 16) ** 2 + ((k - 4) * 2.5) ** 2) <= 30
    arr = np.where(sphere, 40, -850) + rng.normal(0, 15, sphere.shape)
    return Image(arr.astype(np.int16), (0.8, 0.8, 2.0), (-12.8, -12.8, 100.0))


def run(capsys, *argv):
    code = main(["--progress", "none", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- 1. --overwrite never deletes what LesionSeg did not write ------------------------------------------------

def test_demo_into_the_current_folder_is_refused_and_deletes_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "ct.nii.gz").write_bytes(b"not touched")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "demo", "-o", ".", "--overwrite")
    assert code == 2 and err.count("\n") == 1 and "current folder" in err
    assert listing(tmp_path) == ["ct.nii.gz", "thesis.tex"]
    with pytest.raises(InputError, match="current folder"):
        with output_folder(tmp_path.parent, overwrite=True):   # a folder above the current one
            pass
    assert listing(tmp_path) == ["ct.nii.gz", "thesis.tex"]


def test_screen_into_the_folder_of_its_input_is_refused(tmp_path, capsys):
    case = tmp_path / "case"
    case.mkdir()
    write_image(_ct(), case / "venous.nii.gz")
    code, _, err = run(capsys, "screen", "--venous", case / "venous.nii.gz", "-o", case, "--overwrite")
    assert code == 2 and "holds the input" in err and err.count("\n") == 1
    assert listing(case) == ["venous.nii.gz"]


def test_overwrite_replaces_only_a_marked_output_holding_nothing_else(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a LesionSeg output folder"):
        with output_folder(out, overwrite=True) as work:
            (work / "a.txt").write_text("1")
    assert listing(out) == ["notes.txt"] and listing(tmp_path) == ["out", "out/notes.txt"]
    (out / "notes.txt").unlink()
    with output_folder(out) as work:                       # an empty folder may be used
        (work / "a.txt").write_text("1")
        (work / "sub").mkdir()
        (work / "sub" / "b.txt").write_text("2")
    marker = json.loads((out / MARKER).read_text())
    assert marker["tool"] == "lesionseg" and marker["files"] == ["a.txt", "sub/b.txt"]
    with pytest.raises(OutputExistsError):
        with output_folder(out) as work:
            pass
    with output_folder(out, overwrite=True) as work:       # our own earlier output is replaced
        (work / "c.txt").write_text("3")
    assert listing(out) == [MARKER, "c.txt"] and listing(tmp_path) == ["out", f"out/{MARKER}", "out/c.txt"]
    (out / "added-by-user.txt").write_text("mine")
    with pytest.raises(InputError, match="did not write.*added-by-user.txt"):
        with output_folder(out, overwrite=True):
            pass
    assert (out / "added-by-user.txt").read_text() == "mine"


def test_a_failed_run_keeps_the_earlier_output(tmp_path):
    out = tmp_path / "out"
    with output_folder(out) as work:
        (work / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with output_folder(out, overwrite=True) as work:
            (work / "a.txt").write_text("new")
            raise RuntimeError("the method failed")
    assert (out / "a.txt").read_text() == "old" and listing(tmp_path) == ["out", f"out/{MARKER}", "out/a.txt"]


@pytest.mark.parametrize("command", ["predict", "suv"])
def test_output_equal_to_the_input_is_refused_even_with_overwrite(tmp_path, capsys, command):
    path = tmp_path / "ct.nii.gz"
    write_image(_ct(), path)
    before = path.read_bytes()
    args = (["predict", "classical-box", path, "--box-ijk", 10, 10, 2, 20, 20, 5] if command == "predict"
            else ["suv", path, "--pet-units", "suv"])
    code, _, err = run(capsys, *args, "-o", path, "--overwrite")
    assert code == 2 and "is the input" in err and path.read_bytes() == before


# --- output problems are found before the work, naming the user's path -------------------------------------

@pytest.mark.parametrize("case", ["parent is a file", "output is a folder", "link to a folder", "missing parent"])
def test_unwritable_outputs_fail_before_any_work(tmp_path, capsys, monkeypatch, case):
    from lesionseg.registry import get_method

    path = tmp_path / "ct.nii.gz"
    write_image(_ct(), path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "alink.nii.gz").symlink_to(tmp_path / "adir")
    out = {"parent is a file": tmp_path / "afile" / "seg.nii.gz", "output is a folder": tmp_path / "adir",
           "link to a folder": tmp_path / "alink.nii.gz", "missing parent": tmp_path / "no" / "seg.nii.gz"}[case]
    monkeypatch.setattr(get_method("classical-box"), "set_image",
                        lambda *a: pytest.fail("the work started before the output was checked"))
    code, _, err = run(capsys, "predict", "classical-box", path, "--box-ijk", 10, 10, 2, 20, 20, 5, "-o", out,
                       "--overwrite")
    assert code == 2 and err.count("\n") == 1 and str(out) in err and "lesionseg-" not in err
    assert listing(tmp_path / "adir") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_folder_fails_before_any_work(tmp_path, capsys):
    path = tmp_path / "ct.nii.gz"
    write_image(_ct(), path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    code, _, err = run(capsys, "predict", "classical-box", path, "--box-ijk", 10, 10, 2, 20, 20, 5, "-o",
                       ro / "seg.nii.gz")
    ro.chmod(0o755)
    assert code == 2 and "permission denied" in err and str(ro / "seg.nii.gz") in err


# --- 2. a full disk is an error, never a published truncated file ------------------------------------------

def test_a_truncating_writer_is_caught_before_publishing(tmp_path, monkeypatch):
    """ITK's NIfTI writer on a full disk writes part of the file and reports nothing: simulate exactly that."""
    import lesionseg.io as io
    import lesionseg.outputs as outputs

    real = sitk.WriteImage

    def truncating(image, path, *args):
        real(image, path, *args)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(io.sitk, "WriteImage", truncating)
    monkeypatch.setattr(outputs, "_disk_nearly_full", lambda path: True)
    for name in ("seg.nii.gz", "seg.nii"):
        with pytest.raises(OutputError, match="no space left on"):
            write_image(_ct(), tmp_path / name)
    monkeypatch.setattr(outputs, "_disk_nearly_full", lambda path: False)
    with pytest.raises(InputError, match="truncated"):
        write_image(_ct(), tmp_path / "seg.nii.gz")
    assert listing(tmp_path) == []


def test_a_writer_raising_enospc_leaves_nothing(tmp_path):
    def full(tmp):
        Path(tmp).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="no space left on"):
        atomic_write(tmp_path / "t.csv", full)
    assert listing(tmp_path) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KiB tmpfs (needs the right to mount: root here; skipped elsewhere)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_predict_and_suv_on_a_really_full_disk(tmp_path, tiny_tmpfs, capsys):
    rng = np.random.default_rng(1)
    big = Image(rng.normal(40, 200, (40, 64, 64)).astype(np.float32), (1.0, 1.0, 2.0))
    pet = tmp_path / "pet.nii.gz"
    write_image(big.with_array(np.abs(big.array) / 50), pet)
    (tiny_tmpfs / "filler").write_bytes(b"\0" * (200 << 10))
    code, _, err = run(capsys, "suv", pet, "--pet-units", "suv", "-o", tiny_tmpfs / "suv.nii.gz")
    assert code == 2 and "no space left on" in err and err.count("\n") == 1
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["filler"]


# --- 7. SIGTERM cleans up like Ctrl-C; stale temporaries of killed runs are swept ------------------------

def _wait_for(pattern: str, folder: Path, seconds: float = 60) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        if list(folder.glob(pattern)):
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_demo_leaves_nothing(tmp_path):
    proc = subprocess.Popen([*LESIONSEG, "--progress", "none", "demo", "-o", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        assert _wait_for(".demo.lesionseg-*", tmp_path), "the demo never started writing"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM and b"terminated" in err, (proc.returncode, err)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_processes_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".out.lesionseg-{pid}-0123abcd~tmp").mkdir()
    (tmp_path / f".out.lesionseg-{pid}-0123abcd~tmp" / "x.nii.gz").write_bytes(b"x")
    (tmp_path / f".seg.nii.gz.lesionseg-{pid}-89abcdef.nii.gz").write_bytes(b"partial")
    (tmp_path / f".prev.lesionseg-{pid}-00000000~old").mkdir()          # an old output set aside by a killed swap
    (tmp_path / f".prev.lesionseg-{pid}-00000000~old" / "report.json").write_text("{}")
    (tmp_path / f".keep.lesionseg-{os.getpid()}-11111111~tmp").mkdir()  # a live process's temporary
    (tmp_path / ".user-file").write_text("never touched")
    sweep_stale(tmp_path)
    assert listing(tmp_path) == sorted([".user-file", f".keep.lesionseg-{os.getpid()}-11111111~tmp", "prev",
                                        "prev/report.json"])


# --- 8. all outputs of one command are published together or not at all -------------------------------------

def test_publish_together_is_all_or_nothing(tmp_path):
    (tmp_path / "b.txt").write_text("old b")
    with pytest.raises(OSError):
        with publish_together():
            atomic_write(tmp_path / "a.txt", lambda t: t.write_text("a"))
            assert not (tmp_path / "a.txt").exists()               # verified, not yet published
            atomic_write(tmp_path / "b.txt", lambda t: t.write_text("b"), overwrite=True)
            raise OSError(5, "the MIP failed")
    assert listing(tmp_path) == ["b.txt"] and (tmp_path / "b.txt").read_text() == "old b"
    with publish_together():
        atomic_write(tmp_path / "a.txt", lambda t: t.write_text("a"))
        atomic_write(tmp_path / "b.txt", lambda t: t.write_text("b"), overwrite=True)
    assert listing(tmp_path) == ["a.txt", "b.txt"] and (tmp_path / "b.txt").read_text() == "b"


def test_predict_publishes_label_and_extras_together(tmp_path, capsys, monkeypatch):
    from lesionseg.phantoms.wholebody import wholebody_petct
    import lesionseg.methods.autopet.mip as mip

    pet, ct, _, _ = wholebody_petct(seed=0, with_lesions=True)
    write_image(pet, tmp_path / "pet.nii.gz")
    write_image(ct, tmp_path / "ct.nii.gz")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mip, "coronal_mip_png", full_disk)
    code, _, err = run(capsys, "predict", "autopet-l2snet", tmp_path / "pet.nii.gz", tmp_path / "ct.nii.gz",
                       "--pet-units", "suv", "-o", tmp_path / "seg.nii.gz", "--table", tmp_path / "t.csv",
                       "--mip", tmp_path / "mip.png", "--device", "cpu")
    assert code == 2 and "no space left" in err
    assert listing(tmp_path) == ["ct.nii.gz", "pet.nii.gz"]


# --- exit statuses and one-line messages ---------------------------------------------------------------------

def test_a_closed_pipe_is_not_an_error(tmp_path):
    image = tmp_path / "m.nii.gz"
    write_image(_ct().with_array((_ct().array > 0).astype(np.uint8)), image)
    proc = subprocess.run(f"{sys.executable} -m lesionseg evaluate {image} {image} | head -1", shell=True,
                          capture_output=True, text=True, executable="/bin/bash")
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.count("\n") == 1


def test_itk_messages_do_not_precede_the_error_line(tmp_path, capfd):
    path = tmp_path / "cut.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(4000, dtype=np.int16).reshape(10, 20, 20)), str(path))
    path.write_bytes(path.read_bytes()[:-2000])
    assert main(["--progress", "none", "predict", "classical-box", str(path), "--box-ijk", "1", "1", "1", "5", "5",
                 "5", "-o", str(tmp_path / "o.nii.gz")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "MetaImage" not in err
