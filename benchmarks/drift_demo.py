"""The drift monitor on real text: false alarms on held-out Shakespeare, detection on shifted sets.

A byte-level language model is trained by the training lab (``profilers/labs/training/measure.py``) on
three quarters of the Shakespeare plays (``make corpus`` fetches them); the other plays give the
reference profile, the calibration windows (thresholds at the stated false-alarm rate) and the test
windows the false-alarm rate is measured on. Shifted sets: this project's Markdown documentation
(modern English prose), its Python source code, and the test plays with characters replaced at
random with probability p.

    .venv/bin/python benchmarks/drift_demo.py [--steps 800] [--alpha 0.05] [--seed 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profilers.labs.drift.analysis import calibration_spread  # noqa: E402
from profilers.labs.drift.cli import demo_table  # noqa: E402
from profilers.labs.drift.spec import DriftSpec  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=DriftSpec().steps)
    ap.add_argument("--alpha", type=float, default=DriftSpec().alpha)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the whole result to this JSON file")
    a = ap.parse_args()

    from profilers import corpus
    from profilers.labs.drift import measure_demo as driftdemo

    try:
        corpus.shakespeare()
    except corpus.CorpusError as e:
        print(f"drift_demo: {e}", file=sys.stderr)
        return 2
    spec = DriftSpec(action="demo", steps=a.steps, alpha=a.alpha, seed=a.seed)
    doc = driftdemo.run_demo(spec, say=lambda m: print(m, file=sys.stderr))
    print(demo_table(doc))
    held = next(s for s in doc["sets"] if s["set"] == "heldout")
    k = doc["profile"]["calibration"]["windows"]
    mean, sd = calibration_spread(k, doc["alpha"])
    print()
    print(
        f"false-alarm rate on held-out in-distribution Shakespeare: {held['alarm_rate']:.1%} of {held['windows']} "
        f"windows; calibrated to α = {doc['alpha']:.0%} on {k} other windows (one calibration's rate: "
        f"{mean:.1%} ± {sd:.1%})"
    )
    print("detection rate by corruption level: " + ", ".join(
        f"p={s['level']:g}: {s['alarm_rate']:.0%}" for s in doc["sets"] if s["set"] == "corrupt"
    ))  # fmt: skip
    layers = [lay["name"] for lay in doc["profile"]["layers"]]
    print()
    print("mean layer score − layer threshold (positive: beyond the threshold on average)")
    print(f"{'set':<16}" + "".join(f"{n:>16}" for n in layers))
    for s in doc["sets"]:
        name = f"corrupt p={s['level']:g}" if s["level"] is not None else s["set"]
        print(f"{name:<16}" + "".join(f"{s['layers'][n]['mean_score'] - s['layers'][n]['threshold']:>16.2f}"
                                      for n in layers))  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
