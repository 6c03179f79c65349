#!/usr/bin/env bash
# GPU benchmark pass for a bare H100/H200 machine with no internet, started from the repo root:
#
#     bash benchmarks/gpu_check.sh
#
# 1. installs the wheels carried in .whl/ (see benchmarks/README.md) into /tmp/site,
#    only those whose module the machine lacks (so a preinstalled torch/torchvision stays);
# 2. prints nvidia-smi -L and the python / torch versions;
# 3. runs encoder.py for vit_h: fp32 eager (5 runs), bf16+SDPA (20 runs), click_latency.py
#    on cuda, then bf16+SDPA+torch.compile (20 runs, under `timeout 240`); every step is
#    also cut to what is left of a 450 s budget (GPU_CHECK_BUDGET_S), so it ends in < 8 min;
# 4. appends each JSON result line to $OUT/gpu_results.jsonl ($OUT set) or
#    benchmarks/results/gpu_results.jsonl, and prints them all at the end.
#
# Without nvidia-smi (or with GPU_CHECK_DRY_RUN=1) it runs the same steps on the CPU with
# test-tiny and 1 run each, to test the plumbing (a couple of minutes on 2 cores).
# A failed step prints its error and the script goes on; the exit status is the number
# of failed steps (0 = all ran).
set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
# The device machine has no editable install of sam_core: import it from this checkout.
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

if [ -n "${OUT:-}" ]; then
  RESULTS_DIR=$OUT
else
  RESULTS_DIR=$ROOT/benchmarks/results
fi
mkdir -p "$RESULTS_DIR"
RESULTS=$RESULTS_DIR/gpu_results.jsonl
LOGDIR=$(mktemp -d /tmp/gpu_check.XXXXXX)
START=$(date +%s)
# Whole-script budget: every step's timeout is cut to what is left of it, so the script
# ends within ~BUDGET_S + 15 s whatever hangs (the device's limit for this check is 8 min).
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
DEADLINE=$((START + BUDGET_S))
FAILED=0

say() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

# ---------------------------------------------------------------- 1. wheels
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  say "installing carried wheels that this python lacks"
  # wheel file name prefix -> import name; anything unknown is installed when absent from pip.
  declare -A MODULE=( [segment_anything]=segment_anything [pycocotools]=pycocotools
                      [opencv_python_headless]=cv2 [opencv_python]=cv2 [pillow]=PIL [numpy]=numpy
                      [torchvision]=torchvision [torch]=torch [filelock]=filelock [huggingface_hub]=huggingface_hub )
  WANT=()
  for w in .whl/*.whl; do
    dist=$(basename "$w" | cut -d- -f1)
    mod=${MODULE[$dist]:-$dist}
    if "$PY" -c "import $mod" >/dev/null 2>&1; then
      echo "  have $mod: skip $(basename "$w")"
    else
      echo "  need $mod: $(basename "$w")"
      WANT+=("$w")
    fi
  done
  if [ ${#WANT[@]} -gt 0 ]; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
         --target /tmp/site "${WANT[@]}"; then
      export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    else
      echo "ERROR: pip install of the carried wheels failed" >&2
      FAILED=$((FAILED + 1))
    fi
  fi
fi

# ---------------------------------------------------------------- 2. machine
say "machine"
DRY=${GPU_CHECK_DRY_RUN:-0}
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L || true
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
else
  echo "nvidia-smi not found: CPU dry run (test-tiny, 1 run per step)"
  DRY=1
fi
"$PY" - <<'EOF' || { echo "ERROR: python/torch check failed" >&2; FAILED=$((FAILED + 1)); }
import platform, sys
print("python", platform.python_version(), sys.executable)
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
for mod in ("torchvision", "segment_anything", "cv2", "PIL", "numpy", "pycocotools"):
    try:
        m = __import__(mod)
        print(f"{mod} {getattr(m, '__version__', '?')} ({m.__file__})")
    except Exception as exc:  # report every missing one, not just the first
        print(f"MISSING {mod}: {exc!r}")
EOF

if [ "$DRY" = 1 ]; then
  DEV=cpu; MODEL=test-tiny; R_FP32=1; R_FAST=1; R_CLICK=3; R_REF=1; COMPILE_TIMEOUT=150
  EXTRA=(--warmup 1)
else
  DEV=cuda; MODEL=vit_h; R_FP32=5; R_FAST=20; R_CLICK=30; R_REF=3; COMPILE_TIMEOUT=240
  EXTRA=()
fi

# ---------------------------------------------------------------- 3. steps
# run_step NAME TIMEOUT_S CMD...: runs CMD under `timeout`, keeps its log, appends its last
# stdout line to $RESULTS when it is a JSON object, else prints the error.
run_step() {
  local name=$1 limit=$2; shift 2
  local log=$LOGDIR/$name.log
  local left=$((DEADLINE - $(date +%s)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then
    say "$name: SKIPPED, only ${left}s of the ${BUDGET_S}s budget left"
    FAILED=$((FAILED + 1))
    printf '{"step":"%s","error":"skipped: budget spent","device":"%s"}\n' "$name" "$DEV" >>"$RESULTS"
    return
  fi
  say "$name (timeout ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  grep -v '^{' "$log" | tail -n 25
  local last
  last=$(grep '^{' "$log" | tail -n 1)
  if [ -n "$last" ]; then
    printf '%s\n' "$last" >>"$RESULTS"
    echo "--> $name: result appended to $RESULTS"
  fi
  if [ $rc -ne 0 ] || [ -z "$last" ]; then
    FAILED=$((FAILED + 1))
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "ERROR: $name timed out after ${limit}s" >&2; fi
    echo "ERROR: $name failed (exit $rc); last lines of its output:" >&2
    tail -n 15 "$log" >&2
    printf '{"step":"%s","error":"exit %s","device":"%s"}\n' "$name" "$rc" "$DEV" >>"$RESULTS"
  fi
}

ENC=("$PY" benchmarks/encoder.py --model "$MODEL" --device "$DEV" ${EXTRA[@]+"${EXTRA[@]}"})
run_step encoder_fp32_eager 120 "${ENC[@]}" --precision fp32 --sdpa off --compile off --runs "$R_FP32"
run_step encoder_bf16_sdpa 100 "${ENC[@]}" --precision bf16 --sdpa on --compile off --runs "$R_FAST"
# The click before the compile step, so a slow compile cannot cost the click result.
run_step click_latency 120 "$PY" benchmarks/click_latency.py --device "$DEV" --model test-tiny \
  --runs "$R_CLICK" --reference-runs "$R_REF" --profile off
run_step encoder_bf16_sdpa_compile "$COMPILE_TIMEOUT" "${ENC[@]}" --precision bf16 --sdpa on --compile on \
  --runs "$R_FAST"

# ---------------------------------------------------------------- 4. results
say "results ($RESULTS)"
cat "$RESULTS"
say "done: $FAILED failed step(s); logs in $LOGDIR"
exit "$FAILED"
