# Sourced by the GPU scripts: repository root, $OUT, $PY, unbuffered Python. Installs nothing.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
OUT="${OUT:-./out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"  # absolute: steps run from other folders
PY="$(command -v "${PYTHON:-python3}")" || { echo "no python: set PYTHON" >&2; exit 1; }
export PYTHONUNBUFFERED=1
