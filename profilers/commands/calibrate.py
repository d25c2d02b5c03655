"""`python -m profilers calibrate`: measure how far reruns move on this machine, once, for every later run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..spec import CalibrationSpec
from ..store import Store
from .base import UsageError


def register(sub: Any) -> None:
    c = sub.add_parser(
        "calibrate",
        help="the dimensioning experiment: a small sweep in K fresh processes spread over minutes; later runs on "
        "this machine state rerun intervals from it",
    )
    c.add_argument("--runs", type=int, help="fresh processes, one run each (default 12, 3-16)")
    c.add_argument("--spread-s", type=float, help="seconds between the runs' starts (default 20)")
    c.add_argument("--rounds", type=int, help="interleaved rounds per run (default 7)")
    c.add_argument("--budget-ms", type=float, help="measurement budget per visit in ms (default 40)")
    c.add_argument("--shapes", help="comma list of TOKENSxHIDDEN (default: a cache-resident and a memory-resident)")
    c.add_argument("--device", default="cpu", help="cpu (the runs are fresh processes)")
    c.add_argument("--spec", help="read the calibration from a JSON spec file (flags override it)")
    c.add_argument("--label", help="a label stored with the run")
    c.add_argument("--db", help="store path (default data/results.db or $NORMSCOPE_DB)")
    c.add_argument("--json", action="store_true", help="print the calibration as JSON on stdout")
    c.set_defaults(handler=cmd_calibrate)


def spec_from_args(a: argparse.Namespace) -> CalibrationSpec:
    from ..spec import parse_shape
    from .base import split_list

    kw: dict[str, Any] = {"device": a.device}
    if a.spec:
        try:
            kw = CalibrationSpec.from_json(Path(a.spec).read_text(encoding="utf-8")).to_dict()
        except OSError as e:
            raise UsageError(f"cannot read spec file {a.spec}: {e.strerror}") from None
    for flag, key in (("runs", "runs"), ("spread_s", "spread_s"), ("rounds", "rounds"), ("budget_ms", "budget_ms")):
        if getattr(a, flag) is not None:
            kw[key] = getattr(a, flag)
    if a.shapes:
        kw["shapes"] = tuple(parse_shape(s) for s in split_list(a.shapes))
    if a.label:
        kw["label"] = a.label
    return CalibrationSpec(**kw)


def cmd_calibrate(a: argparse.Namespace) -> int:
    spec = spec_from_args(a)  # refused before torch loads
    from ..jobs import device_lock
    from ..measure.sweep.calibrate import ARTIFACT, run_calibration

    def say(line: str) -> None:
        print(f"calibrate: {line}", file=sys.stderr, flush=True)

    with Store(a.db) as store, device_lock(store, spec.device):
        outcome = run_calibration(spec, store, say)
        doc = store.artifact(outcome.run_id, ARTIFACT) if outcome.status == "completed" else None
    if doc is None:
        print(f"calibration run {outcome.run_id} {outcome.status}: {outcome.error or 'no result'}", file=sys.stderr)
        return outcome.exit_code or 1
    if a.json:
        json.dump({"run_id": outcome.run_id, **doc}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"calibration run {outcome.run_id}: {spec.runs} runs, {spec.spread_s:g} s apart, {spec.rounds} rounds each")
    from ..report.calibration import level_rows, states_line

    print(states_line(doc))
    rows = level_rows(doc)  # the report's and the Hardware page's table
    for row in rows:
        print("  ".join(f"{k}: {v}" for k, v in row.items()))
    if not doc["levels"]:
        raise UsageError("the calibration measured no ratio: every point failed or was skipped (see `profilers runs`)")
    return 0
