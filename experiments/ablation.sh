#!/usr/bin/env bash
# Why does +CAM not beat the baseline (docs/results.md)? AttGAN at the experiment's budget with
# the CAM term on one side only, and with a smaller G weight. Reuses run_experiment.sh's
# classifier (run that first).
#
#   experiments/ablation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/exp}
STEPS=${STEPS:-800}
export CAMFAST_CACHE=${CAMFAST_CACHE:-runs/cache}
CLASSIFIER=${CLASSIFIER:-$OUT/classifier.pt}
M="--set model.conv_dim=16 --set model.dis_fc_dim=64"

run() {  # name, then the CAM weights
  local name=$1; shift
  $PY -m camfast.train --config experiments/budget.yaml --backbone attgan $M "$@" \
      --steps "$STEPS" --seed 0 --out "$OUT/attgan-$name" --overwrite > "$OUT/attgan-$name.train.log" 2>&1
  $PY -m camfast.eval --run "$OUT/attgan-$name" --classifier "$CLASSIFIER" --threads 1 --no-progress --n-samples 2
  echo "done attgan-$name"
}

run gonly --lambda-cam-g 100 --lambda-cam-d 0 &     # G side only (mask from an untrained-for-CAM D)
run donly --lambda-cam-g 0 --lambda-cam-d 1 &       # D side only (G unchanged objective)
wait
run g10 --lambda-cam-g 10 --lambda-cam-d 1          # both sides, G weight / 10
$PY -m camfast.eval --table "$OUT"/attgan-{base,cam,gonly,donly,g10}/eval.json > "$OUT/ablation.md"
cat "$OUT/ablation.md"
