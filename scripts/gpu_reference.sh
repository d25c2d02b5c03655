#!/usr/bin/env bash
# A reference run to ship under data/reference/: a real GPU sweep with energy and kernels.
# MODES=fwd (default) or MODES=fwdbwd: each half is 60 points and about five minutes on an H100,
# so each fits one device command. Installs nothing. Output under $OUT:
#   reference-$MODES.json (commit it as data/reference/<gpu>-$MODES.json) and reference-$MODES.log.
set -uo pipefail
source "$(dirname "$0")/_device_env.sh"
MODES="${MODES:-fwd}"
DB="$OUT/reference-$MODES.db"
rm -f "$DB"*
GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
$PY -m profilers run --device cuda \
    --variants layernorm,rmsnorm,dyt,add_rmsnorm,batchnorm \
    --impls eager,native,compiled,liger \
    --shapes 8192x4096,32768x4096,32768x8192 --dtypes bf16 --modes "$MODES" \
    --budget-ms 100 --warmup-ms 25 --energy --energy-repeats 2 --trace \
    --label "reference: ${GPU_NAME:-GPU}, bf16 $MODES" --db "$DB" 2>&1 | tee "$OUT/reference-$MODES.log"
rc=${PIPESTATUS[0]}
$PY -m profilers export 1 -o "$OUT/reference-$MODES.json" --db "$DB"
rm -f "$DB"*
ls -la "$OUT"
exit $rc
