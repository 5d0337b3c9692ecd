"""LesionSegAutoPET offline: the module under stub Slicer modules (parameter node, .ui, CMake lists), and the logic
driving a real background process that runs a fake ``lesionseg predict autopet-l2snet`` (same arguments and
outputs, PROGRESS and error lines): CT pairing, PET file or DICOM files, segments, table node, errors, Cancel."""
from __future__ import annotations

import json
import sys
import types
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import EXTENSION
from LesionSegLib import lesiontable, nodes, process
from slicer_stubs import add_tables_to_scene, check_cmake_lists, fake_backend, load_module, panel_widgets, stub_modules
from test_slicer_lesiontable import IJK_TO_RAS, two_lesion_pet

from lesionseg import Image, InputError
from lesionseg.io import write_image

MODULE = EXTENSION / "LesionSegAutoPET"
sys.path.insert(0, str(MODULE))
from LesionSegAutoPETLib import autopet  # noqa: E402


FAKE_BACKEND = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from lesionseg.io import read_image, write_image
from lesionseg.methods.autopet.lesion_table import lesion_table, write_table

args = sys.argv[1:]
if args[:4] != ["--progress", "lines", "predict", "autopet-l2snet"]:
    sys.stderr.write(f"error: unexpected arguments {args}\n"); sys.exit(2)
rest = [a for a in args[4:] if a != "--allow-pet-only"]
images = []
while rest and not rest[0].startswith("-"):
    images.append(Path(rest.pop(0)))
pet_path = images[0]
opts = dict(zip(rest[::2], rest[1::2]))
weights = Path(opts.get("--weights", "installed")).name
if weights == "error":
    sys.stderr.write("error: the PET and CT do not overlap in physical space\n"); sys.exit(2)
if weights == "old" and len(images) == 1:
    sys.stderr.write("error: this autopet-l2snet model was not trained for PET-only input\n"); sys.exit(2)
if weights == "slow":
    sys.stderr.write("PROGRESS 0.05 loading\n"); sys.stderr.flush(); time.sleep(60)
if pet_path.is_dir() == ("--pet-units" in opts):
    sys.stderr.write("error: units given for DICOM or missing for a file\n"); sys.exit(2)
sys.stderr.write("PROGRESS 0.2000 localisation\n"); sys.stderr.flush()
if pet_path.is_dir():  # the "DICOM" PET: one NRRD copied as 00000.dcm; its label is written with k reversed
    copy = pet_path.parent / "suv_copy.nrrd"
    copy.write_bytes(next(pet_path.iterdir()).read_bytes())
    pet_path_read = copy
else:
    pet_path_read = pet_path
pet = read_image(pet_path_read)
label = pet.with_array((pet.array > 3).astype(np.uint8))
write_table(lesion_table(label, pet), opts["--table"])
if pet_path.is_dir():
    direction = pet.direction.copy(); direction[:, 2] *= -1
    origin = pet.index_to_world[:3, :3] @ [0, 0, pet.shape[0] - 1] + pet.origin
    label = type(pet)(label.array[::-1].copy(), pet.spacing, origin, direction)
