"""LesionSegLib.remote and remote_ui: the "Run on" setting, its effect on every kind of run, and the section widgets;
interactive clicks and the refine effect against a real in-process LesionSeg server give the local results."""
from __future__ import annotations

import os
import stat
import sys
import types
from contextlib import contextmanager

import numpy as np
import pytest
from LesionSegLib import interactive, refine, remote, remote_ui, session

from lesionseg import Box, Image
from lesionseg.server.config import ServerConfig

TOKEN = "a-token-of-twenty-characters"


@pytest.fixture(autouse=True)
def run_here_afterwards():
    """Every test starts and ends with "Run on: this computer" and no cached models."""
    remote.set_current(remote.RunTarget())
    yield
    remote.set_current(remote.RunTarget())
    interactive.MODELS.clear()


@contextmanager
def in_process_server(token=None):
    """A LesionSeg server in a thread of this process on a free loopback port; yields its URL."""
    from lesionseg.server.app import serve_in_thread

    with serve_in_thread(ServerConfig(token=token), "cpu") as (url, _):
        yield url


class FakeSettings:
    def __init__(self, values=None):
        self.values = dict(values or {})

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value):
        self.values[key] = value


def test_the_setting_round_trips_through_the_application_settings():
    assert remote.load(FakeSettings()) == remote.RunTarget("local", "", "")
    assert remote.load(FakeSettings({"LesionSeg/RunOn": "moon"})).where == "local"
    settings = FakeSettings()
    target = remote.RunTarget("server", "http://127.0.0.1:9000", TOKEN)
    remote.save(settings, target)
    assert settings.values == {"LesionSeg/RunOn": "server", "LesionSeg/ServerURL": "http://127.0.0.1:9000",
                               "LesionSeg/ServerToken": TOKEN}
    assert remote.load(settings) == target and target.key[0] == "http://127.0.0.1:9000" and TOKEN not in str(target.key)
    assert remote.RunTarget().key is None and remote.RunTarget().describe() == "this computer"
    with pytest.raises(ValueError, match="no server URL is set"):
        remote.RunTarget("server").check()
    with pytest.raises(ValueError, match="run on must be one of"):
        remote.RunTarget("cloud")


def test_whole_volume_commands_point_at_the_server(tmp_path):
    args = ["predict", "autopet-l2snet", "pet.nrrd", "ct.nrrd", "-o", "out/seg.nii.gz", "--device", "cuda",
            "--weights", "/models/x", "--table", "out/t.csv"]
    assert remote.command_arguments(args, tmp_path) == args  # this computer: unchanged
    target = remote.RunTarget("server", "http://127.0.0.1:9000", TOKEN)
    out = remote.command_arguments(args, tmp_path, target)
    token_file = tmp_path / remote.TOKEN_FILE
    assert out == ["predict", "autopet-l2snet", "pet.nrrd", "ct.nrrd", "-o", "out/seg.nii.gz", "--table", "out/t.csv",
                   "--server", "http://127.0.0.1:9000", "--token-file", str(token_file)]
    assert token_file.read_text() == TOKEN + "\n" and stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert TOKEN not in " ".join(out)
    screen = ["screen", "--venous", "v.nrrd", "-o", "out", "--device", "cuda"]
    assert remote.command_arguments(screen, tmp_path, target) == screen  # no server mode: runs here
    no_token = remote.command_arguments(["predict", "m", "x"], tmp_path / "none", remote.RunTarget("server", "h:1"))
    assert no_token == ["predict", "m", "x", "--server", "h:1"]


def test_the_model_cache_keeps_local_and_server_models_apart():
    built = []
    cache = interactive.ModelCache(lambda method, weights, device: built.append((method, device)) or object())
    here = cache.get("tsfcn", None, "cpu")
    remote.set_current(remote.RunTarget("server", "http://127.0.0.1:9000", TOKEN))
    assert not cache.has("tsfcn", None, "cpu")
    there = cache.get("tsfcn", None, "cpu")
    assert there is not here and cache.get("tsfcn", None, "cpu") is there and len(built) == 2
    remote.set_current(remote.RunTarget())
    assert cache.get("tsfcn", None, "cpu") is here


def _phantom() -> Image:
    array = np.full((5, 48, 48), -800, np.int16)
    yy, xx = np.mgrid[:48, :48]
    array[1:4][:, (yy - 22) ** 2 + (xx - 26) ** 2 < 64] = 40
    return Image(array, (0.8, 0.8, 2.5), (-20.0, 10.0, -100.0))


