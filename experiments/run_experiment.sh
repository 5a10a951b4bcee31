#!/usr/bin/env bash
# Reproduces docs/results.md: baseline vs +CAM for StarGAN, AttGAN and STGAN on the built-in
# synthetic faces at the quick preset's size, then the attribute classifier and the evaluation.
#
#   experiments/run_experiment.sh            # all stages
#   experiments/run_experiment.sh train      # or: classifier, eval, table (+ figures, mask means)
#
# Env: OUT (default runs/exp), STEPS (default 800), SEED (0), BACKBONES ("stargan attgan stgan"),
# CLASSIFIER (default $OUT/classifier.pt), CAMFAST_CACHE (default runs/cache), PY.
# Two runs at a time (baseline and +CAM of one backbone), one torch thread each: on a 2-core
# machine that is both cores, and one thread per small model beats two (docs/training.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/exp}
STEPS=${STEPS:-800}
SEED=${SEED:-0}
export CAMFAST_CACHE=${CAMFAST_CACHE:-runs/cache}
STAGE=${1:-all}
BACKBONES=${BACKBONES:-stargan attgan stgan}
CLASSIFIER=${CLASSIFIER:-$OUT/classifier.pt}  # reuse one classifier across experiments
mkdir -p "$OUT"

train_one() {  # backbone variant
  local b=$1 v=$2 m="--set model.conv_dim=16" lam=""
  [ "$b" != stargan ] && m="$m --set model.dis_fc_dim=64"
  [ "$v" = base ] && lam="--lambda-cam-g 0 --lambda-cam-d 0"   # +CAM: the backbone's defaults
  $PY -m camfast.train --config experiments/budget.yaml --backbone "$b" $m $lam \
      --steps "$STEPS" --seed "$SEED" --out "$OUT/$b-$v" --overwrite > "$OUT/$b-$v.train.log" 2>&1
  echo "trained $b-$v: $(tail -1 "$OUT/$b-$v.train.log")"
}

if [ "$STAGE" = all ] || [ "$STAGE" = train ]; then
  for b in $BACKBONES; do
    train_one "$b" base & train_one "$b" cam & wait
  done
fi

if [ "$STAGE" = all ] || [ "$STAGE" = classifier ]; then
  # Trained once on the train split of the same synthetic set, then held fixed for every run.
  $PY -m camfast.train_classifier --synthetic-images 2000 --image-size 64 --seed "$SEED" \
      --threads 1 --epochs 6 --out "$CLASSIFIER"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = eval ]; then
  for b in $BACKBONES; do
    for v in base cam; do
      $PY -m camfast.eval --run "$OUT/$b-$v" --classifier "$CLASSIFIER" --threads 1 --no-progress --n-samples 2 &
    done
    wait
  done
fi

if [ "$STAGE" = all ] || [ "$STAGE" = table ]; then
  $PY -m camfast.eval --table "$OUT"/*/eval.json > "$OUT/table.md"
  cat "$OUT/table.md"
  $PY experiments/make_figures.py "$OUT" docs/img
fi
