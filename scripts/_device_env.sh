# Sourced by the GPU scripts: repository root, $OUT, $PY, unbuffered Python. Installs nothing from a network:
# what the device machine lacks (SQLAlchemy, the store's SQL layer; Liger-Kernel) comes as wheels carried in .whl/
# (`make device-wheels` here), unpacked into a scratch folder put on PYTHONPATH.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
OUT="${OUT:-./out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"  # absolute: steps run from other folders
PY="$(command -v "${PYTHON:-python3}")" || { echo "no python: set PYTHON" >&2; exit 1; }
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then  # carried wheels: SQLAlchemy, and Liger-Kernel for the kernel and model runs
    SITE="${TMPDIR:-/tmp}/normscope-site"
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" .whl/*.whl || exit 1
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import sqlalchemy" 2>/dev/null || { echo "SQLAlchemy is missing: run \`make device-wheels\` and carry .whl" >&2; exit 1; }
