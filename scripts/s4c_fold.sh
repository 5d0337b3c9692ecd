#!/usr/bin/env bash
# One fold of the s4c 4-fold cross-validation on the synthetic cohort (issue #7), the recipe of docs/s4c.md:
#   a: 11 min, 32^3 patches, batch 4, CE weights 1 1 10 5, 45 % tumour-centred patches
#   b: +43 min, the same, continued from a
#   c: +27 min, CE weights 1 1 3 3, 30 % background-centred patches, lr 3e-4, continued from b
# then the held-out evaluation (JSON beside the models). About 81 minutes on one CPU thread; run one fold per
# core. Usage: bash scripts/s4c_fold.sh FOLD [MODELS_DIR] [COHORT_DIR] [MINUTES_SCALE]
# MINUTES_SCALE multiplies every budget (default 1; e.g. 0.01 for a smoke run).
set -euo pipefail
fold=${1:?usage: s4c_fold.sh FOLD [MODELS_DIR] [COHORT_DIR] [MINUTES_SCALE]}
models=${2:-.data/s4c-models}
cohort=${3:-.data/s4c-cohort}
scale=${4:-1}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
[ -d "$cohort" ] || { echo "error: no cohort $cohort; write it with: $py -m lesionseg.methods.s4c.data -o $cohort --cases 40 --seed 0" >&2; exit 2; }
mkdir -p "$models"
minutes() { "$py" -c "print(round($1 * $scale, 2))"; }
train() { "$py" -m lesionseg train s4c --data "$cohort" --folds 4 --fold "$fold" --device cpu "$@"; }
first=(--train-patch 32 --batch 4 --class-weights 1 1 10 5 --class-probs 0.2 0.2 0.45 0.15)
[ -f "$models/f${fold}_a/model.json" ] || train -o "$models/f${fold}_a" --minutes "$(minutes 11)" "${first[@]}"
[ -f "$models/f${fold}_b/model.json" ] || train -o "$models/f${fold}_b" --minutes "$(minutes 43)" "${first[@]}" \
    --init "$models/f${fold}_a"
[ -f "$models/f${fold}_c/model.json" ] || train -o "$models/f${fold}_c" --minutes "$(minutes 27)" \
    --train-patch 32 --batch 4 --class-weights 1 1 3 3 --class-probs 0.3 0.25 0.3 0.15 --lr 3e-4 \
    --init "$models/f${fold}_b"
[ -f "$models/f${fold}_c.eval.json" ] || "$py" -m lesionseg.methods.s4c.evaluate --data "$cohort" \
    --model "$models/f${fold}_c" --json "$models/f${fold}_c.eval.json"
