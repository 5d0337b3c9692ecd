"""The server's parts in-process: settings and safety rules, session store (TTL, LRU, memory budget), device queue,
upload sniffing and unzipping, client helpers (URL, API version); and an in-process server for what a subprocess
cannot arrange (an unexpected error answering 500 with an id that the log repeats, sessions expiring)."""
from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
import warnings
import zipfile
from contextlib import contextmanager

import numpy as np
import pytest

from lesionseg import Box, Image, InputError
from lesionseg.cli import main
from lesionseg.client import Connection, RemoteSegmenter, ServerError, normalise_url, version_problem
from lesionseg.server import uploads
from lesionseg.server.config import ServerConfig, is_loopback, read_token
from lesionseg.server.errors import Busy, ImageCountError, TooLarge, error_body, error_status
from lesionseg.server.queue import DeviceQueue
from lesionseg.server.sessions import SessionStore, new_session, state_bytes
from lesionseg.server.wire import encode_image

TOKEN = "0123456789abcdef-token"


def test_without_a_token_only_loopback_hosts(capsys):
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host) and ServerConfig(host=host).token is None
    for host in ("0.0.0.0", "192.168.1.5", "::", "gpu.example.org"):
        assert not is_loopback(host)
        with pytest.raises(InputError, match=f"refusing to listen on {host} without a token"):
            ServerConfig(host=host)
        assert ServerConfig(host=host, token=TOKEN).host == host
    with pytest.raises(InputError, match="at least 16 characters"):
        ServerConfig(token="short")
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to listen on 0.0.0.0 without a token") and "ssh -N -L 8765" in err


def test_token_from_value_file_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LESIONSEG_TOKEN", raising=False)
    assert read_token() is None and read_token("abc") == "abc"
    (tmp_path / "t").write_text(" secret-line \nsecond\n")
    assert read_token(token_file=tmp_path / "t") == "secret-line"
    monkeypatch.setenv("LESIONSEG_TOKEN", "from-env")
    assert read_token() == "from-env" and read_token(env=False) is None
    (tmp_path / "empty").write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_token(token_file=tmp_path / "empty")
    with pytest.raises(InputError, match="cannot read the token file"):
        read_token(token_file=tmp_path / "missing")
    with pytest.raises(InputError, match="not both"):
        read_token("a", tmp_path / "t")