def test_clicks_and_refinements_on_the_server_equal_the_local_ones():
    image = _phantom()
    box = Box((-20 + 0.8 * 15, 10 + 0.8 * 12, -97.5), (-20 + 0.8 * 36, 10 + 0.8 * 33, -92.5))
    local = session.segment_box(session.SegmenterSession(), "classical-box", "cpu", "k", lambda: image, box)
    mask = np.zeros(image.shape, np.uint8)
    mask[2, 16:28, 20:32] = 1
    fg = np.zeros(image.shape, np.uint8)
    fg[2, 22, 26] = 1
    settings = refine.RefineSettings(iterations=3)
    local_refined = refine.refine_job(lambda m: None, image, mask, fg, None, settings, True)
    with in_process_server(TOKEN) as url:
        remote.set_current(remote.RunTarget("server", url, TOKEN))
        assert session.box_methods() == remote.server_methods("box") and "classical-box" in session.box_methods()
        on_server = session.SegmenterSession()
        result = session.segment_box(on_server, "classical-box", "auto", "k", lambda: image, box)
        again = session.segment_box(on_server, "classical-box", "auto", "k", lambda: image, box)
        assert type(on_server._model.model).__name__ == "RemoteSegmenter"
        assert local.patch.array.sum() > 50
        for got in (result, again):
            assert np.array_equal(got.patch.lo, local.patch.lo) and np.array_equal(got.patch.array, local.patch.array)
        reports = []
        refined = refine.refine_job(reports.append, image, mask, fg, None, settings, False)
        assert local_refined.mask.any() and np.array_equal(refined.mask, local_refined.mask)
        assert refined.notes == () and url in reports[0]
        assert remote.connection().json("GET", "/health")["sessions"] == 1  # one upload for clicks and refinement


def test_the_run_on_section_saves_shares_and_tests_the_setting(monkeypatch):
    from test_refine_effect import Widget

    qt = types.ModuleType("qt")
    for name in ("QComboBox", "QLineEdit", "QPushButton", "QLabel", "QFormLayout"):
        setattr(qt, name, Widget)
    qt.QSettings = FakeSettings
    ctk = types.SimpleNamespace(ctkCollapsibleButton=Widget)
    slicer = types.SimpleNamespace(app=types.SimpleNamespace(processEvents=lambda: None))
    for name, module in (("qt", qt), ("ctk", ctk), ("slicer", slicer)):
        monkeypatch.setitem(sys.modules, name, module)
    settings = FakeSettings({"LesionSeg/RunOn": "server", "LesionSeg/ServerURL": "http://127.0.0.1:1",
                             "LesionSeg/ServerToken": TOKEN})
    first, second = remote_ui.RunOnSection(settings), remote_ui.RunOnSection(FakeSettings())
    assert remote.current() == remote.RunTarget()  # the second section read empty settings: this computer
    first.whereCombo.currentIndex = 1
    first.urlEdit.text, first.tokenEdit.text = "", TOKEN
    first.onChanged()
    assert remote.current() == remote.RunTarget("server", remote.DEFAULT_URL, TOKEN)
    assert settings.values["LesionSeg/ServerURL"] == remote.DEFAULT_URL
    assert second.urlEdit.text == remote.DEFAULT_URL and second.whereCombo.currentIndex == 1
    assert second.testButton.enabled is True
    with in_process_server(TOKEN) as url:
        second.urlEdit.text = url
        text = second.onTest()
        box_line = next(line for line in second.statusLabel.text.splitlines() if line.startswith("box: "))
        assert text.startswith("LesionSeg 0.1.0 (API 1.0) on CPU") and "classical-box" in box_line
        second.tokenEdit.text = "wrong-token-of-some-length"
        assert second.onTest() is None and second.statusLabel.text.startswith("Failed: the LesionSeg server at")
    second.whereCombo.currentIndex = 0
    second.onChanged()
    assert first.whereCombo.currentIndex == 0 and first.urlEdit.enabled is False
    assert remote.listening(first.show) and remote.listening(second.show)
    first.cleanup()
    second.cleanup()
    assert not remote.listening(first.show) and not remote.listening(second.show)


def test_summary_lists_ready_methods_per_prompt_kind():
    info = {"server_version": "0.1.0", "api_version": "1.0", "device": "cuda", "device_name": "NVIDIA H100",
            "methods": [{"name": "tsfcn", "prompt": "box", "ready": True},
                        {"name": "classical-box", "prompt": "box", "ready": True},
                        {"name": "s4c", "prompt": "none", "ready": False}]}
    assert remote.summary(info) == ("LesionSeg 0.1.0 (API 1.0) on NVIDIA H100 (cuda)\nbox: classical-box, tsfcn\n"
                                    "no model on the server: s4c")
