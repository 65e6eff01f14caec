#!/usr/bin/env bash
# The CUDA checks in one call, for a lent machine with a GPU and PyTorch but no network.
#
#   bash scripts/gpu-check.sh [OUT_DIR]
#
# Expects in the repository root (scripts/gpu-check-prepare.sh makes them on a machine with network):
#   .whl/      wheels of the packages the GPU machine's Python lacks (ladybug, rdflib, pyshacl, neo4j, ccexam, ...)
#   .gpudata/fashion-mnist/   Fashion-MNIST's four IDX .gz files
# Runs, each under its own time limit, writing logs to OUT_DIR (default ./gpu-check-out):
#   1. benchmarks/gpu_check.py: AMP (bf16, fp16 + GradScaler), channels-last, a real out-of-memory retry,
#      torch.compile and the torchrun entry point, each asserting an outcome;
#   2. the fine-tuning and estimator tests, run on the GPU (the engine picks CUDA when it is there; the
#      two-process torchrun test needs two GPUs and is left out);
#   3. benchmarks/finetune_bench.py --device cuda: the engine against a plain PyTorch loop.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-check-out}
mkdir -p "$OUT_DIR"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu-check: installing the wheels failed" >&2; exit 1; }
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 KGRAFT_FASHION_MNIST_DIR="$PWD/.gpudata/fashion-mnist"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv | tee "$OUT_DIR/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT_DIR/gpu.txt"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUT_DIR/NAME.log, remember a failure
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc, $((SECONDS - start)) s" | tee -a "$OUT_DIR/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}
step gpu_check "${GPU_CHECK_LIMIT:-200}" python3 benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json"
step tests "${GPU_TESTS_LIMIT:-170}" python3 -m pytest -q -p no:cacheprovider -x \
    tests/test_finetune.py tests/test_estimators.py -k "not neo4j and not torchrun"
step finetune_bench "${GPU_BENCH_LIMIT:-150}" python3 benchmarks/finetune_bench.py --device cuda --epochs 2
tail -n 12 "$OUT_DIR/gpu_check.log" "$OUT_DIR/finetune_bench.log"
tail -n 5 "$OUT_DIR/tests.log"
cat "$OUT_DIR/summary.txt"
exit $status
