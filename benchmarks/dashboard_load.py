"""Time the Results page on a store of 50,000 points (goal: ≤ 2 s per render).

The store is filled with synthetic points (labelled "synthetic load test", never
shown as measurements elsewhere): 50 runs × 1,000 points. Renders are timed
server-side through Streamlit's AppTest, for the page's default (newest run) and
for ten runs selected at once (10,000 points).

    .venv/bin/python benchmarks/dashboard_load.py
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from profilers.spec import SweepSpec  # noqa: E402
from profilers.store import Store  # noqa: E402
from profilers.store.records import PointResult  # noqa: E402

RUNS, PER_RUN = 50, 1000


def fill(db: Path) -> None:
    rng = random.Random(0)
    variants = ("layernorm", "rmsnorm", "dyt", "groupnorm", "batchnorm")
    impls = ("eager", "native", "compiled", "liger")
    shapes = [(t, h) for t in (512, 2048, 8192, 32768) for h in (768, 4096, 8192)]
    spec = SweepSpec(
        variants=variants,
        impls=impls,
        shapes=tuple(shapes),
        dtypes=("bfloat16",),
        modes=("fwd", "fwdbwd"),
        device="cpu",
        label="synthetic load test",
    )
    with Store(db) as s:
        for r in range(RUNS):
            rid = s.create_run(
                spec, {"cpu_model": "synthetic"}, {"torch": "synthetic"}, PER_RUN, label=f"synthetic load test {r}"
            )
            rows = []
            for seq in range(PER_RUN):
                v, i = variants[seq % 5], impls[(seq // 5) % 4]
                t, h = shapes[(seq // 20) % len(shapes)]
                mode = ("fwd", "fwdbwd")[(seq // 240) % 2]
                p50 = t * h * 4e-6 * rng.uniform(0.5, 3)
                rows.append(
                    PointResult(
                        v,
                        i,
                        "cpu",
                        "bfloat16",
                        t,
                        h,
                        mode,
                        "ok",
                        p20_us=p50 * 0.95,
                        p50_us=p50,
                        p80_us=p50 * 1.05,
                        mean_us=p50,
                        iqr_us=p50 * 0.05,
                        noisy=False,
                        n_samples=50,
                        gbps=rng.uniform(1, 30),
                        roofline_pct=rng.uniform(5, 95),
                        peak_bytes=t * h * 2,
                        timing_method="cpu_blocks",
                    )
                )
            for seq, p in enumerate(rows):
                s.add_point(rid, seq, p)
            s.finish_run(rid, "completed")


def render(select: list[int] | None) -> float:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/results.py")
    t0 = time.perf_counter()
    at.run()
    if select:
        t0 = time.perf_counter()
        at.multiselect[0].set_value(select).run()
    elapsed = time.perf_counter() - t0
    assert not at.exception, [e.value for e in at.exception]
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "results.db"
        t0 = time.perf_counter()
        fill(db)
        print(f"filled {RUNS * PER_RUN:,} points in {time.perf_counter() - t0:.1f} s")
        os.environ["NORMSCOPE_DB"] = str(db)
        with Store(db) as s:
            newest = [r["id"] for r in s.list_runs()][:10]
        render(None)  # warm imports and caches
        default = [render(None) for _ in range(5)]
        ten = [render(newest) for _ in range(3)]
    print(
        f"Results page, default selection (1,000 points): median {statistics.median(default):.2f} s "
        f"(min {min(default):.2f}, max {max(default):.2f}) over {len(default)} renders"
    )
    print(
        f"Results page, 10 runs selected (10,000 points): median {statistics.median(ten):.2f} s "
        f"(min {min(ten):.2f}, max {max(ten):.2f}) over {len(ten)} renders; goal ≤ 2 s"
    )


if __name__ == "__main__":
    main()
