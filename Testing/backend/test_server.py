"""``lesionseg serve`` end to end: a real uvicorn in a subprocess on a free loopback port, used through
:class:`lesionseg.client.RemoteSegmenter`, raw HTTP and ``lesionseg predict --server``.

Remote labels must equal local ones exactly; every bad input gets its 4xx and the backend's message, and the server
stays up; a client that goes away mid-upload leaves no session and no file; 16 concurrent clients all get correct
labels; SIGTERM stops the server cleanly and removes its temporary folder.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile

import numpy as np
import pytest

import lesionseg
from lesionseg import Box, Image, InputError, RecistLine
from lesionseg.client import Connection, RemoteSegmenter, ServerError, refine_remote
from lesionseg.demo import CASES, lesion_prompts
from lesionseg.geometry import box_to_index, index_to_world
from lesionseg.registry import list_specs
from lesionseg.server.wire import encode_image, multipart

PROMPT_METHODS = [s.name for s in list_specs() if s.prompt != "none"]
THREADS = 2  # torch threads on both sides: float sums (and so a thresholded voxel or two) depend on the count


@pytest.fixture(autouse=True)
def same_threads_as_the_server():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(url, token, temp folder of the server)``; teardown: SIGTERM, exit 0, the server's temp folder is gone."""
    folder = tmp_path_factory.mktemp("server")
    tmp = folder / "tmp"
    tmp.mkdir()
    token = secrets.token_urlsafe(24)
    (folder / "token").write_text(token + "\n")
    log = open(folder / "log.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "lesionseg.cli", "serve", "--port", "0", "--device", "cpu",
                             "--token-file", str(folder / "token"), "--max-upload-mb", "8", "--max-sessions", "40"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": str(THREADS)})
    url, deadline = None, time.monotonic() + 90
    while url is None and proc.poll() is None and time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", (folder / "log.txt").read_text())
        url = found.group(1) if found else time.sleep(0.1)
    if url is None:
        proc.kill()
        pytest.fail("the server did not start:\n" + (folder / "log.txt").read_text())
    yield url, token, tmp
    proc.terminate()
    assert proc.wait(60) == 0, (folder / "log.txt").read_text()[-3000:]
    assert list(tmp.iterdir()) == []
    assert "LesionSeg server stopped" in (folder / "log.txt").read_text()


@pytest.fixture(scope="module")
def chest():
    return CASES["chest_ct"](0)


def raw(url: str, method: str, path: str, token=None, body=None, content_type=None):
    """``(status, JSON or bytes)`` of a request without the client."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url + "/v1" + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as answer:
            data, status, kind = answer.read(), answer.status, answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        data, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    return status, json.loads(data) if "json" in kind else data


def upload(url: str, token: str, parts: list, fields=()):
    """POST /v1/sessions with image ``parts`` (bytes) and text ``fields``."""
    body, ctype = multipart(list(fields), [("image", f"p{n}", data) for n, data in enumerate(parts)])
    return raw(url, "POST", "/sessions", token, body, ctype)


def healthy(url: str, token: str) -> dict:
    status, data = raw(url, "GET", "/health", token)
    assert status == 200 and data["status"] == "ok"
    return data


def test_info_lists_methods_devices_and_versions(server):
    url, token, _ = server
    info = Connection(url, token).info()
    assert info["api_version"] == lesionseg.server.API_VERSION and info["server_version"] == lesionseg.__version__
    assert info["device"] == "cpu" and info["limits"]["max_upload_mb"] == 8
    methods = {m["name"]: m for m in info["methods"]}
    assert set(methods) == set(lesionseg.method_names())
    assert methods["classical-box"]["prompt"] == "box" and methods["classical-box"]["weights"] == "not needed"
    assert methods["recist-coseg"]["prompt"] == "recist" and methods["autopet-l2snet"]["inputs"] == ["PET", "CT"]
    assert methods["tsfcn"]["ready"] == (lesionseg.registry.find_model_folder("tsfcn") is not None)


@pytest.mark.parametrize("method", PROMPT_METHODS)
def test_prompt_method_gives_the_local_labels(server, chest, method):
    url, token, _ = server
    remote = RemoteSegmenter(url, method, token=token)
    local = lesionseg.build(method, device="cpu")
    remote.set_image(*chest.images)
    local.set_image(*chest.images)
    prompts = lesion_prompts(chest, remote.prompt_kind)
    assert len(prompts) == 3
    for prompt in prompts:
        got, want = remote.predict(prompt), local.predict(prompt)
        assert got.array.dtype == want.array.dtype and np.array_equal(got.array, want.array)
        assert got.array.any()
        for name in ("spacing", "origin", "direction"):
            assert np.array_equal(getattr(got, name), getattr(chest.images[0], name))
    assert remote.last_timings["predict_s"] > 0


def test_automatic_method_gives_the_local_labels_with_a_prior_file_sent_along(server, tmp_path):
    from lesionseg.methods.smalllesion.options import SmallLesionOptions

    url, token, _ = server
    case = CASES["smallbowel_ct"](0)
    (tmp_path / "prior.csv").write_text("hu,likelihood\n-100,0\n50,0.2\n150,1\n250,0.5\n400,0\n")
    options = SmallLesionOptions(prior_table=tmp_path / "prior.csv")
    remote = RemoteSegmenter(url, "small-lesion-il", token=token, options=options)
    remote.set_image(*case.images)
    local = lesionseg.build("small-lesion-il", device="cpu", options=options)
    local.set_image(*case.images)
    got, want = remote.predict(), local.predict()
    assert np.array_equal(got.array, want.array) and got.array.any()
    assert remote.last_timings["set_image_s"] > 0  # primed by the first prediction, which carried the file
    payload = {"method": "small-lesion-il", "options": {"prior_table": "/etc/hostname"}}
    session = next(iter(remote.connection._sessions.values()))["session"]
    status, body = raw(url, "POST", f"/sessions/{session}/predict", token, json.dumps(payload).encode())
    assert status == 400 and "--prior-table names a file on the client" in body["error"]


def test_methods_on_one_image_share_one_upload_and_expired_sessions_are_sent_again(server, chest):
    url, token, _ = server
    connection = Connection(url, token)
    before = healthy(url, token)["sessions"]
    box = RemoteSegmenter(url, "classical-box", token=token, connection=connection)
    other = RemoteSegmenter(url, "classical-box", token=token, connection=connection,
                            options={"iterations": 2})
    box.set_image(*chest.images)
    other.set_image(*chest.images)
    assert healthy(url, token)["sessions"] == before + 1
    prompt = lesion_prompts(chest, "box")[1]
    first = box.predict(prompt)
    (session,) = connection._sessions.values()
    status, body = raw(url, "GET", f"/sessions/{session['session']}", token)
    assert status == 200 and body["methods"] == ["classical-box"] and body["images"][0]["shape"] == [40, 160, 160]
    assert raw(url, "DELETE", f"/sessions/{session['session']}", token)[0] == 200
    assert np.array_equal(box.predict(prompt).array, first.array)  # uploaded again behind the scenes
    connection.close()
    assert healthy(url, token)["sessions"] == before


def test_bad_inputs_get_their_4xx_and_the_cli_message(server, chest, tmp_path):
    url, token, _ = server
    image = chest.images[0]
    assert raw(url, "GET", "/info")[0] == 401
    status, body = raw(url, "GET", "/info", "x" * 30)
    assert status == 401 and "token" in body["error"]
    with pytest.raises(ServerError, match="refused"):
        Connection(url, "wrong-token-wrong-token").info()
    broken = b"--x\r\nbroken header\r\n\r\n"
    status, body = raw(url, "POST", "/sessions", token, broken, "multipart/form-data; boundary=x")
    assert status == 400 and "not a well-formed multipart/form-data body" in body["error"]
    status, body = raw(url, "POST", "/sessions", token, b"{}", "application/json")
    assert status == 400 and "multipart/form-data" in body["error"]
    status, body = upload(url, token, [os.urandom(4000)])
    assert status == 400 and "not a NIfTI, NRRD or MHA image" in body["error"] and "p0" in body["error"]
    lesionseg.write_image(image, tmp_path / "ct.nii.gz")
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "ct.nii.gz").read_bytes()[:20000])
    with pytest.raises(InputError) as local:
        lesionseg.read_image(tmp_path / "cut.nii.gz")
    status, body = upload(url, token, [(tmp_path / "cut.nii.gz").read_bytes()])
    assert status == 400 and body["error"] == str(local.value).replace(str(tmp_path / "cut.nii.gz"), "p0")
    nan = image.with_array(image.array.astype(np.float32))
    nan.array[0, 0, 0] = np.nan
    status, body = upload(url, token, [encode_image(Image(nan.array, image.spacing, image.origin))])
    assert status == 400 and "NaN" in body["error"]
    header = b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\nElementDataFile = /etc/passwd\n"
    status, body = upload(url, token, [header])
    assert status == 400 and "separate data file" in body["error"]
    status, body = upload(url, token, [encode_image(image)], [("method", "classical-box"), ("options", "{bad")])
    assert status == 400 and body["error"].startswith("the field 'options' is not valid JSON")
    status, body = upload(url, token, [encode_image(image)] * 2, [("method", "tsfcn")])
    assert status == 409 and body["error"] == "tsfcn takes 1 image(s) (CT); got 2"
    host, port = url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:  # refused before any byte of the body is read
        sock.sendall(f"POST /v1/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {9 << 20}\r\n\r\n".encode())
        sock.settimeout(10)
        answer = ""
        while "}" not in answer and (chunk := sock.recv(65536)):
            answer += chunk.decode()
    assert answer.startswith("HTTP/1.1 413") and "--max-upload-mb" in answer
    big = Image(np.random.default_rng(0).integers(-1000, 1000, (40, 320, 400)).astype(np.int16))
    with pytest.raises(InputError, match="larger than the server's limit of 8 MB"):
        RemoteSegmenter(url, "classical-box", token=token).set_image(big)
    status, body = upload(url, token, [encode_image(image)])
    session = body["session"]
    assert status == 201 and body["images"][0]["shape"] == list(image.shape)
    predict = f"/sessions/{session}/predict"
    status, body = raw(url, "POST", predict, token, b'{"method": "nope"}', "application/json")
    assert status == 404 and "unknown method 'nope'" in body["error"]
    status, body = raw(url, "POST", "/sessions/nosuch/predict", token, b'{"method": "classical-box"}')
    assert status == 404 and body["code"] == "session_expired"
    status, body = raw(url, "POST", predict, token, b"{not json", "application/json")
    assert status == 400 and "not valid JSON" in body["error"]
    recist = RecistLine((0, 0, -200), (10, 0, -200)).to_dict()
    status, body = raw(url, "POST", predict, token, json.dumps({"method": "classical-box", "prompt": recist}).encode())
    assert status == 400 and "takes a box prompt" in body["error"]
    outside = Box((500, 500, 500), (520, 520, 510))
    local_seg = lesionseg.build("classical-box")
    local_seg.set_image(image)
    with pytest.raises(InputError) as local:
        local_seg.predict(outside)
    payload = {"method": "classical-box", "prompt": outside.to_dict(), "options": {"iterations": 0}}
    status, body = raw(url, "POST", predict, token, json.dumps(payload).encode())
    assert status == 400 and "--iterations" in body["error"]
    payload["options"] = {}
    status, body = raw(url, "POST", predict, token, json.dumps(payload).encode())
    assert status == 400 and body["error"] == str(local.value) and body["type"] == "InputError"
    assert raw(url, "GET", "/nowhere", token)[0] == 404
    assert raw(url, "DELETE", f"/sessions/{session}", token)[0] == 200
    assert raw(url, "DELETE", f"/sessions/{session}", token)[0] == 404
    healthy(url, token)


def test_dicom_series_zip_and_its_gap(server, tmp_path):
    from test_dicom import write_ct_series

    url, token, _ = server
    for name, skip in (("whole", ()), ("gap", (3,))):
        write_ct_series(tmp_path / name, n=6, skip=skip)
        data = io.BytesIO()
        with zipfile.ZipFile(data, "w") as zf:
            for n, path in enumerate(sorted((tmp_path / name).iterdir())):
                zf.write(path, f"../../evil/{n}.dcm")
        status, body = upload(url, token, [data.getvalue()])
        if name == "whole":
            want = lesionseg.read_image(tmp_path / name)
            assert status == 201 and body["images"][0]["shape"] == list(want.shape)
            assert np.allclose(body["images"][0]["origin"], want.origin)
        else:
            with pytest.raises(InputError) as local:
                lesionseg.read_image(tmp_path / name)
            assert status == 400 and "gap" in body["error"] and "gap" in str(local.value)


def test_a_client_gone_mid_upload_leaves_no_session_and_no_file(server, chest):
    url, token, tmp = server
    before = healthy(url, token)["sessions"]
    (root,) = tmp.iterdir()
    folders = set(root.iterdir())
    body, ctype = multipart([], [("image", "ct.mha", encode_image(chest.images[0]))])
    host, port = url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"POST /v1/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // 2])
        deadline = time.monotonic() + 10
        while not any(root.rglob("part-0")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(root.rglob("part-0"))  # the upload had started
    deadline = time.monotonic() + 10
    while set(root.iterdir()) != folders and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(root.iterdir()) == folders
    assert healthy(url, token)["sessions"] == before


def test_sixteen_concurrent_clients_get_correct_labels(server, chest):
    url, token, _ = server
    prompt = lesion_prompts(chest, "box")[1]
    index = box_to_index(chest.images[0], prompt)
    crop = chest.images[0].crop(np.maximum(index.lo - 8, 0), np.minimum(index.hi + 8, chest.images[0].size_ijk - 1))
    local = lesionseg.build("classical-box")
    local.set_image(crop)
    want = local.predict(prompt).array
    assert want.any()
    results, failures = [], []

    def client() -> None:
        try:
            seg = RemoteSegmenter(url, "classical-box", token=token, connection=Connection(url, token))
            seg.set_image(crop)
            for _ in range(5):
                results.append(np.array_equal(seg.predict(prompt).array, want))
            seg.connection.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(16)]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, 120 - (time.monotonic() - t0)))
    assert not any(t.is_alive() for t in threads) and failures == []
    assert len(results) == 80 and all(results)


def test_refine_on_the_server_equals_lesionseg_refine(server, chest):
    from lesionseg.prompts import Points
    from lesionseg.refiners import DenseCRFRefiner, refine_with_scribbles

    url, token, _ = server
    image, truth = chest.images[0], chest.truth
    mask = (truth.array > 0).astype(np.uint8)
    fg = index_to_world(image, np.argwhere(mask)[:5, ::-1].astype(float))
    settings = {"radius_mm": 2.0, "iterations": 3, "use_crf": True}
    got = refine_remote(Connection(url, token), image, mask, fg=fg, settings=settings)
    want = refine_with_scribbles(image, image.with_array(mask), fg=Points(fg, np.ones(len(fg))), radius_mm=2.0,
                                 iterations=3, crf=DenseCRFRefiner(5, seed_radius_mm=2.0))
    assert np.array_equal(got.array, (want.array > 0).astype(np.uint8)) and got.array.any()


def test_cli_predict_with_server(server, chest, tmp_path, capsys):
    from lesionseg.cli import main

    url, token, _ = server
    (tmp_path / "token").write_text(token)
    lesionseg.write_image(chest.images[0], tmp_path / "ct.nii.gz")
    box = lesion_prompts(chest, "box")[0]
    args = ["predict", "classical-box", str(tmp_path / "ct.nii.gz"), "--box", *map(str, box.lo), *map(str, box.hi)]
    assert main([*args, "-o", str(tmp_path / "local.nii.gz")]) == 0
    assert main([*args, "-o", str(tmp_path / "remote.nii.gz"), "--server", url,
                 "--token-file", str(tmp_path / "token")]) == 0
    local, remote = (lesionseg.read_image(tmp_path / f"{n}.nii.gz") for n in ("local", "remote"))
    assert np.array_equal(local.array, remote.array) and remote.same_grid(local)
    assert main([*args, "-o", str(tmp_path / "x.nii.gz"), "--server", url]) == 2
    assert "refused" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "x.nii.gz"), "--server", url, "--token", token,
                 "--weights", str(tmp_path)]) == 2
    assert "--weights names a model folder on this computer" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()
