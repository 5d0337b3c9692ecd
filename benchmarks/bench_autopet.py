"""autopet-l2snet speed and memory on the CPU at autoPET case size, PET+CT and PET-only, and how they grow.

    python benchmarks/bench_autopet.py [--threads 2] [--model MODEL_DIR] [--slices 110 218 326]
                                       [--inputs pet+ct pet]

An autoPET-size case is 400 x 400 x 326 voxels at 2.04 x 2.04 x 3.0 mm (PET and CT on one grid). The
synthetic whole-body phantom (:func:`lesionseg.phantoms.wholebody.wholebody_petct`, seed 3, with lesions) is
generated at that in-plane size with ``--slices`` axial slices each (326 = the full case; fewer slices = a
shorter body part of the same phantom shape), and ``set_image`` + ``predict`` run end to end in the default
L2SNet + adaptive-threshold mode: PET/CT checks, resampling to the 4 mm working grid, the 2D localisation
net on every coronal slice, the 3D net by sliding window, both maps back onto the PET grid, the threshold.
``--inputs`` runs each size with the PET and its CT (``pet+ct``) and/or the PET alone (``pet``: PET-only mode,
``set_image(pet)``, the CT channel empty). PET-only needs a model trained for it (card
``preprocessing.ct_dropout`` > 0); for another model, such as the first shipped one, the PET-only rows are
skipped with a line saying why. Each size and input runs in a fresh process so that its peak resident memory
(``ru_maxrss``) is its own. ``--in-plane`` shrinks the phantom for a quick check that the script runs.

Goal (issue #5): <= 60 s and <= 4 GB peak on two CPU cores for the full case; time should grow about
linearly with the number of voxels and memory stay bounded. The autoPET III winner had 5 minutes per case
on a T4 GPU. The figures are timings of the shipped networks on a synthetic phantom; the phantom's
generation time is printed separately and not counted.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

IN_PLANE = 400
SPACING = (2.04, 2.04, 3.0)


INPUTS = ("pet+ct", "pet")


def pet_only_refusal(weights: str | None) -> str | None:
    """Why the model cannot run PET-only (its card's ``preprocessing.ct_dropout`` is 0), or None when it can."""
    from lesionseg.modelfolder import find_model_folder

    model = find_model_folder("autopet-l2snet", weights)
    if model is None:
        return "no autopet-l2snet model folder found (give --model)"
    dropout = float(model.card.get("preprocessing", {}).get("ct_dropout", 0.0))
    if dropout > 0:
        return None
    return (f"PET-only skipped: the model {model.path} was not trained for PET-only input (preprocessing.ct_dropout "
            "0); give --model a model trained with 'lesionseg train autopet-l2snet ... --ct-dropout 0.5'")


def one_run(weights: str | None, slices: int, threads: int, inputs: str = "pet+ct",
            in_plane: int = IN_PLANE) -> dict:
    """Segment one phantom of ``slices`` x ``in_plane`` x ``in_plane`` voxels with ``inputs`` "pet+ct" or "pet"
    (run in a child process)."""
    import torch

    from lesionseg.phantoms.wholebody import wholebody_petct
    from lesionseg.registry import build

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    pet, ct, label, _ = wholebody_petct(seed=3, shape=(slices, in_plane, in_plane), spacing=SPACING,
                                        with_lesions=True)
    if inputs == "pet":
        del ct  # PET-only: the CT is not kept (the peak RSS still includes the phantom generation)
    t_gen = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    seg = build("autopet-l2snet", weights=weights, device="cpu")
    t0 = time.perf_counter()
    if inputs == "pet":
        seg.set_image(pet)
    else:
        seg.set_image(pet, ct)
    out = seg.predict()
    seconds = time.perf_counter() - t0
    return {"inputs": inputs, "size": f"{in_plane}x{in_plane}x{slices}", "slices": slices,
            "voxels_M": round(pet.array.size / 1e6, 1), "seconds": round(seconds, 1),
            "seconds_per_M_voxels": round(seconds / (pet.array.size / 1e6), 3),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
            "rss_after_phantom_gb": round(rss_before, 2), "phantom_seconds": round(t_gen, 1),
            "lesion_ml_found": round(float(out.array.sum()) * out.voxel_volume_ml, 1),
            "lesion_ml_true": round(float(label.array.sum()) * label.voxel_volume_ml, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", "--weights", dest="weights", default=None,
                        help="autopet-l2snet model folder (default: the shipped one)")
    parser.add_argument("--slices", type=int, nargs="+", default=[110, 218, 326],
                        help="axial slices of each run (326 = an autoPET-size case)")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS),
                        help="pet+ct: the PET and its CT; pet: the PET alone (PET-only mode)")
    parser.add_argument("--in-plane", type=int, default=IN_PLANE, help="in-plane voxels (400 = autoPET; smaller "
                                                                       "only to check that the script runs)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-inputs", choices=INPUTS, default="pet+ct", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_run(args.weights, args.child, args.threads, args.child_inputs, args.in_plane)))
        return 0
    print(f"# autopet-l2snet benchmark: {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}; "
          f"synthetic whole-body phantom, {args.in_plane} x {args.in_plane} x N at {SPACING} mm (goal for N = 326, "
          f"400 in-plane: <= 60 s, <= 4 GB); inputs {', '.join(args.inputs)}")
    inputs = list(args.inputs)
    if "pet" in inputs:
        refusal = pet_only_refusal(args.weights)
        if refusal:
            print(f"# {refusal}")
            inputs.remove("pet")
    failed = 0
    for slices in args.slices:
        for kind in inputs:
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--child", str(slices),
                   "--child-inputs", kind, "--in-plane", str(args.in_plane)]
            if args.weights:
                cmd += ["--model", args.weights]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"child failed ({out.returncode})"
                print(f"# {kind}, {slices} slices: {last}")
                failed += 1
                continue
            print(out.stdout.strip().splitlines()[-1])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
