#!/usr/bin/env bash
# The experiment of docs/results.md: baseline vs +CAM for StarGAN, AttGAN and STGAN on the
# built-in synthetic faces, at the CPU budget of the synthetic-<backbone> presets, 3 seeds.
#
#   experiments/run_experiment.sh            # every stage; safe to rerun: finished runs are
#                                            # skipped, interrupted ones continue (--resume)
#   experiments/run_experiment.sh train      # or: classifier, eval, collect, report
#
# Env: EXP (default cpu-budget; runs go to runs/$EXP, results to experiments/results/$EXP),
# SEEDS ("0 1 2"), BACKBONES ("attgan stgan stargan"), VARIANTS ("base cam"; any name in
# variant_flags below), JOBS (2 runs at a time), PY, CAMFAST_CACHE (default runs/cache).
# One torch thread per run and two runs at a time: on a 2-core machine that is both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EXP=${EXP:-cpu-budget}
OUT=runs/$EXP
RESULTS=experiments/results/$EXP
SEEDS=${SEEDS:-0 1 2}
BACKBONES=${BACKBONES:-attgan stgan stargan}
VARIANTS=${VARIANTS:-base cam}
JOBS=${JOBS:-2}
export CAMFAST_CACHE=${CAMFAST_CACHE:-runs/cache}
CLASSIFIER=$OUT/classifier.pt
STAGE=${1:-all}
mkdir -p "$OUT"

variant_flags() {  # the only thing that differs between the arms of one backbone
  case $1 in
    base)   echo "--lambda-cam-g 0 --lambda-cam-d 0" ;;       # the unmodified backbone
    cam)    echo "" ;;                                        # the backbone's CAM defaults
    donly)  echo "--lambda-cam-g 0" ;;                        # D side only
    g10)    echo "--set lambda_cam_g=10" ;;                   # a smaller G weight
    g30)    echo "--set lambda_cam_g=30" ;;
    late)   echo "--set cam_g_start=STEPS_HALF --set cam_g_ramp=STEPS_TENTH" ;;  # G term after D's CAM formed
    *)      echo "unknown variant $1" >&2; return 1 ;;
  esac
}

train_one() {  # backbone variant seed
  local b=$1 v=$2 s=$3 dir="$OUT/$1-$2-s$3" steps half tenth flags
  steps=$($PY -c "from camfast.training import config; print(config.resolve(files=[('p', config.preset_path('synthetic-$b'))])['steps'])")
  half=$((steps / 2)); tenth=$((steps / 10))
  flags=$(variant_flags "$v" | sed -e "s/STEPS_HALF/$half/" -e "s/STEPS_TENTH/$tenth/")
  if [ -f "$dir/checkpoint.pt" ] && grep -q "done:" "$dir.train.log" 2>/dev/null; then
    echo "skip $dir (finished)"; return 0
  fi
  if [ -f "$dir/checkpoint.pt" ]; then
    echo "resume $dir"
    $PY -m camfast.cli.train --resume "$dir" >> "$dir.train.log" 2>&1 || true
  else
    echo "train $dir"
    # shellcheck disable=SC2086
    $PY -m camfast.cli.train --preset "synthetic-$b" $flags --seed "$s" --out "$dir" --overwrite \
        --set eval_classifier="$CLASSIFIER" --set progress=false > "$dir.train.log" 2>&1 || true
  fi
  # Where and when: tables in docs/results.md quote the machine, date and load of each run.
  { echo "finished $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)";
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"; } >> "$dir/host.txt" 2>/dev/null || true
  echo "$(tail -n 1 "$dir.train.log")"
}

if [ "$STAGE" = all ] || [ "$STAGE" = classifier ]; then
  # Trained once on the train split of the same synthetic set, then held fixed for every run
  # (and for every learning curve: that is why it comes first).
  [ -f "$CLASSIFIER" ] || $PY -m camfast.cli.train_classifier --synthetic-images 2000 --image-size 64 --seed 0 \
      --threads 2 --epochs 6 --out "$CLASSIFIER"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = train ]; then
  for s in $SEEDS; do
    for b in $BACKBONES; do
      for v in $VARIANTS; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 5; done
        train_one "$b" "$v" "$s" &
      done
    done
  done
  wait
fi

if [ "$STAGE" = all ] || [ "$STAGE" = eval ]; then
  for d in "$OUT"/*-s[0-9]*/; do
    d=${d%/}
    [ -f "$d/eval.json" ] && [ "$d/eval.json" -nt "$d/checkpoint.pt" ] && continue
    grep -q "done:" "$d.train.log" 2>/dev/null || { echo "not finished: $d"; continue; }
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done
    $PY -m camfast.cli.eval --run "$d" --classifier "$CLASSIFIER" --threads 1 --no-progress --n-samples 2 &
  done
  wait
fi

if [ "$STAGE" = all ] || [ "$STAGE" = collect ]; then
  # Small files only: the evaluation, the resolved config and the curves (never checkpoints).
  for d in "$OUT"/*-s[0-9]*/; do
    d=${d%/}
    [ -f "$d/eval.json" ] || continue
    dst="$RESULTS/$(basename "$d")"
    mkdir -p "$dst"
    cp "$d/eval.json" "$d/config.yaml" "$d/curve.csv" "$d/metrics.csv" "$d/host.txt" "$dst/" 2>/dev/null || true
  done
  echo "collected into $RESULTS"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = report ]; then
  $PY experiments/report.py
fi
