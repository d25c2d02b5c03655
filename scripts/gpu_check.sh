#!/usr/bin/env bash
# GPU checks for a CUDA machine: GPU-marked tests and the GPU benchmark. Installs nothing.
# Results go under $OUT (default ./out).
set -uo pipefail
source "$(dirname "$0")/_device_env.sh"
nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,memory.total --format=csv > "$OUT/nvidia_smi.csv" 2>&1
$PY -m profilers env > "$OUT/env.txt" 2>&1; cat "$OUT/env.txt"
$PY -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
$PY benchmarks/gpu_ln_rms.py --out "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}
$PY benchmarks/gpu_sensors.py --out "$OUT/gpu_sensors.json" 2>&1 | tee "$OUT/gpu_sensors.log"
sensors_rc=${PIPESTATUS[0]}
echo "gpu tests rc=$tests_rc, benchmark rc=$bench_rc, sensors rc=$sensors_rc"
exit $(( tests_rc || bench_rc || sensors_rc ))
