"""Every shipped model folder: a card the code loads (its file hashes checked), a MODEL_CARD.md that names its
training data and command, and all of them together under the project's 50 MiB limit."""
from __future__ import annotations

import pytest

from lesionseg.modelfolder import PACKAGE_WEIGHTS, load_model_folder

LIMIT_BYTES = 50 * 1024 ** 2
FOLDERS = sorted(p for p in PACKAGE_WEIGHTS.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def test_all_shipped_weights_stay_under_the_limit():
    total = sum(f.stat().st_size for folder in FOLDERS for f in folder.rglob("*") if f.is_file())
    assert total < LIMIT_BYTES


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_each_folder_loads_and_has_a_model_card(folder):
    model = load_model_folder(folder, folder.name)
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert card.startswith("# ") and len(card) > 500
    assert "train" in card and "train" in model.card["training"]["command"]   # the command that made it
    for name in model.card.get("files", {}):
        assert (folder / name).is_file()
