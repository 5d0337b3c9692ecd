"""Per-prompt latency of ``lesionseg serve`` over loopback against the same method in process, on a 512 x 512 chest CT.

    python benchmarks/bench_server.py [--methods tsfcn classical-box] [--repeats 3] [--clients 8] [--device cpu]

Input: ``Lung_Dx-A0001_series3_B_CT.nii.gz`` of ``../shared/data/lung-pet-ct-dx-ct`` (512 x 512 x 64 voxels) and its
tumour boxes (``boxes.csv``: one box per annotated slice, ``a[z, ymin:ymax, xmin:xmax]``); the script says so and exits
0 when the folder is absent. Prompts: each annotated slice's box, one slice thick (9 prompts), ``--repeats`` rounds.

For each method: in process (``lesionseg.build``, ``set_image``, ``predict``); then through a server started here
(``lesionseg serve --port 0`` in a subprocess, the same device) with one :class:`lesionseg.client.RemoteSegmenter`
(upload + ``set_image`` once, then the same prompts); then ``--clients`` clients at once, each with its own session,
all sending the same prompts. Printed: p50 / p95 per prompt, the remote/in-process ratio of the p50s, the server's
own predict time (so the rest is transport and encoding), and the throughput under load. The load average is printed
before and after: the machine may be shared, and the client and the server share its cores.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "lung-pet-ct-dx-ct"
CT_NAME = "Lung_Dx-A0001_series3_B_CT.nii.gz"


def load_prompts(image, boxes_path: Path) -> list:
    """One-slice ``lesionseg.Box`` (LPS mm) per annotated slice, around its voxel box (inclusive)."""
    import lesionseg
    from lesionseg.geometry import index_to_world

    with boxes_path.open(newline="") as handle:
        rows = sorted((r for r in csv.DictReader(handle) if r["nifti"] == CT_NAME), key=lambda r: int(r["z_index"]))
    prompts = []
    for row in rows:
        k = int(row["z_index"])
        x0, y0, x1, y1 = (int(row[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
        corners = np.array([[x, y, k] for x in (x0, x1 - 1) for y in (y0, y1 - 1)], dtype=np.float64)
        points = index_to_world(image, corners)
        prompts.append(lesionseg.Box(points.min(axis=0), points.max(axis=0)))
    return prompts


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """``(p50, p95)`` in milliseconds."""
    values = np.asarray(seconds) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def timed(predict, prompts: list, repeats: int, server: list | None = None) -> list[float]:
    """Seconds per prompt over ``repeats`` rounds (after one warm-up prompt); the server's predict seconds are
    appended to ``server`` when given (a RemoteSegmenter's ``last_timings``)."""
    predict(prompts[0])
    out = []
    for _ in range(repeats):
        for prompt in prompts:
            t0 = time.perf_counter()
            predict(prompt)
            out.append(time.perf_counter() - t0)
            if server is not None:
                server.append(predict.__self__.last_timings.get("predict_s", 0.0))
    return out


def start_server(device: str, folder: Path) -> tuple[subprocess.Popen, str]:
    log = open(folder / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "lesionseg.cli", "serve", "--port", "0", "--device", device,
                             "--max-sessions", "32", "--memory-mb", "16384"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"listening on (http://\S+)", (folder / "server.log").read_text())
        if found:
            return proc, found.group(1)
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start:\n" + (folder / "server.log").read_text())


def under_load(url: str, method: str, image, prompts: list, clients: int, repeats: int) -> tuple[list, float, float]:
    """``(seconds per prompt of all clients, wall seconds of the prompts, set-up seconds)`` with ``clients``
    clients, each uploading the image into its own session, then sending ``repeats`` rounds of the prompts."""
    from lesionseg.client import Connection, RemoteSegmenter

    latencies, failures, lock = [], [], threading.Lock()
    ready, go = threading.Barrier(clients + 1), threading.Event()
    segs = []

    def client() -> None:
        try:
            seg = RemoteSegmenter(url, method, connection=Connection(url))
            seg.set_image(image)
            segs.append(seg)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))
        ready.wait()
        go.wait()
        if failures:
            return
        for _ in range(repeats):
            for prompt in prompts:
                t0 = time.perf_counter()
                seg.predict(prompt)
                with lock:
                    latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    ready.wait()
    setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t1
    for seg in segs:
        seg.connection.close()
    if failures:
        raise SystemExit(f"{len(failures)} client(s) failed: {failures[:3]}")
    return latencies, wall, setup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["tsfcn", "classical-box"])
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the prompts (default 3)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    ct_path, boxes_path = args.data / CT_NAME, args.data / "boxes.csv"
    if not ct_path.is_file() or not boxes_path.is_file():
        print(f"skipped: {ct_path} or {boxes_path} is absent (see ../shared/data/README.md)")
        return 0
    import lesionseg
    from lesionseg.client import RemoteSegmenter

    image = lesionseg.read_image(ct_path)
    prompts = load_prompts(image, boxes_path)
    print(f"{CT_NAME}: {' x '.join(map(str, image.shape[::-1]))} voxels; {len(prompts)} one-slice box prompts x "
          f"{args.repeats} rounds; device {args.device}; {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} (client and server share the machine)")
    with tempfile.TemporaryDirectory() as folder:
        proc, url = start_server(args.device, Path(folder))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for method in args.methods:
                    local = lesionseg.build(method, device=args.device)
                    t0 = time.perf_counter()
                    local.set_image(image)
                    local_set = time.perf_counter() - t0
                    here = timed(local.predict, prompts, args.repeats)
                    del local
                    remote = RemoteSegmenter(url, method)
                    t0 = time.perf_counter()
                    remote.set_image(image)
                    remote_set = time.perf_counter() - t0
                    server_predict: list = []
                    there = timed(remote.predict, prompts, args.repeats, server_predict)
                    remote.connection.close()
                    loaded, wall, setup = under_load(url, method, image, prompts, args.clients, args.repeats)
                    (h50, h95), (r50, r95), (l50, l95) = percentiles(here), percentiles(there), percentiles(loaded)
                    s50 = percentiles(server_predict)[0]
                    print(f"\n{method}: set_image {local_set:.2f} s in process, upload + set_image {remote_set:.2f} s "
                          "over loopback")
                    print(f"  in process           p50 {h50:7.1f} ms  p95 {h95:7.1f} ms")
                    print(f"  loopback, 1 client   p50 {r50:7.1f} ms  p95 {r95:7.1f} ms  ratio p50 {r50 / h50:.2f}, "
                          f"p95 {r95 / h95:.2f}; server predict p50 {s50:.1f} ms, transport + encoding "
                          f"{r50 - s50:.1f} ms")
                    print(f"  loopback, {args.clients} clients  p50 {l50:7.1f} ms  p95 {l95:7.1f} ms; {len(loaded)} "
                          f"prompts in {wall:.1f} s = {len(loaded) / wall:.1f} prompts/s (1 client: "
                          f"{1000 / r50:.1f}/s); {args.clients} uploads + set_image took {setup:.1f} s")
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"\nload average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
