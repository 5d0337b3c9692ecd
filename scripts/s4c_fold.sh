#!/usr/bin/env bash
# One fold of the s4c 4-fold cross-validation on the synthetic dataset (issue #7), the recipe of docs/s4c.md:
#   a: 11 min, 32^3 patches, batch 4, CE weights 1 1 10 5, 45 % tumour-centred patches
#   b: +43 min, the same, continued from a (--init)
#   c: +27 min, CE weights 1 1 3 3, 30 % background-centred patches, lr 3e-4, continued from b (--init)
# then the held-out evaluation (JSON and Markdown beside the models). About 81 minutes on one CPU thread; run
# one fold per core, then pool the folds:
#   lesionseg evaluate s4c --pool MODELS_DIR/f0_c.eval.json ... --pool MODELS_DIR/f3_c.eval.json
# DATASET is a dataset in the one convention (lesionseg.data), by default the synthetic one written by
#   lesionseg data synthetic s4c -o .data/s4c-cohort --cases 40 --seed 0
# (any s4c dataset works: MSD Task07 imported with 'lesionseg data import msd', labels mapped by name).
# Usage: bash scripts/s4c_fold.sh FOLD [MODELS_DIR] [DATASET] [MINUTES_SCALE]
# MINUTES_SCALE multiplies every budget (default 1; e.g. 0.01 for a smoke run).
set -euo pipefail
fold=${1:?usage: s4c_fold.sh FOLD [MODELS_DIR] [DATASET] [MINUTES_SCALE]}
models=${2:-.data/s4c-models}
cohort=${3:-.data/s4c-cohort}
scale=${4:-1}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
[ -f "$cohort/dataset.json" ] || { echo "error: no dataset $cohort (no dataset.json); write the synthetic one with: lesionseg data synthetic s4c -o $cohort --cases 40 --seed 0" >&2; exit 2; }
mkdir -p "$models"
minutes() { "$py" -c "print(round($1 * $scale, 2))"; }
lesionseg() { "$py" -m lesionseg "$@"; }
train() { lesionseg train s4c --data "$cohort" --folds 4 --fold "$fold" --device cpu "$@"; }
first=(--train-patch 32 --batch-size 4 --class-weights 1 1 10 5 --class-probs 0.2 0.2 0.45 0.15)
[ -f "$models/f${fold}_a/model.json" ] || train -o "$models/f${fold}_a" --minutes "$(minutes 11)" "${first[@]}"
[ -f "$models/f${fold}_b/model.json" ] || train -o "$models/f${fold}_b" --minutes "$(minutes 43)" "${first[@]}" \
    --init "$models/f${fold}_a"
[ -f "$models/f${fold}_c/model.json" ] || train -o "$models/f${fold}_c" --minutes "$(minutes 27)" \
    --train-patch 32 --batch-size 4 --class-weights 1 1 3 3 --class-probs 0.3 0.25 0.3 0.15 --lr 3e-4 \
    --init "$models/f${fold}_b"
[ -f "$models/f${fold}_c.eval.json" ] || lesionseg evaluate s4c --data "$cohort" --model "$models/f${fold}_c" \
    --json "$models/f${fold}_c.eval.json" --markdown "$models/f${fold}_c.eval.md"