write_image(label, opts["-o"])
Path(opts["--mip"]).write_bytes(b"\x89PNG\r\n\x1a\n")
Path(opts["-o"]).with_name("args.json").write_text(json.dumps(args))
sys.stderr.write("PROGRESS 1.0000 done\n")
"""


class FakeVolume(types.SimpleNamespace):
    """A scalar volume node (or table node) of the fake scene: name, image, subject-hierarchy item, attributes."""

    def __init__(self, name: str, image: Image, item: int = 0) -> None:
        super().__init__(name=name, image=image, ijk_to_ras=IJK_TO_RAS, item=item, attributes={})
        low, high = float(image.array.min()), float(image.array.max())
        self.GetName, self.SetName = (lambda: self.name), (lambda name: setattr(self, "name", name))
        self.GetID = lambda: f"vtkMRMLScalarVolumeNode{self.name}"
        self.GetClassName = lambda: "vtkMRMLScalarVolumeNode"
        self.GetAttribute, self.SetAttribute = self.attributes.get, self.attributes.__setitem__
        self.GetTransformNodeID = lambda: None
        self.GetImageData = lambda: types.SimpleNamespace(GetMTime=lambda: 1, GetScalarRange=lambda: (low, high))


@pytest.fixture
def module(monkeypatch, tmp_path):
    pet, ct = two_lesion_pet()
    fake_scene = {"volumes": [FakeVolume("PET", pet, 10), FakeVolume("CT", ct, 11)], "tables": [], "removed": [],
                  "dicom": {}, "written": []}
    stubs = stub_modules(tmp_path, ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"))
    slicer = stubs["slicer"]

    slicer.util.arrayFromVolume = lambda node: node.image.array
    shNode = types.SimpleNamespace(  # scene item 1; study item 5 holds the items 10 (PET) and 11 (CT)
        GetInvalidItemID=lambda: 0, GetSceneItemID=lambda: 1, GetItemByDataNode=lambda node: node.item,
        GetItemParent=lambda item: 5 if item in (10, 11) else 1, GetItemUID=lambda item, name: "",
        GetItemAttribute=lambda item, name: "")
    slicer.vtkMRMLSubjectHierarchyNode = types.SimpleNamespace(GetSubjectHierarchyNode=lambda scene_: shNode)
    slicer.mrmlScene = types.SimpleNamespace(
        IsNodePresent=lambda node: node not in fake_scene["removed"],
        GetNodeByID=lambda node_id: next(v for v in fake_scene["volumes"] if v.GetID() == node_id))
    add_tables_to_scene(slicer, fake_scene["tables"])
    slicer.util.getNodesByClass = lambda name: fake_scene["tables" if name == "vtkMRMLTableNode" else "volumes"]
    slicer.dicomDatabase = types.SimpleNamespace(fileForInstance=lambda uid: fake_scene["dicom"].get(uid, ""),
                                                 fileValue=lambda path, tag: "")
    mod = load_module(monkeypatch, stubs, MODULE)
    mod.fake_scene = fake_scene
    return mod


@pytest.fixture
def fake(module, monkeypatch):
    """The logic with the scene side faked: export writes the volume's image, segments are recorded."""
    fake_scene = module.fake_scene
    fake_backend(monkeypatch, FAKE_BACKEND, fake_scene["written"],
                 lambda node, labels, name: FakeVolume(name, labels[0].volumeNode.image))
    monkeypatch.setattr(nodes, "_place_under_study", lambda volume, node: fake_scene["written"].append(("sh", node)))
    return module.LesionSegAutoPETLogic(), fake_scene, *fake_scene["volumes"]


