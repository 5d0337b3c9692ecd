"""Every method is one spec (issue #16): what the registry names loads, segmenters never see argparse, no
import cycles, no ``python -m`` entry points left in docs or model cards."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lesionseg.data.synthetic import Generator
from lesionseg.evaluation import Evaluation
from lesionseg.options import Options, Settings
from lesionseg.registry import list_specs
from lesionseg.train_job import CommonTrainSettings, Training

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "ModelBackend" / "src" / "lesionseg"
SPECS = {spec.name: spec for spec in list_specs()}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_what_the_spec_names_loads(name):
    spec = SPECS[name]
    assert issubclass(spec.options, Options) and spec.segmenter.Options is spec.options
    assert spec.classes[0] == "background" and len(spec.classes) >= 2
    if spec.training is not None:
        training = spec.load("training")
        assert isinstance(training, Training) and issubclass(training.settings, Settings)
        common = {f["flag"] for f in CommonTrainSettings.describe()}
        assert not common & {f["flag"] for f in training.settings.describe()}, "a method flag shadows a common one"
    if spec.evaluation is not None:
        assert issubclass(spec.load("evaluation"), Evaluation)
    if spec.synthetic is not None:
        assert isinstance(spec.load("synthetic"), Generator)
    for out in spec.outputs:
        assert callable(spec_writer(out))
    for verb in spec.verbs:
        module = __import__(verb, fromlist=["run"])
        assert module.COMMAND and callable(module.add_parser) and callable(module.run)
    assert name in ("classical-box",) or spec.training is not None, "every learnt method trains with lesionseg train"


def spec_writer(out):
    from lesionseg.registry import load_object

    return load_object(out.writer)


def test_segmenters_import_no_training_evaluation_or_data_module():
    code = ("import sys, lesionseg.registry as r; r.list_methods(); "
            "print([m for m in sys.modules if m.startswith('lesionseg.methods') and "
            "m.rsplit('.', 1)[-1] in ('train', 'evaluate', 'data', 'dataset')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_methods_never_see_argparse():
    offenders = []
    for path in (SRC / "methods").rglob("*.py"):
        if path.name.startswith("cli_"):
            continue  # the verbs' own command-line modules
        text = path.read_text(encoding="utf-8")
        if "getattr(args" in text or re.search(r"^import argparse", text, re.M):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_no_python_m_entry_points_in_docs_cards_and_scripts():
    places = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(SRC / "weights").rglob("*.md"),
              *(SRC / "weights").rglob("model.json"), *(REPO / "scripts").glob("*"), *(REPO / "benchmarks").glob("*.py")]
    found = [str(p.relative_to(REPO)) for p in places if p.is_file() and "python -m lesionseg." in p.read_text(encoding="utf-8")]
    assert found == []
    mains = [str(p.relative_to(SRC)) for p in (SRC / "methods").rglob("*.py")
             if re.search(r"^if __name__ == .__main__.:", p.read_text(encoding="utf-8"), re.M)]
    assert mains == []
