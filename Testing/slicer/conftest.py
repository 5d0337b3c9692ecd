"""Offline tests of the Slicer layer: LesionSegLib importable without Slicer, Slicer's API from a JSON dump.

The JSON (``../shared/slicer-api/slicer_api.json`` beside the repository) is never copied into the repo;
tests needing it skip when it is absent.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "LesionSegExtension"
SLICER_API_JSON = Path(__file__).resolve().parents[2].parent / "shared" / "slicer-api" / "slicer_api.json"

sys.path.insert(0, str(EXTENSION / "LesionSegCommon"))


@pytest.fixture(scope="session")
def slicer_api() -> dict:
    """The parsed Slicer API dump; skips when ../shared/slicer-api is absent."""
    if not SLICER_API_JSON.is_file():
        pytest.skip("../shared/slicer-api/slicer_api.json is not present beside the repository")
    return json.loads(SLICER_API_JSON.read_text(encoding="utf-8"))
