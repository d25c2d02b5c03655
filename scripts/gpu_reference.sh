#!/usr/bin/env bash
# A reference run to ship under data/reference/: a real GPU sweep, exported. Installs nothing.
# Environment (defaults in brackets): MODES [fwd,fwdbwd], DTYPES [bf16], SHAPES [8192x4096,32768x4096,32768x8192],
# VARIANTS [layernorm,rmsnorm,dyt,add_rmsnorm,batchnorm], IMPLS [eager,native,compiled,liger], ENERGY [quick],
# NAME [reference], LIMIT_S [280], EXTRA [extra flags for `profilers run`, e.g. "--energy-repeats 2"]. Output under $OUT: $NAME.json (commit it as
# data/reference/<gpu>-<date>-<what>.json) and $NAME.log.
set -uo pipefail
source "$(dirname "$0")/_device_env.sh"
MODES="${MODES:-fwd,fwdbwd}" DTYPES="${DTYPES:-bf16}" SHAPES="${SHAPES:-8192x4096,32768x4096,32768x8192}"
VARIANTS="${VARIANTS:-layernorm,rmsnorm,dyt,add_rmsnorm,batchnorm}" IMPLS="${IMPLS:-eager,native,compiled,liger}"
ENERGY="${ENERGY:-quick}" NAME="${NAME:-reference}" LIMIT_S="${LIMIT_S:-280}" EXTRA="${EXTRA:-}"
DB="$OUT/$NAME.db"
rm -f "$DB"*
GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
energy_flag=()
[ "$ENERGY" != "off" ] && energy_flag=(--energy "$ENERGY")
timeout "$LIMIT_S" $PY -m profilers run --device cuda --variants "$VARIANTS" --impls "$IMPLS" --shapes "$SHAPES" \
    --dtypes "$DTYPES" --modes "$MODES" "${energy_flag[@]}" --trace $EXTRA \
    --label "reference: ${GPU_NAME:-GPU}, $DTYPES $MODES" --db "$DB" > "$OUT/$NAME.log" 2>&1
rc=$?
$PY -m profilers export 1 -o "$OUT/$NAME.json" --db "$DB" >> "$OUT/$NAME.log" 2>&1
rm -f "$DB"*
tail -4 "$OUT/$NAME.log"
exit $rc
