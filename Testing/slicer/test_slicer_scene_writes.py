"""Writing results into the scene, offline with recording fakes: a segmentation made with a node combobox gets its
display node, the lesion table keeps its column types, and every terminology entry exists in a list Slicer loads."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from LesionSegLib import labelmaps, lesiontable, nodes, results, wholevolume
from slicer_stubs import FakeTable, stub_modules

sys.path.insert(0, str(__import__("conftest").EXTENSION / "LesionSegScreening"))
from LesionSegScreeningLib import screening  # noqa: E402


class FakeSegment:
    def __init__(self, name):
        self.name, self.tags = name, {}

    def GetName(self):
        return self.name

    def SetTag(self, tag, value):
        self.tags[tag] = value

    def GetTag(self, tag, value):
        return False

    @staticmethod
    def GetTerminologyEntryTagName():
        return "TerminologyEntry"


class FakeSegmentation:
    def __init__(self):
        self.segments = {}

    def GetNumberOfSegments(self):
        return len(self.segments)

    def GetNthSegment(self, n):
        return list(self.segments.values())[n]

    def GetNthSegmentID(self, n):
        return list(self.segments)[n]

    def AddEmptySegment(self, segmentId, name, color):
        segmentId = f"Segment_{len(self.segments) + 1}"
        self.segments[segmentId] = FakeSegment(name)
        return segmentId

    def GetSegment(self, segmentId):
        return self.segments.get(segmentId)

    def RemoveSegment(self, segmentId):
        del self.segments[segmentId]


class ComboboxSegmentation:
    """A segmentation made with a node combobox's "Create new Segmentation": no display node yet."""

    def __init__(self):
        self.segmentation, self.displayNodes, self.reference = FakeSegmentation(), 0, None

    def GetName(self):
        return "Segmentation"

    def GetTransformNodeID(self):
        return None

    def GetSegmentation(self):
        return self.segmentation

    def CreateDefaultDisplayNodes(self):
        self.displayNodes = 1  # vtkMRMLSegmentationNode: a no-op when one exists

    def GetNodeReference(self, role):
        return self.reference

    def SetReferenceImageGeometryParameterFromVolumeNode(self, volumeNode):
        self.reference = volumeNode


@pytest.fixture
def fake_slicer(monkeypatch, tmp_path):
    stubs = stub_modules(tmp_path, ())
    slicer, vtk = stubs["slicer"], stubs["vtk"]
    slicer.vtkMRMLSegmentationNode = types.SimpleNamespace(GetReferenceImageGeometryReferenceRole=lambda: "ref")
    written = []
    slicer.vtkSlicerSegmentationsModuleLogic = types.SimpleNamespace(
        MODE_REPLACE=0, SetBinaryLabelmapToSegment=lambda labelmap, node, segmentId, mode, extent:
        written.append((segmentId, extent)) or True)
    vtk.reference = lambda value: types.SimpleNamespace(get=lambda: value)
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(nodes, "_oriented_labelmap", lambda volumeNode, patch: "labelmap")
    return slicer, written


VOLUME = types.SimpleNamespace(GetTransformNodeID=lambda: None, GetName=lambda: "CT")


def test_lesion_segment_in_a_combobox_made_segmentation_is_visible(fake_slicer):
    slicer, written = fake_slicer
    segmentationNode = ComboboxSegmentation()
    mask = np.zeros((3, 4, 5), np.uint8)
    mask[1, 1:3, 2:4] = 1
    added = nodes.add_lesion_segment(VOLUME, segmentationNode, results.label_patch(mask), "classical-box", None)
    assert segmentationNode.displayNodes == 1 and not added.createdNode
    assert segmentationNode.reference is VOLUME and written == [(added.segmentId, (2, 3, 1, 2, 1, 1))]


def test_whole_volume_segments_in_a_combobox_made_segmentation_are_visible(fake_slicer):
    slicer, written = fake_slicer
    segmentationNode = ComboboxSegmentation()
    label = np.zeros((3, 4, 5), np.uint8)
    label[0, 0, 0] = 1
    specs = [labelmaps.SegmentSpec(1, "lesion 1", (1.0, 0.0, 0.0))]
    found = labelmaps.replace_owned_segments(segmentationNode, [labelmaps.LabelResult(VOLUME, label, specs)],
                                             "LesionSegAutoPET", "autopet-l2snet", "new")
    assert segmentationNode.displayNodes == 1 and found.segmentIds == ("Segment_1",) and len(written) == 1