def test_errors_keep_their_message_and_get_a_4xx():
    assert error_status(InputError("x")) == (400, "input")
    assert error_status(ImageCountError("y")) == (409, "image_count") and error_status(TooLarge("z"))[0] == 413
    assert error_body(ImageCountError("tsfcn takes 1 image(s)")) == {
        "error": "tsfcn takes 1 image(s)", "type": "InputError", "code": "image_count"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _session(store: SessionStore, nbytes: int = 0):
    session = new_session(store.new_folder(), [])
    session.nbytes = nbytes
    store.add(session)
    return session


def test_sessions_expire_and_the_least_recently_used_go_first(tmp_path):
    clock = Clock()
    store = SessionStore(ServerConfig(max_sessions=2, session_ttl_s=10, memory_mb=1), tmp_path / "root", clock)
    (tmp_path / "root").mkdir()
    a = _session(store)
    clock.now = 1
    b = _session(store)
    clock.now = 2
    with store.using(a.id):
        pass  # a is now more recent than b
    c = _session(store)
    assert not b.folder.exists() and a.folder.is_dir() and c.folder.is_dir() and len(store) == 2
    with pytest.raises(InputError, match="unknown or expired session"):
        store.remove(b.id)
    with store.using(a.id):
        clock.now = 100  # a is in use: not expired under it; c expires
        assert store.evict() == [c.id] and not c.folder.exists()
    clock.now = 200
    with pytest.raises(InputError, match="upload the image again"):
        with store.using(a.id):
            pass
    d = _session(store, 600_000)
    e = _session(store, 600_000)  # over the 1 MB budget: d goes
    assert not d.folder.exists() and e.folder.is_dir()
    with pytest.raises(TooLarge, match="memory budget of 1 MB"):
        _session(store, 2 << 20)
    store.close()
    assert not (tmp_path / "root").exists()


def test_state_bytes_counts_each_array_once():
    array = np.zeros((4, 5, 6), np.float32)
    image = Image(array)
    assert state_bytes({"a": image, "b": [image, array], "c": "text"}) == array.nbytes
    assert state_bytes({"x": np.zeros(10, np.uint8), "y": (np.zeros(3, np.int64),)}) == 10 + 24


def test_the_device_queue_runs_one_job_at_a_time_and_bounds_the_wait():
    queue = DeviceQueue(max_waiting=3)
    running, peak, lock = [0], [0], threading.Lock()

    def job(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        warnings.warn(f"job {n}")
        with lock:
            running[0] -= 1
        return n

    async def many(n: int):
        return await asyncio.gather(*(queue.run(job, i) for i in range(n)), return_exceptions=True)

    results = asyncio.run(many(4))
    assert [r.value for r in results] == [0, 1, 2, 3] and peak[0] == 1
    assert results[2].warnings == ("job 2",) and results[3].wait_s > results[0].wait_s
    results = asyncio.run(many(8))
    assert sum(isinstance(r, Busy) for r in results) == 4 and queue.pending == 0
    queue.shutdown()


def test_uploads_are_recognised_by_their_bytes(tmp_path):
    image = Image(np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4), (0.5, 0.5, 2))
    from lesionseg import write_image

    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        write_image(image, tmp_path / f"x{suffix}")
        assert uploads.sniff((tmp_path / f"x{suffix}").read_bytes()[:1024]) == suffix
    assert uploads.sniff(encode_image(image)[:1024]) == ".mha"
    assert uploads.sniff(b"PK\x03\x04" + b"\0" * 100) == "zip" and uploads.sniff(b"\0" * 600) is None
    assert uploads.sniff(b"\0" * 344 + b"ni1\0" + b"\0" * 200) == "img"


def test_metadata_sent_along_comes_with_the_images(tmp_path):
    image = Image(np.ones((2, 3, 4), np.float32), (2, 2, 2))
    (tmp_path / "pet.mha").write_bytes(encode_image(image))
    session = new_session(tmp_path, [tmp_path / "pet.mha"], meta=[{"units": "SUVbw"}])
    (read,) = session.read_images()
    assert read.meta == {"units": "SUVbw"} and read.same_grid(image) and session.read_images()[0] is read


def test_a_zip_is_unpacked_flat_under_our_names(tmp_path):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr("../../escape.dcm", b"a" * 10)
        zf.writestr("/abs/b.dcm", b"b" * 10)
        zf.writestr("__MACOSX/._b.dcm", b"junk")
        zf.writestr("series/.hidden", b"junk")
    (tmp_path / "up.zip").write_bytes(data.getvalue())
    out = uploads.unzip_series(tmp_path / "up.zip", tmp_path / "dicom", 1000, "image 1")
    assert sorted(p.name for p in out.iterdir()) == ["00000.dcm", "00001.dcm"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["00000.dcm", "00001.dcm", "up.zip"]
    with pytest.raises(TooLarge, match="unpacks to more than"):
        uploads.unzip_series(tmp_path / "up.zip", tmp_path / "small", 15, "image 1")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(InputError, match="image 2: not a readable zip"):
        uploads.unzip_series(tmp_path / "bad.zip", tmp_path / "bad", 1000, "image 2")


def test_urls_and_which_side_to_update():
    assert normalise_url("127.0.0.1:8765") == "http://127.0.0.1:8765"
    assert normalise_url("https://gpu.example.org/lesionseg/v1/") == "https://gpu.example.org/lesionseg"
    with pytest.raises(InputError):
        normalise_url("ftp://x")
    assert version_problem("1.0", "1.0") is None and version_problem("1.3", "1.1") is None
    assert "update LesionSeg on the server" in version_problem("1.0", "1.2")
    assert "update LesionSeg on the server" in version_problem("0.9", "1.0")
    assert "update LesionSeg on this computer" in version_problem("2.0", "1.4")


def test_an_unreachable_server_says_so():
    with pytest.raises(ServerError, match="cannot reach the LesionSeg server at http://127.0.0.1:9.*SSH tunnel"):
        Connection("127.0.0.1:9", timeout=2).info()


@contextmanager
def in_process_server(config: ServerConfig):
    """:func:`lesionseg.server.app.serve_in_thread` on the CPU; afterwards the server's folder must be gone."""
    from lesionseg.server.app import serve_in_thread

    with serve_in_thread(config, "cpu") as (url, app):
        yield url, app
    assert not app.state.lesionseg.store.root.exists()


def test_unexpected_errors_answer_500_with_the_logged_id_and_sessions_expire(monkeypatch, caplog):
    from lesionseg.server import work

    image = Image(np.full((3, 40, 40), -800, np.int16), (1, 1, 3))
    image.array[1, 10:20, 10:20] = 40
    with in_process_server(ServerConfig(session_ttl_s=0.5)) as (url, app):
        seg = RemoteSegmenter(url, "classical-box", connection=Connection(url))
        seg.set_image(image)
        box = Box((8, 8, 3), (22, 22, 3))
        first = seg.predict(box)
        time.sleep(0.8)  # the session expires; the client uploads again
        assert np.array_equal(seg.predict(box).array, first.array) and first.array.any()
        assert app.state.lesionseg.store.summary()["sessions"] == 1

        def broken(*args, **kwargs):
            raise RuntimeError("a bug")

        monkeypatch.setattr(work, "predict", broken)
        with caplog.at_level(logging.ERROR, logger="lesionseg.server"):
            with pytest.raises(ServerError, match=r"failed \(HTTP 500\): internal server error \(id (\w+);") as err:
                seg.predict(box)
        error_id = str(err.value).split("(id ")[1].split(";")[0]
        assert any(error_id in r.getMessage() and r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)
        assert Connection(url).json("GET", "/health")["status"] == "ok"


def test_set_image_checks_like_a_local_segmenter():
    with in_process_server(ServerConfig()) as (url, _):
        seg = RemoteSegmenter(url, "classical-box")
        with pytest.raises(InputError, match="takes 1 image"):
            seg.set_image(Image(np.zeros((2, 4, 4))), Image(np.zeros((2, 4, 4))))
        with pytest.raises(InputError, match="lesionseg.Image"):
            seg.set_image(np.zeros((2, 4, 4)))
        with pytest.raises(InputError, match="NaN"):
            seg.set_image(Image(np.full((2, 4, 4), np.nan)))
        with pytest.raises(InputError, match="call set_image"):
            seg.predict(None)
        with pytest.raises(InputError, match="unknown method 'nope' on the server"):
            RemoteSegmenter(url, "nope")
        with pytest.raises(InputError, match="takes its Options or a dict of settings, got int"):
            RemoteSegmenter(url, "classical-box", options=5)


def test_backend_warnings_come_back_as_warnings():
    import lesionseg
    from lesionseg import LesionSegWarning

    image = Image(np.full((3, 40, 40), -800, np.int16), (1, 1, 3))
    image.array[1, 2:12, 2:12] = 40
    box = Box((-5, -5, 3), (14, 14, 3))  # partly outside the image
    local = lesionseg.build("classical-box")
    local.set_image(image)
    with pytest.warns(LesionSegWarning) as want:
        expected = local.predict(box)
    with in_process_server(ServerConfig()) as (url, _):
        seg = RemoteSegmenter(url, "classical-box", connection=Connection(url))
        seg.set_image(image)
        with pytest.warns(LesionSegWarning) as got:
            label = seg.predict(box)
    assert [str(w.message) for w in got] == [str(w.message) for w in want]
    assert np.array_equal(label.array, expected.array)
