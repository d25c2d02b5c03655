#!/usr/bin/env bash
# Everything a GPU session gathers, in one bounded script: the GPU checks, then the reference runs still
# missing from data/reference/ (bf16 forward+backward with interleaved rounds; LayerNorm and RMSNorm native
# with accurate energy windows at the largest shape; BERT-base shapes in fp16 forward+backward). Installs
# nothing. Each step has its own time limit (TESTS_S, BENCH_S, SENSORS_S, FWDBWD_S, ENERGY_S, BERT_S: about
# 8 minutes in all at the defaults) and the results so far are packed into $OUT/evidence.tgz after every
# step, so a step over its limit loses only itself. BERT_ENERGY=off leaves energy out of the BERT step. SKIP (comma list of check,fwdbwd,energy,bert) leaves
# steps out. Unpack: tar xzf evidence.tgz
set -uo pipefail
source "$(dirname "$0")/_device_env.sh"
FWDBWD_S="${FWDBWD_S:-190}" ENERGY_S="${ENERGY_S:-60}" BERT_S="${BERT_S:-70}" SKIP=",${SKIP:-},"
WORK="$(mktemp -d)"
pack() { tar czf "$OUT/evidence.tgz" -C "$WORK" . ; }
rcs=()
step() { [[ "$SKIP" == *",$1,"* ]] && { rcs+=("$1=skipped"); return 1; }; echo "== $1 ($(date -u +%T))"; }

if step check; then
    OUT="$WORK/check" TESTS_S="${TESTS_S:-85}" BENCH_S="${BENCH_S:-45}" SENSORS_S="${SENSORS_S:-30}" \
        LOOP_S="${LOOP_S:-2}" bash scripts/gpu_check.sh
    rcs+=("check=$?"); pack
fi
if step fwdbwd; then
    OUT="$WORK/ref" DTYPES=bf16 MODES=fwdbwd SHAPES=8192x4096,32768x8192 \
        VARIANTS=layernorm,rmsnorm,dyt,add_rmsnorm IMPLS=eager,native,compiled,liger EXTRA="--energy-repeats 2" \
        NAME=reference-bf16-fwdbwd LIMIT_S="$FWDBWD_S" bash scripts/gpu_reference.sh
    rcs+=("fwdbwd=$?"); pack
fi
if step energy; then
    OUT="$WORK/ref" DTYPES=bf16 MODES=fwd SHAPES=32768x8192 VARIANTS=layernorm,rmsnorm IMPLS=native \
        ENERGY=accurate NAME=reference-bf16-fwd-energy-accurate LIMIT_S="$ENERGY_S" bash scripts/gpu_reference.sh
    rcs+=("energy=$?"); pack
fi
if step bert; then
    OUT="$WORK/ref" DTYPES=fp16 MODES=fwdbwd SHAPES=4096x768,16384x768 VARIANTS=layernorm,rmsnorm,dyt \
        IMPLS=eager,native,compiled,liger ENERGY="${BERT_ENERGY:-quick}" EXTRA="--energy-repeats 2" \
        NAME=reference-fp16-fwdbwd-bert-base \
        LIMIT_S="$BERT_S" bash scripts/gpu_reference.sh
    rcs+=("bert=$?"); pack
fi
echo "== done ($(date -u +%T)): ${rcs[*]} (124: over its time limit)"
