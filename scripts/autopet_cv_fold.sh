#!/usr/bin/env bash
# One fold of the autopet-l2snet 5-fold cross-validation on the real sarcoma crops + phantoms (issue #17), the
# recipe of docs/autopet.md:
#   MODELS/foldF    localisation net (3 min) + cue-weighted 3D net (20 min), fine-tuned from INIT (a model folder
#                   with loc.pt and seg.pt), CT-channel dropout 0.5, the weights at the end of the budget
#                   (--keep last: the held-out crops are a test fold, so none of them picks an epoch)
#   MODELS/plainF   the 3D net without the cue weight (20 min), fine-tuned from PLAIN_INIT's seg_plain.pt, same
#                   recipe: the ablation's "3D only" row
#   MODELS/foldFp   foldF with plainF's seg_plain.pt (scripts/autopet_combine.py)
# Each step is skipped when its model already exists, so a cut-off run starts again where it stopped.
# Then, over every fold, pool the held-out crops:
#   python scripts/autopet_cv.py --data DATASET --group sarcoma --folds 5 \
#       --models MODELS/fold0p MODELS/fold1p MODELS/fold2p MODELS/fold3p MODELS/fold4p --json cv.json --markdown cv.md
# DATASET: the real crops merged with a phantom cohort, e.g.
#   lesionseg data import ibsi-sts ../shared/data/ibsi-sts-petct -o .data/sts36
#   lesionseg data synthetic autopet-l2snet -o .data/ph24 --cases 24 --seed 0
#   lesionseg data merge .data/sts36=sarcoma .data/ph24=synthetic -o .data/stsmix --folds 5
# Usage: bash scripts/autopet_cv_fold.sh FOLD [MODELS_DIR] [DATASET] [MINUTES_SCALE]
# MINUTES_SCALE multiplies every budget (default 1; 0.01 for a smoke run, 20 for a long run on a GPU).
# Environment: DEVICE (cpu; cuda on a GPU machine), INIT and PLAIN_INIT (default: the shipped model, whose
# seg.pt and seg_plain.pt learnt from phantoms only and never saw a crop), PYTHON (default .venv/bin/python),
# OMP_NUM_THREADS (default 1: one fold per core).
set -euo pipefail
fold=${1:?usage: autopet_cv_fold.sh FOLD [MODELS_DIR] [DATASET] [MINUTES_SCALE]}
models=${2:-.data/autopet-cv}
data=${3:-.data/stsmix}
scale=${4:-1}
py=${PYTHON:-.venv/bin/python}
device=${DEVICE:-cpu}
shipped=ModelBackend/src/lesionseg/weights/autopet-l2snet
init=${INIT:-$shipped}
plain_init=${PLAIN_INIT:-$shipped}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
[ -f "$data/dataset.json" ] || {
    echo "error: no dataset $data (no dataset.json); the comment at the top of $0 says how to write it" >&2; exit 2; }
mkdir -p "$models"
minutes() { "$py" -c "print(round($1 * $scale, 2))"; }
lesionseg() { "$py" -m lesionseg --progress none "$@"; }
recipe=(--data "$data" --folds 5 --fold "$fold" --ct-dropout 0.5 --keep last --seg-optimizer adamw --seg-lr 3e-4
        --lesion-probability 0.67 --device "$device")
[ -f "$models/fold$fold/model.json" ] || lesionseg train autopet-l2snet "${recipe[@]}" -o "$models/fold$fold" \
    --init "$init" --stage both --minutes-loc "$(minutes 3)" --minutes-seg "$(minutes 20)"
[ -f "$models/plain$fold/model.json" ] || lesionseg train autopet-l2snet "${recipe[@]}" -o "$models/plain$fold" \
    --init "$plain_init" --stage plain --minutes-seg "$(minutes 20)"
[ -f "$models/fold${fold}p/model.json" ] || "$py" scripts/autopet_combine.py --base "$models/fold$fold" \
    --plain "$models/plain$fold" -o "$models/fold${fold}p"
echo "fold $fold: $models/fold${fold}p"
