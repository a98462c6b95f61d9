#!/usr/bin/env bash
# Everything a short GPU lease should run, in priority order, each part time-boxed; results under $OUT.
#
#   OUT=gpu_out bash benchmarks/gpu_check.sh          # on a machine with a CUDA PyTorch
#
# 1. the CUDA tests (tests/test_cuda.py); 2. bf16 eager rows at ngf 64 (the target) and the
# loader alone; 3. one compiled row; 4. fp32 at ngf 64, then ngf 48, each until its deadline.
# Missing pure-Python packages can travel as wheels in .whl/ (installed into /tmp/site, nothing fetched).
# EXTRA is appended to every benchmark command (for a dry run on CPU: EXTRA="--cpu --size 64 --ngf 8 ...").
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SHARDS=${SHARDS:-/tmp/bench_shards}
EXTRA=${EXTRA:-}
T0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - T0 )) s: $*"; }

stamp "environment" | tee "$OUT/env.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$PY" -c "import torch, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'cv2', cv2.__version__)"
  nproc; } 2>&1 | tee -a "$OUT/env.txt"

stamp "CUDA tests"
timeout "${T_TESTS:-120}" "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/pytest_cuda.log"

bench() {  # bench NAME TIMEOUT ARGS...
  local name=$1 limit=$2
  shift 2
  stamp "bench $name"
  # shellcheck disable=SC2086
  timeout "$limit" "$PY" benchmarks/bench_train.py --shards "$SHARDS" "$@" $EXTRA \
    2>&1 | grep -v "^checkpoint:" | tee "$OUT/bench_$name.log"
}
bench bf16 "${T_BF16:-130}" --ngf 64 --precision bf16 --compile off --warmup 5 --steps 10 --loader-workers 2 8
bench compile "${T_COMPILE:-170}" --ngf 64 --batch 4 --precision bf16 --compile on --warmup 5 --steps 10 \
  --loader-workers
bench fp32 "${T_FP32:-70}" --ngf 64 --precision fp32 --compile off --warmup 5 --steps 10 --loader-workers \
  --deadline "${DEADLINE_FP32:-45}"
bench ngf48 "${T_NGF48:-80}" --ngf 48 --precision bf16 fp32 --compile off --warmup 5 --steps 10 --loader-workers \
  --deadline "${DEADLINE_NGF48:-50}"
stamp "done"
