#!/usr/bin/env bash
# Everything a GPU session gathers, in one bounded script: the GPU checks, a reference sweep with the current
# method (fp16 by default; the bf16 files under data/reference/ exist) and the norm's share of a Llama-3-8B
# block and training step. Installs nothing. Each step has its own time limit (TESTS_S, BENCH_S, SENSORS_S,
# REF_S, BLOCKS_S: about 9 minutes in all at the defaults) and the results so far are packed into
# $OUT/evidence.tgz after every step, so a step over its limit loses only itself. Unpack: tar xzf evidence.tgz
set -uo pipefail
source "$(dirname "$0")/_device_env.sh"
REF_S="${REF_S:-170}" BLOCKS_S="${BLOCKS_S:-120}"
WORK="$(mktemp -d)"
pack() { tar czf "$OUT/evidence.tgz" -C "$WORK" . ; }

OUT="$WORK/check" TESTS_S="${TESTS_S:-110}" BENCH_S="${BENCH_S:-60}" SENSORS_S="${SENSORS_S:-75}" LOOP_S="${LOOP_S:-3}" \
    bash scripts/gpu_check.sh
check_rc=$?
pack

OUT="$WORK/ref" DTYPES="${REF_DTYPES:-fp16}" MODES="${REF_MODES:-fwd}" SHAPES="${REF_SHAPES:-8192x4096,32768x8192}" \
    VARIANTS="${REF_VARIANTS:-layernorm,rmsnorm,dyt,add_rmsnorm}" IMPLS="${REF_IMPLS:-eager,native,compiled,liger}" \
    NAME="reference-${REF_DTYPES:-fp16}-${REF_MODES:-fwd}" LIMIT_S="$REF_S" bash scripts/gpu_reference.sh
ref_rc=$?
pack

mkdir -p "$WORK/blocks"
(cd benchmarks && timeout "$BLOCKS_S" $PY block_share.py --presets llama-3-8b --tokens 8192 --dtypes bfloat16 \
    --impls native --budget-ms 100 --device cuda --db "$WORK/blocks/blocks.db") > "$WORK/blocks/block_share.log" 2>&1
blocks_rc=$?
tail -22 "$WORK/blocks/block_share.log"
pack

echo "checks rc=$check_rc, reference rc=$ref_rc, blocks rc=$blocks_rc (124: over its time limit)"
