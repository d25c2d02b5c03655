"""`python -m profilers numerics run|show`: error and NaN/Inf risk by norm × dtype × eps, and the recommended eps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ...catalog import label
from ...commands.base import UsageError, split_list
from ...spec import SpecError
from ...store import Store
from ..drift.spec import parse_args
from . import analysis as analysis
from .spec import (
    DEMO_MODEL,
    DTYPE_SHORT,
    INPUTS,
    NUMERICS_DTYPES,
    NUMERICS_IMPLS,
    NUMERICS_VARIANTS,
    NumericsSpec,
    parse_eps,
)

PROG = "normscope"


def register(sub: Any) -> None:
    p = sub.add_parser("numerics", help="numerics lab: error and NaN/Inf risk by norm × dtype × eps; recommended eps")
    actions = p.add_subparsers(dest="numerics_action", required=True, parser_class=type(p))
    r = actions.add_parser("run", help="measure every cell against float64 and store the run")
    r.add_argument("--variants", help=f"comma list: {','.join(NUMERICS_VARIANTS)}")
    r.add_argument("--dtypes", help=f"comma list: {','.join(NUMERICS_DTYPES)} (or fp32,bf16,fp16,e4m3,e5m2)")
    r.add_argument("--eps", help="comma list of eps values, or 'decades' (1e-12 … 1e-2, the default)")
    r.add_argument("--inputs", help=f"input families, comma list: {','.join(INPUTS)}")
    r.add_argument("--impls", help=f"comma list: {','.join(NUMERICS_IMPLS)}")
    r.add_argument("--rows", type=int, help="rows per input family (default 64)")
    r.add_argument("--hidden", type=int, help="row width (default 256)")
    r.add_argument("--groups", type=int, help="GroupNorm groups (default 8)")
    r.add_argument(
        "--recorded",
        help="activations from a real model: 'demo' (the default: the drift demo's language model on Shakespeare), "
        "'none', or package.module:function returning (model, data iterator); never a pickle",
    )
    r.add_argument("--arg", action="append", metavar="KEY=VALUE", help="keyword argument for the model function")
    r.add_argument("--recorded-rows", type=int, help="rows of recorded activations (default 256)")
    r.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    r.add_argument("--seed", type=int)
    r.add_argument("--label")
    r.add_argument("--spec", help="read the run from a JSON spec file (flags override it)")
    r.add_argument("--db", help="store path (default data/results.db or $NORMSCOPE_DB)")
    r.add_argument("--json", action="store_true", help="print the recommendation as JSON on stdout")
    r.set_defaults(handler=cmd_run)
    s = actions.add_parser("show", help="print a stored numerics run's recommendation and the known fp16 case")
    s.add_argument("run_id", type=int)
    s.add_argument("--db")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_show)


def spec_from_args(a: argparse.Namespace) -> NumericsSpec:
    if a.spec:
        try:
            kw: dict[str, Any] = NumericsSpec.from_json(Path(a.spec).read_text(encoding="utf-8")).to_dict()
        except OSError as e:
            raise SpecError(f"cannot read spec file {a.spec}: {e.strerror}") from None
    else:
        kw = NumericsSpec(recorded=DEMO_MODEL).to_dict()
    for flag, key in (("variants", "variants"), ("dtypes", "dtypes"), ("inputs", "inputs"), ("impls", "impls")):
        value = getattr(a, flag)
        if value is not None:
            kw[key] = split_list(value)
    if a.eps is not None:
        kw["eps"] = list(parse_eps(a.eps))
    for name in ("rows", "hidden", "groups", "recorded_rows", "device", "seed", "label"):
        if getattr(a, name) is not None:
            kw[name] = getattr(a, name)
    if a.recorded is not None:
        kw["recorded"] = None if a.recorded == "none" else a.recorded
    if a.arg:
        kw["recorded_args"] = parse_args(a.arg)
    return NumericsSpec.from_dict(kw)


def _check_recorded_source(spec: NumericsSpec) -> None:
    """The demo model trains on the Shakespeare corpus: refuse before anything runs when it is missing."""
    if spec.recorded == DEMO_MODEL:
        from ... import corpus

        try:
            corpus.shakespeare()
        except corpus.CorpusError as e:
            raise UsageError(f"{e}; or run without recorded activations: --recorded none") from None


def cmd_run(a: argparse.Namespace) -> int:
    spec = spec_from_args(a)  # validated before torch is imported
    _check_recorded_source(spec)
    from . import measure as numerics

    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            sys.stderr.write(f"\r\033[K{done}/{total} cells")
            sys.stderr.flush()

    prepared = numerics.preflight(spec)  # a bad model path is refused here, before anything is printed or stored
    print(
        f"numerics: {spec.cells()} cells ({len(spec.variants)} variants × {len(spec.dtypes)} dtypes × eps grid × "
        f"{len(spec.families)} input families × {len(spec.impls)} implementations)",
        file=sys.stderr,
    )
    with Store(a.db) as store:
        outcome = numerics.run(spec, store, progress=progress, prepared=prepared)
        if tty:
            sys.stderr.write("\n")
        run = store.get_run(outcome.run_id)
        doc = _summary(store, run)
    print(
        f"run {outcome.run_id} {outcome.status}"
        + (f": {outcome.error}" if outcome.error else "")
        + f"; store {store.where}",
        file=sys.stderr,
    )
    _print(doc, a.json)
    return outcome.exit_code


def cmd_show(a: argparse.Namespace) -> int:
    with Store(a.db) as store:
        run = store.get_run(a.run_id)
        if run.get("kind") != "numerics":
            raise UsageError(f"run {a.run_id} is a {run.get('kind')} run: give a numerics run (see `profilers runs`)")
        doc = _summary(store, run)
    _print(doc, a.json)
    return 0


def _summary(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    cells = store.artifact(run["id"], "numerics/cells") or []
    dtypes = {d["dtype"]: d for d in store.artifact(run["id"], "numerics/dtypes") or []}
    groups = run["spec"].get("groups", 8)
    recs = analysis.recommend(cells, dtypes, groups)
    return {
        "run_id": run["id"],
        "status": run["status"],
        "cells": len(cells),
        "recommendations": [r.to_dict() for r in recs],
        "table": analysis.recommendation_table(recs),
        "known_case": analysis.known_case(cells, dtypes),
    }


def _print(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    if not doc["cells"]:
        print(f"run {doc['run_id']} ({doc['status']}) holds no measured cells")
        return
    print(
        f"Recommended minimum eps, run {doc['run_id']} (the smallest eps from which every larger eps measured is "
        "safe; N/A: not measurable, with the reason in `--json`)"
    )
    print(f"{'variant':<11} {'dtype':<9} {'eager (in dtype)':>17} {'upcast (fp32 stats)':>20} {'native (torch)':>15}")
    for row in doc["table"]:
        eager, upcast, native = (analysis.recommendation_text(row, i) for i in ("eager", "upcast", "native"))
        print(
            f"{label(row['variant']):<11} {DTYPE_SHORT.get(row['dtype'], row['dtype']):<9} "
            f"{eager:>17} {upcast:>20} {native:>15}"
        )
    for case in doc["known_case"]:
        what = (
            f"{case['nan_count']} NaN, {case['inf_count']} Inf of {case['numel']}" if case["status"] == "ok" else "N/A"
        )
        print(
            f"pytorch#41527 (LayerNorm, fp16, eps 1e-12, all-zero rows), {case['impl']}: {what}"
            + (f" — {case['cause']}" if case["cause"] else "")
        )
    unfixed = [r for r in doc["recommendations"] if r["not_fixed_by_eps"]]
    for r in unfixed[:8]:
        print(
            f"not fixed by eps: {label(r['variant'])} {DTYPE_SHORT.get(r['dtype'], r['dtype'])} {r['impl']}: "
            + "; ".join(r["not_fixed_by_eps"][:2])
        )