def test_process_pairs_the_ct_runs_and_loads_lesions(fake):
    logic, fake_scene, pet, ct = fake
    assert logic.pairedCT(pet) == (ct, "CT paired automatically: same study as the PET")
    progress = []
    result = logic.process(pet, perLesion=True, device="cpu", onProgress=lambda f, m: progress.append((f, m)))
    assert progress == [(0.2, "localisation"), (1.0, "done")]
    args = json.loads((logic.lastOutputDir / "args.json").read_text())
    assert args[4:6] == [str(logic.lastOutputDir.parent / "pet.nrrd"), str(logic.lastOutputDir.parent / "ct.nrrd")]
    assert args[-4:] == ["--device", "cpu", "--pet-units", "suv"]
    assert [(r["id"], r["voxels"]) for r in result["rows"]] == [(1, 12), (2, 4)]
    (segmentation, labels, owner, method, name), (where, table) = fake_scene["written"]
    assert where == "sh"
    assert (segmentation, owner, method, name) == (None, "LesionSegAutoPET", "autopet-l2snet", "PET lesions")
    assert labels[0].volumeNode is pet and [s.name for s in labels[0].specs] == ["lesion 1", "lesion 2"]
    assert np.bincount(labels[0].label.ravel()).tolist()[1:] == [12, 4]
    assert result["tableNode"] is table and table.name == "PET lesions table"
    assert list(table.columns) == list(lesiontable.PET_TABLE_COLUMNS) and table.columns["ID"].tolist() == [1, 2]
    assert [row["segment"] for row in result["rows"]] == ["lesion 1", "lesion 2"]
    assert result["mip"] == logic.lastOutputDir / "mip.png" and result["segmentIds"] == ("lesion 1", "lesion 2")
    assert sorted(p.name for p in logic.lastOutputDir.parent.iterdir()) == ["out"]  # inputs deleted
    first = logic.lastOutputDir
    again = logic.process(pet, ct, result["segmentationNode"], perLesion=False)
    assert again["tableNode"] is table and fake_scene["tables"] == [table]  # the panel's table is reused
    assert [s.name for s in fake_scene["written"][-1][1][0].specs] == ["lesions"]
    assert set(np.unique(fake_scene["written"][-1][1][0].label).tolist()) == {0, 1}
    assert not first.parent.exists() and logic.lastOutputDir.is_dir()


def test_dicom_pet_goes_as_its_files_and_the_label_is_resampled(fake, tmp_path):
    logic, fake_scene, pet, ct = fake
    write_image(pet.image, tmp_path / "suv.nrrd")
    fake_scene["dicom"] = {"1.2.3": str(tmp_path / "suv.nrrd")}
    pet.attributes[autopet.DICOM_INSTANCES_ATTRIBUTE] = "1.2.3"
    runner = logic.process(pet, ct, waitForCompletion=False, petUnits="Bq/mL")  # units ignored for DICOM
    assert isinstance(runner, process.BackgroundProcess) and logic.job.options["petFromDicom"]
    with pytest.raises(RuntimeError, match="already running"):
        logic.process(pet, ct)
    result = logic.finish(runner.wait(timeout=60))
    args = json.loads((logic.lastOutputDir / "args.json").read_text())
    assert args[4] == str(logic.lastOutputDir.parent / "pet_dicom") and "--pet-units" not in args
    labels = fake_scene["written"][0][1]
    np.testing.assert_array_equal(labels[0].label, (pet.image.array > 3).astype(np.uint8))
    assert result["note"] == "" and not (logic.lastOutputDir.parent / "pet_dicom").exists()
    with pytest.raises(RuntimeError, match="no lesion segmentation is running"):
        logic.finish(runner.poll())


def test_backend_error_and_cancel_change_nothing(fake, tmp_path):
    logic, fake_scene, pet, ct = fake
    (tmp_path / "error").mkdir()
    (tmp_path / "slow").mkdir()
    with pytest.raises(RuntimeError, match="^the PET and CT do not overlap in physical space$"):
        logic.process(pet, ct, weights=tmp_path / "error")
    assert fake_scene["written"] == [] and logic.job is None and logic.lastResult is None
    runner = logic.process(pet, ct, waitForCompletion=False, weights=tmp_path / "slow")
    folder = logic.job.folder
    logic.cancel()
    assert logic.finish(runner.wait(timeout=20)) is None
    assert fake_scene["written"] == [] and logic.job is None and not folder.exists()
    assert not list(tmp_path.glob("LesionSegAutoPET-*"))  # every run's temporary folder is removed


