#!/usr/bin/env bash
# One-shot check on a GPU machine (no internet, torch preinstalled, this repository copied there):
#   1. build camfast._C in place with the CUDA kernels (sm_90 unless TORCH_CUDA_ARCH_LIST is set),
#   2. run the GPU test files that exist (tests/test_cuda.py, test_fused.py, test_triton.py),
#   3. run `benchmarks/bench_loss.py --quick` if it exists,
#   4. print a summary table (card, date, versions, pass/fail counts, timings).
# Every step has a time limit drawn from one overall budget (CAMFAST_CHECK_BUDGET seconds,
# default 400), so the whole script ends well under 8 minutes. Logs go to $OUT (if set) or
# to ./gpu_check_logs. Exit status: 0 when the build and every test file passed.
#
#   bash benchmarks/gpu_check.sh            # from the repository root (or anywhere)
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
LOG="${OUT:-$ROOT/gpu_check_logs}"
mkdir -p "$LOG"
BUDGET="${CAMFAST_CHECK_BUDGET:-400}"
T0=$(date +%s)
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python python3 "$ROOT/.venv/bin/python"; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import torch" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
if [ -z "$PY" ]; then echo "gpu_check: no python with torch found (set PYTHON=...)" >&2; exit 2; fi

# Seconds left for a step: min(cap, budget left - reserve for the summary), at least 10.
left() {
  local cap=$1 now rest
  now=$(date +%s)
  rest=$((BUDGET - (now - T0) - 15))
  [ "$rest" -lt "$cap" ] && cap=$rest
  [ "$cap" -lt 10 ] && cap=10
  echo "$cap"
}

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export CAMFAST_QUIET=1
unset TRITON_INTERPRET

# ---------------------------------------------------------------- environment
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
[ -z "$GPU" ] && GPU="(nvidia-smi unavailable)"
nvidia-smi >"$LOG/nvidia-smi.txt" 2>&1
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    CUDA_HOME=/usr/local/cuda
  elif command -v nvcc >/dev/null 2>&1; then
    CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
  fi
fi
if [ -n "${CUDA_HOME:-}" ]; then
  export CUDA_HOME
  NVCC="$("$CUDA_HOME/bin/nvcc" --version 2>/dev/null | grep -o 'release [0-9.]*' | head -1)"
else
  NVCC="none: the CUDA kernels cannot be built"
fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
TORCHV="$("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())' 2>&1 | tail -1)"
echo "gpu_check: $GPU | torch $TORCHV | nvcc $NVCC | CUDA_HOME=${CUDA_HOME:-unset} | archs $TORCH_CUDA_ARCH_LIST"

# ---------------------------------------------------------------- build
rm -f "$ROOT"/camfast/_C*.so
tb=$(date +%s)
timeout "$(left 240)" "$PY" setup.py build_ext --inplace >"$LOG/build.log" 2>&1
BUILD_RC=$?
BUILD_S=$(($(date +%s) - tb))
if [ "$BUILD_RC" -eq 0 ]; then BUILD="ok"; elif [ "$BUILD_RC" -eq 124 ]; then BUILD="TIMEOUT"; else BUILD="FAILED (rc $BUILD_RC)"; fi
grep -E "warning|error" "$LOG/build.log" | grep -v "^ninja" | head -20 >"$LOG/build_warnings.txt"
INFO="$("$PY" -c 'import camfast, json; print(json.dumps(camfast.build_info()))' 2>&1 | tail -1)"
echo "$INFO" >"$LOG/build_info.json"
echo "gpu_check: build $BUILD in ${BUILD_S}s; $INFO"
[ "$BUILD_RC" -ne 0 ] && tail -30 "$LOG/build.log"

# ---------------------------------------------------------------- tests
declare -A CAP=([test_cuda]=70 [test_fused]=70 [test_triton]=90)
ROWS=()
ALL_OK=$([ "$BUILD_RC" -eq 0 ] && echo 1 || echo 0)
for name in test_cuda test_fused test_triton; do
  f="tests/$name.py"
  [ -f "$f" ] || continue
  ts=$(date +%s)
  timeout "$(left "${CAP[$name]}")" "$PY" -m pytest "$f" -q -rfE -p no:cacheprovider \
    --junitxml="$LOG/$name.xml" >"$LOG/$name.log" 2>&1
  rc=$?
  secs=$(($(date +%s) - ts))
  counts="$("$PY" - "$LOG/$name.xml" <<'EOF' 2>/dev/null
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
n, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(f"{n - f - e - k} {f} {e} {k}")
EOF
)"
  [ -z "$counts" ] && counts="? ? ? ?"
  read -r p fl er sk <<<"$counts"
  case "$rc" in
    0) status=ok ;;
    5) status="no tests"; rc=0 ;;  # e.g. the whole module skipped
    124) status=TIMEOUT ;;
    *) status=FAILED ;;
  esac
  [ "$rc" -ne 0 ] && ALL_OK=0
  ROWS+=("$(printf '%-14s %-8s %6s %6s %6s %6s %6ss' "$name" "$status" "$p" "$fl" "$er" "$sk" "$secs")")
  echo "gpu_check: $name $status ($p passed, $fl failed, $er errors, $sk skipped) in ${secs}s"
  [ "$rc" -ne 0 ] && grep -E "^(FAILED|ERROR)" "$LOG/$name.log" | head -15
done

# ---------------------------------------------------------------- benchmark
BENCH="not present"
if [ -f benchmarks/bench_loss.py ]; then
  ts=$(date +%s)
  timeout "$(left 80)" "$PY" benchmarks/bench_loss.py --quick >"$LOG/bench_loss.txt" 2>&1
  rc=$?
  BENCH="$([ "$rc" -eq 0 ] && echo ok || ([ "$rc" -eq 124 ] && echo TIMEOUT || echo "FAILED (rc $rc)")) in $(($(date +%s) - ts))s"
fi

# ---------------------------------------------------------------- summary
{
  echo
  echo "================ camfast gpu_check summary ================"
  echo "date      : $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "card      : $GPU"
  echo "torch     : $TORCHV"
  echo "nvcc      : $NVCC (archs $TORCH_CUDA_ARCH_LIST)"
  echo "build     : $BUILD in ${BUILD_S}s"
  echo
  printf '%-14s %-8s %6s %6s %6s %6s %7s\n' "tests" "status" "pass" "fail" "error" "skip" "time"
  for r in "${ROWS[@]}"; do echo "$r"; done
  echo
  echo "bench_loss --quick: $BENCH"
  [ -f "$LOG/bench_loss.txt" ] && tail -40 "$LOG/bench_loss.txt"
  echo "total     : $(($(date +%s) - T0))s; logs in $LOG"
} | tee "$LOG/summary.txt"

[ "$ALL_OK" -eq 1 ] && exit 0 || exit 1
