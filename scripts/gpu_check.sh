#!/usr/bin/env bash
# GPU checks for a CUDA machine: GPU-marked tests, the CUDA method benchmark, the sensors benchmark and a real
# model's fine-tuning step (Llama-3.1-8B, 4 layers, bf16, seq 2048: own vs native vs compiled vs Liger vs QuACK).
# Installs nothing. Each step has its own time limit (seconds: TESTS_S, BENCH_S, SENSORS_S, MODEL_S) so a slow or
# broken step cannot take the others' time. Results go under $OUT (default ./out); the tables print last.
set -uo pipefail
source "$(dirname "$0")/_device_env.sh"
TESTS_S="${TESTS_S:-150}" BENCH_S="${BENCH_S:-120}" SENSORS_S="${SENSORS_S:-90}" LOOP_S="${LOOP_S:-5}"
MODEL_S="${MODEL_S:-150}"
{ nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,memory.total,clocks.sm,clocks.mem --format=csv
  $PY -m profilers env; } > "$OUT/env.txt" 2>&1
timeout "$TESTS_S" $PY -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py > "$OUT/gpu_tests.log" 2>&1
tests_rc=$?
(cd benchmarks && timeout "$BENCH_S" $PY gpu_ln_rms.py --out "$OUT/gpu_bench.json") > "$OUT/gpu_bench.log" 2>&1
bench_rc=$?
(cd benchmarks && timeout "$SENSORS_S" $PY gpu_sensors.py --loop-s "$LOOP_S" --out "$OUT/gpu_sensors.json") > "$OUT/gpu_sensors.log" 2>&1
sensors_rc=$?
(cd benchmarks && timeout "$MODEL_S" $PY model_step.py --device cuda --models llama-3.1-8b:4 --seq-len 2048 \
    --dtypes bfloat16 --modes fwdbwd,step --budget-ms 500 --db "$OUT/models.db") > "$OUT/model_step.log" 2>&1
model_rc=$?
head -3 "$OUT/env.txt"
tail -3 "$OUT/gpu_tests.log"
tail -20 "$OUT/gpu_bench.log"
tail -7 "$OUT/gpu_sensors.log"
tail -25 "$OUT/model_step.log"
echo "gpu tests rc=$tests_rc, benchmark rc=$bench_rc, sensors rc=$sensors_rc, model rc=$model_rc (124: over its time limit)"
exit $(( tests_rc || bench_rc || sensors_rc || model_rc ))