def test_bad_input_raises_before_writing_anything(fake, tmp_path):
    logic, fake_scene, pet, ct = fake
    with pytest.raises(ValueError, match="this does not look like PET in SUV: values -1000..40"):
        logic.process(ct, pet)
    with pytest.raises(ValueError, match="needs the patient weight \\(kg\\) and the injected dose"):
        logic.process(pet, ct, petUnits="Bq/mL")
    with pytest.raises(ValueError, match="does not look like PET in Bq/mL"):
        logic.process(pet, ct, petUnits="bqml", weightKg=70.0, doseMBq=300.0)
    with pytest.raises(ValueError, match="same volume"):
        logic.process(pet, pet)
    with pytest.raises(ValueError, match="weights folder"):
        logic.process(pet, ct, weights=tmp_path / "nope")
    ct.GetTransformNodeID = lambda: "vtkMRMLLinearTransformNode1"
    with pytest.raises(InputError, match="different transforms"):
        logic.process(pet, ct)
    fake_scene["dicom"], ct.GetTransformNodeID = {}, lambda: None
    pet.attributes[autopet.DICOM_INSTANCES_ATTRIBUTE] = "9.9"
    with pytest.raises(InputError, match="1 of 1 DICOM files of the PET are no longer"):
        logic.process(pet, ct)
    assert not list(tmp_path.glob("LesionSegAutoPET-*")) and logic.job is None and fake_scene["written"] == []


def test_pet_only_runs_without_a_ct(fake, tmp_path, caplog):
    """No CT (none paired, or the panel's empty CT selector: ``pairCT=False``): the backend gets the PET alone, the
    result says PET-only; a model not trained for it fails with the backend's line and changes nothing."""
    logic, fake_scene, pet, ct = fake
    assert logic.checkInputs(pet, None, "suv").units == "suv"
    result = logic.process(pet, None, pairCT=False, allowPetOnly=True, device="cpu")
    args = json.loads((logic.lastOutputDir / "args.json").read_text())
    assert args[4] == str(logic.lastOutputDir.parent / "pet.nrrd") and args[5] == "-o"
    assert "--allow-pet-only" in args and result["petOnly"] is True
    assert [(r["id"], r["voxels"]) for r in result["rows"]] == [(1, 12), (2, 4)]
    assert sorted(p.name for p in logic.lastOutputDir.parent.iterdir()) == ["out"]
    assert autopet.PET_ONLY_NOTICE in caplog.text
    paired = logic.process(pet, None)  # the console default still pairs the study's CT
    args = json.loads((logic.lastOutputDir / "args.json").read_text())
    assert args[5] == str(logic.lastOutputDir.parent / "ct.nrrd") and "--allow-pet-only" not in args
    assert paired["petOnly"] is False
    pet.item = 0  # not in a study: nothing to pair -> PET-only
    assert logic.process(pet)["petOnly"] is True
    written = len(fake_scene["written"])
    (tmp_path / "old").mkdir()
    with pytest.raises(RuntimeError, match="^this autopet-l2snet model was not trained for PET-only input$"):
        logic.process(pet, weights=tmp_path / "old")
    assert len(fake_scene["written"]) == written and logic.job is None


def test_module_structure(module):
    node = module.LesionSegAutoPETParameterNode
    assert list(node.__annotations__) == ["petVolume", "ctVolume", "segmentation", "petUnits", "weightKg", "doseMBq",
                                          "minutesToScan", "perLesion", "allowPetOnly", "device"]
    assert node.petUnits == "SUV (already converted)" and node.device == "auto" and node.perLesion is False
    assert node.allowPetOnly is False
    classes = panel_widgets(MODULE, node)
    kinds = {"petVolumeSelector": "qMRMLNodeComboBox", "petUnitsComboBox": "QComboBox", "deviceComboBox": "QComboBox",
             "perLesionCheckBox": "QCheckBox", "weightSpinBox": "QDoubleSpinBox", "lesionTable": "QTableWidget",
             "allowPetOnlyCheckBox": "QCheckBox"}
    assert {name: classes[name] for name in kinds} == kinds
    ui = ET.parse(MODULE / "Resources" / "UI" / "LesionSegAutoPET.ui").getroot()
    headers = [c.find("property/string").text for c in ui.iter("column")]
    assert headers == list(lesiontable.PET_PANEL_COLUMNS)

def test_cmake_lists_every_file():
    check_cmake_lists(MODULE)
