"""Run the training-stability lab's quick grid on this machine and print what it found.

Prints the tables (divergence and failure rates by placement and warmup with Wilson intervals, final loss
with Student-t CIs over seeds, the init gradient-norm depth ratios, wall time) and, per claim, whether it
reproduced at this scale. The grid is stored in a temporary store unless ``--db`` names one to keep (the
Training page can then show it). Needs the Shakespeare corpus (``make corpus``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profilers.labs.training import analysis as analysis
from profilers.labs.training import measure as T
from profilers.labs.training.section import format_text, load
from profilers.labs.training.spec import estimate_seconds, preset_spec
from profilers.spec import SpecError
from profilers.store import Store

LIMIT_S = 15 * 60


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", help="keep the grid in this store (default: a temporary one)")
    a = p.parse_args()
    spec = preset_spec("quick", label="benchmarks/training_quick.py")
    try:
        prepared = T.preflight(spec)
    except SpecError as e:
        print(f"training_quick: {e}", file=sys.stderr)
        return 2
    print(f"quick grid: {len(spec.cells())} cells, estimate {estimate_seconds(spec) / 60:.1f} min", flush=True)

    def progress(done, total, cell, step, steps, loss):
        if step == -1:
            print(f"  [{done}/{total}] {cell.key}  ({time.perf_counter() - t0:,.0f} s)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(a.db) if a.db else Path(tmp) / "quick.db"
        with Store(db) as store:
            t0 = time.perf_counter()
            out = T.run_grid(spec, store, progress, prepared=prepared)
            wall = time.perf_counter() - t0
            run = store.get_run(out.run_id)
            cells, corpus = load(store, out.run_id)
        s = analysis.summarize(cells, spec.quality_margin_pct)
        print()
        print(format_text(run, s, corpus))
        print()
        print(f"wall time of the whole grid: {wall:,.0f} s ({wall / 60:.1f} min; limit {LIMIT_S // 60} min)")
        for c in s.claims:
            print(f"- {c.claim}: {analysis.VERDICTS[c.verdict]}")
        if a.db:
            print(f"stored as run {out.run_id} in {db}")
    return 0 if out.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
