"""`python -m profilers runs|export|import|report`: the stored runs, as files for another machine or a client."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..store import Store
from ..store.exchange import atomic_write, export_run, import_run, load_export_file, output_path
from .base import PROG, add_margin_flag, margin_of

EXPORT_FORMATS = ("json", "csv", "parquet")


def register(sub: Any) -> None:
    ls = sub.add_parser("runs", help="list stored runs")
    ls.add_argument("--db")
    ls.add_argument("--json", action="store_true")

    ex = sub.add_parser("export", help="export a run: portable JSON (for import), or its points as CSV/Parquet")
    ex.add_argument("run_id", type=int)
    ex.add_argument("-o", "--output", required=True)
    ex.add_argument("--format", choices=EXPORT_FORMATS, help="json, csv or parquet (default: from the file name)")
    ex.add_argument("--db")

    rp = sub.add_parser("report", help="write a self-contained HTML report (optionally PDF) for runs")
    rp.add_argument("run_ids", type=int, nargs="+")
    rp.add_argument("-o", "--output", required=True, help="the .html file to write")
    rp.add_argument("--pdf", help="also print it to this PDF file (needs Chromium)")
    rp.add_argument("--title", help="the report's heading")
    add_margin_flag(rp, None, "a kernel's or a step's time")
    rp.add_argument("--db")

    im = sub.add_parser("import", help="import a run exported elsewhere")
    im.add_argument("file")
    im.add_argument("--db")

    ls.set_defaults(handler=cmd_runs)
    ex.set_defaults(handler=cmd_export)
    rp.set_defaults(handler=cmd_report)
    im.set_defaults(handler=cmd_import)


def cmd_runs(a: argparse.Namespace) -> int:
    with Store(a.db) as store:
        runs = store.list_runs()
    if a.json:
        json.dump(runs, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    if not runs:
        print("no runs yet: start one with `python -m profilers run`")
        return 0
    print(f"{'id':>4}  {'kind':<9} {'status':<11} {'created (UTC)':<25} {'device':<7} {'points':>14}  label")
    for r in runs:
        pts = f"{r['points_ok']}/{r['points_done']}/{r['points_planned'] or '?'}"
        device = r["spec"].get("device", "?")
        print(
            f"{r['id']:>4}  {r.get('kind', 'kernels'):<9} {r['status']:<11} {r['created_at']:<25} {device:<7} "
            f"{pts:>14}  {r['label'] or ''}"
        )
    print("points: ok/done/planned")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    out = output_path(a.output, f"run{a.run_id}.json")
    fmt = a.format or {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(out.suffix.lower(), "json")
    with Store(a.db) as store:
        if fmt == "json":
            doc = export_run(store, a.run_id)
            atomic_write(out, lambda p: p.write_text(json.dumps(doc, indent=1), encoding="utf-8"))
            n = len(doc["points"])
        else:
            store.get_run(a.run_id)  # unknown id: one-line error
            df = store.points_table([a.run_id], with_extra=True)
            if fmt == "csv":
                atomic_write(out, lambda p: df.to_csv(p, index=False))
            else:
                atomic_write(out, lambda p: df.to_parquet(p, index=False))
            n = len(df)
    print(f"exported run {a.run_id} ({n} points) as {fmt} to {out}", file=sys.stderr)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from ..report import document

    margin = margin_of(a, 0.0) if a.margin_pct is not None else None  # checked before any file is touched
    out = output_path(a.output, "report.html")
    with Store(a.db) as store:
        for rid in a.run_ids:
            store.get_run(rid)
        document.write(store, a.run_ids, out, title=a.title, margin_pct=margin)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, opens offline)", file=sys.stderr)
    if a.pdf:
        pdf = output_path(a.pdf, "report.pdf")
        why = document.to_pdf(out, pdf)
        if why:
            print(f"{PROG}: PDF not written: {why}", file=sys.stderr)
            return 1
        print(f"wrote {pdf}", file=sys.stderr)
    return 0


def cmd_import(a: argparse.Namespace) -> int:
    doc = load_export_file(a.file)
    with Store(a.db) as store:
        run_id = import_run(store, doc, source=f"import:{Path(a.file).name}")
    print(f"imported {a.file} as run {run_id}", file=sys.stderr)
    print(run_id)
    return 0
