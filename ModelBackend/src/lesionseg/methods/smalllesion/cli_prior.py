"""``lesionseg prior``: build, inspect and plot the small-lesion intensity likelihood ``L(HU)``.

Exactly one source: ``--data DATASET`` (KDE of the lesion HU of a dataset's training cases, in the convention
of :mod:`lesionseg.data`; ``--labels`` maps its labels onto ``lesion`` as in training), ``--image CT --mask MASK``
(KDE of one labelled segment), ``--mean HU --sd HU`` (Gaussian), ``--table FILE`` (a saved .json prior or a
``hu,likelihood`` .csv) or ``--weights [MODEL]`` (the prior stored in a small-lesion-il model folder; no path
= the built-in model). Writes ``-o prior.json`` and/or ``--plot prior.png`` (at least one; both checked
before any work) and prints the curve's peak, mean, SD and bandwidth. Bad input: one ``error:`` line, exit 2.
A verb of the ``small-lesion-il`` spec (``verbs=``); this module imports nothing heavy, so the parser stays light.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ... import progress
from ...errors import InputError, WeightsError

METHOD = "small-lesion-il"
PRIOR_FILE = "prior.json"


COMMAND = "prior"
"""The subcommand this module adds (see :attr:`lesionseg.registry.MethodSpec.verbs`)."""

def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``prior`` subcommand to the CLI's subparsers; returns its parser."""
    text = ("Build the intensity likelihood L(HU) of small lesions (small-lesion-il): a kernel density estimate "
            "of the HU inside labelled lesions of the anisotropic-diffusion-smoothed CT, a Gaussian from a typed "
            "mean and SD, a table, or a model's stored prior; save it as JSON and/or plot it (histogram + curve).")
    p = sub.add_parser("prior", help="build / plot the small-lesion intensity prior L(HU)", description=text)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, metavar="DATASET",
                     help="dataset folder (dataset.json, imagesTr, labelsTr; channel CT): KDE of the lesion voxels "
                          "of its training cases")
    src.add_argument("--image", type=Path, metavar="CT", help="CT in HU (needs --mask)")
    src.add_argument("--mean", type=float, metavar="HU", help="Gaussian prior mean in HU (needs --sd)")
    src.add_argument("--table", type=Path, metavar="FILE", help="prior .json, or .csv with columns hu,likelihood")
    src.add_argument("--weights", nargs="?", const="", metavar="MODEL",
                     help="the prior of a small-lesion-il model folder (no path: $LESIONSEG_WEIGHTS, then built-in)")
    p.add_argument("--mask", type=Path, help="lesion mask for --image (voxels > 0, or == --label)")
    p.add_argument("--label", type=int, help="with --mask: use only voxels of this label value")
    p.add_argument("--labels", metavar="MAP", help="with --data: map the dataset's labels onto lesion, e.g. "
                                                    "lesion=1+2 (default: by name)")
    p.add_argument("--sd", type=float, metavar="HU", help="Gaussian prior SD in HU (with --mean)")
    p.add_argument("--bandwidth", type=float, metavar="HU",
                   help="KDE bandwidth in HU (default: Scott's rule, automatic)")
    p.add_argument("--seed", type=int, default=0, help="seed of the voxel subsampling (KDE of > 200k voxels)")
    p.add_argument("-o", "--output", type=Path, help="prior to write (.json)")
    p.add_argument("--plot", type=Path, help="PNG to write: histogram of the lesion HU and the likelihood curve")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Every argument check that needs no file read, so bad input fails before any work."""
    from ...outputs import check_output_file

    if args.output is None and args.plot is None:
        raise InputError("give -o prior.json and/or --plot prior.png (nothing to write)")
    for path, suffix in ((args.output, ".json"), (args.plot, ".png")):
        if path is None:
            continue
        if path.suffix.lower() != suffix:
            raise InputError(f"{path.name} must end in {suffix}")
        check_output_file(path, args.overwrite, [p for p in (args.image, args.mask, args.table) if p is not None],
                          None, "-o" if path is args.output else "--plot")
    if args.output is not None and args.plot is not None and args.output.resolve() == args.plot.resolve():
        raise InputError("-o and --plot name the same file")
    if (args.image is None) != (args.mask is None):
        raise InputError("--image and --mask go together")
    if args.label is not None and args.mask is None:
        raise InputError("--label needs --image and --mask")
    if args.labels is not None and args.data is None:
        raise InputError("--labels applies to --data")
    if (args.mean is None) != (args.sd is None):
        raise InputError("--mean and --sd go together")
    if args.bandwidth is not None and args.data is None and args.image is None:
        raise InputError("--bandwidth applies to a fitted prior (--data or --image/--mask)")
    from .prior import check_bandwidth, check_gaussian

    if args.mean is not None:
        check_gaussian(args.mean, args.sd, "--mean", "--sd")
    if args.bandwidth is not None:
        check_bandwidth(args.bandwidth, "--bandwidth")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")


def _model_prior(explicit: str):
    """The prior of a small-lesion-il model folder: the card's ``prior`` entry ``{"file", "sha256"}`` (as
    the trainer writes it) or a ``prior.json`` listed in ``files``; its sha256 is checked either way."""
    from ...modelfolder import find_model_folder, sha256_of
    from .prior import IntensityPrior

    folder = find_model_folder(METHOD, explicit or None)
    if folder is None:
        raise WeightsError(f"no {METHOD} model found (give --weights MODEL_DIR or set $LESIONSEG_WEIGHTS)")
    entry = folder.card.get("prior") or {}
    if entry.get("file"):
        path = folder.path / entry["file"]
        if not path.is_file() or sha256_of(path) != entry.get("sha256"):
            raise WeightsError(f"{path} is missing or fails its sha256 check against {folder.path / 'model.json'}")
    elif PRIOR_FILE in folder.card.get("files", {}):
        path = folder.file(PRIOR_FILE)
    else:
        raise WeightsError(f"model folder {folder.path} holds no intensity prior ({PRIOR_FILE})")
    prior = IntensityPrior.load(path)
    shift = folder.card.get("prior_shift_hu")
    if shift:
        print(f"note: this model was trained against the prior shifted by {shift:+g} HU; shown unshifted")
    return prior


def _fitted_prior(args: argparse.Namespace):
    """``(prior, samples)``: the KDE prior of ``--data`` or ``--image/--mask`` and the HU samples used."""
    import numpy as np

    from ...image import fmt_num
    from ...io import read_image
    from .prior import IntensityPrior, gather_samples

    if args.data is not None:
        from ...data import Dataset
        from ...data.labels import apply, resolve

        dataset = Dataset(args.data)  # channel 0 is the CT, as in training
        mapping = resolve(("background", "lesion"), dataset.labels, args.labels)
        cases = dataset.cases("train")
        images, masks = [], []
        with progress.task("reading cases", total=len(cases)) as tick:
            for n, case in enumerate(cases):
                images.append(read_image(case.images[0]))
                label = read_image(case.label)
                masks.append(label.with_array((apply(label.array, mapping) > 0).astype(np.uint8)))
                tick(n + 1, len(cases))
        names = [c.name for c in cases]
        image_names, mask_names = [str(c.images[0]) for c in cases], [str(c.label) for c in cases]
    else:
        image, mask = read_image(args.image), read_image(args.mask)
        if args.label is not None:
            if not np.any(mask.array == args.label):
                present = np.unique(mask.array[mask.array != 0])[:10]
                held = f"its labels: {', '.join(fmt_num(v) for v in present)}" if present.size else "it is empty"
                raise InputError(f"the mask {args.mask} holds no voxel of --label {args.label} ({held})")
            mask = mask.with_array((mask.array == args.label).astype("uint8"))
        images, masks, names = [image], [mask], [str(args.image)]
        image_names, mask_names = [f"the image {args.image}"], [f"the mask {args.mask}"]
    progress.emit_line(0.5, "smoothing and gathering lesion HU")
    samples, n_voxels = gather_samples(images, masks, seed=args.seed, image_names=image_names,
                                       mask_names=mask_names)
    prior = IntensityPrior.from_samples(samples, args.bandwidth, info={"n_voxels": n_voxels, "cases": names})
    return prior, samples


def summary_lines(prior) -> list[str]:
    """Readable lines describing a prior (source, peak, mean, SD, half-maximum range, bandwidth)."""
    d = prior.describe()
    lines = [f"intensity prior ({d['source']}): peak {d['peak_hu']:.1f} HU, mean {d['mean_hu']:.1f} HU, "
             f"SD {d['sd_hu']:.1f} HU; L > 0.5 over {d['half_max_hu'][0]:.0f}..{d['half_max_hu'][1]:.0f} HU; "
             f"grid {prior.hu[0]:.0f}..{prior.hu[-1]:.0f} HU ({prior.hu.size} points)"]
    if d["bandwidth_hu"] is not None:
        info = prior.info
        lines.append(f"KDE bandwidth {d['bandwidth_hu']:.2f} HU (Scott's rule unless given) from "
                     f"{info.get('n_samples', '?')} of {info.get('n_voxels', '?')} lesion voxels; sample mean "
                     f"{info.get('mean_hu', float('nan')):.1f} HU, SD {info.get('sd_hu', float('nan')):.1f} HU")
    return lines


def run(args: argparse.Namespace) -> int:
    """Handler of ``lesionseg prior``; returns the exit status."""
    from .prior import IntensityPrior, plot_prior

    _check_args(args)
    samples = None
    if args.data is not None or args.image is not None:
        prior, samples = _fitted_prior(args)
    elif args.mean is not None:
        prior = IntensityPrior.gaussian(args.mean, args.sd)
    elif args.table is not None:
        prior = IntensityPrior.load(args.table)
    else:
        prior = _model_prior(args.weights)
    for line in summary_lines(prior):
        print(line)
    if args.output is not None:
        prior.save(args.output, overwrite=args.overwrite)
        print(f"prior: {args.output}")
    if args.plot is not None:
        plot_prior(prior, args.plot, samples, overwrite=args.overwrite)
        print(f"plot: {args.plot}")
    progress.emit_line(1.0, "done")
    return 0
