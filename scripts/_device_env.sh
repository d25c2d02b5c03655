# Sourced by the GPU scripts: repository root, $OUT, $PY, unbuffered Python. Installs nothing.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
OUT="${OUT:-./out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