def test_lesion_table_columns_keep_their_types(fake_slicer, monkeypatch):
    """Slicer 5.8's ``updateTableFromArray`` makes every column float32; the table is written column by column with
    numpy's types instead: lesion ids int32, SUVs, volumes and centroids float64 (exact)."""
    slicer, written = fake_slicer
    tables = []
    slicer.util.getNodesByClass = lambda cls: tables
    slicer.util.updateTableFromArray = lambda *args, **kwargs: pytest.fail("float32 columns on Slicer 5.8")
    slicer.mrmlScene = types.SimpleNamespace(AddNewNodeByClass=lambda cls, name: tables.append(FakeTable(name))
                                             or tables[-1])
    monkeypatch.setattr(nodes, "_place_under_study", lambda volume, node: None)
    rows = [lesiontable.LesionRow(1, 500, 12.345678901, None, (1.0, 2.0, 3.0), (-1.0, -2.0, 3.0), 9.87654321,
                                  4.5, 7.25, 55.5),
            lesiontable.LesionRow(2, 20, 0.1, None, (4.0, 5.0, 6.0), (-4.0, -5.0, 6.0), 3.0, 2.0, 2.5, 0.2)]
    segmentationNode = types.SimpleNamespace(GetName=lambda: "PET lesions", GetID=lambda: "vtkMRMLSegmentationNode1")
    table = wholevolume.write_table_node(rows, VOLUME, segmentationNode, "LesionSegAutoPET")
    assert table.name == "PET lesions table" and list(table.columns) == list(lesiontable.PET_TABLE_COLUMNS)
    assert table.columns["ID"].dtype == np.int32 and table.columns["ID"].tolist() == [1, 2]
    assert all(table.columns[name].dtype == np.float64 for name in lesiontable.PET_TABLE_COLUMNS[1:])
    assert table.columns["SUVmax"][0] == 9.87654321 and table.columns["Volume (mL)"][0] == 12.345678901
    assert wholevolume.write_table_node(rows[:1], VOLUME, segmentationNode, "LesionSegAutoPET") is table
    assert table.columns["ID"].tolist() == [1] and len(tables) == 1
    with pytest.raises(ValueError, match="2 column names for 1 columns"):
        wholevolume.set_table_columns(table, ["a", "b"], [np.zeros(1)])


GENERAL_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER = "Segmentation category and type - DICOM master list"
SLICER_TERMINOLOGY = {
    (GENERAL_ANATOMY, "SCT^49755003^Morphologically Altered Structure", "SCT^4147007^Mass"),
    (GENERAL_ANATOMY, "SCT^123037004^Anatomical Structure", "SCT^15776009^Pancreas"),
    (DICOM_MASTER, "SCT^123037004^Anatomical Structure", "SCT^15776009^Pancreas"),
    (DICOM_MASTER, "SCT^123037004^Anatomical Structure", "SCT^69930009^Pancreatic duct"),
    (DICOM_MASTER, "SCT^49755003^Morphologically Altered Structure", "SCT^4147007^Mass"),
}
"""(context, category, type) entries read in Slicer's terminology files at v5.8.1 and v5.10.0
(``Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json`` and
``...-DICOM-Master.json``, both loaded by ``vtkSlicerTerminologiesModuleLogic::LoadDefaultTerminologies``). The
General Anatomy list has no pancreatic duct: its 15776009 is the pancreas."""
ANATOMIC_REGIONS = {"", "SCT^15776009^Pancreas"}
"""Anatomic regions used, all in ``AnatomicRegionAndModifier-DICOM-Master.json`` ("Anatomic codes - DICOM master
list") at v5.8.1 and v5.10.0."""


@pytest.mark.parametrize("name,entry", [("mass", results.TERMINOLOGY_MASS)]
                         + [(f"screening {k}", v) for k, v in screening.TERMINOLOGY.items()])
def test_terminology_entries_exist_in_slicer(name, entry):
    fields = entry.split("~")
    assert len(fields) == 7, entry
    assert (fields[0], fields[1], fields[2]) in SLICER_TERMINOLOGY, f"{name}: {fields[:3]}"
    assert fields[3] == "^^" and fields[4] == "Anatomic codes - DICOM master list" and fields[6] == "^^"
    assert fields[5].strip("^") == "" or fields[5] in ANATOMIC_REGIONS, fields[5]
