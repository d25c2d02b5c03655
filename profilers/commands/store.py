"""`python -m profilers store migrate|copy|leases`: a store's schema, moving runs between stores, device leases.

A SQLite file is created and upgraded when opened; a shared PostgreSQL database only by `store migrate`, so
that one client's upgrade is a decision, not a side effect.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..store import Store, locate


def register(sub: Any) -> None:
    st = sub.add_parser("store", help="create or upgrade a store, copy runs between stores, list device leases")
    ss = st.add_subparsers(dest="store_command", required=True, parser_class=type(st))

    mg = ss.add_parser("migrate", help="create or upgrade the schema of a store (a file or a postgresql:// URL)")
    mg.add_argument("where", nargs="?", help="the store (default $NORMSCOPE_DB or data/results.db)")
    mg.set_defaults(handler=cmd_migrate)

    cp = ss.add_parser("copy", help="copy every run (points, artifacts, provenance) from one store to another")
    cp.add_argument("src", help="the store to read (a file or a postgresql:// URL)")
    cp.add_argument("dst", help="the store to write (created or upgraded first)")
    cp.set_defaults(handler=cmd_copy)

    ls = ss.add_parser("leases", help="the devices leased by running sweeps, on every machine sharing the store")
    ls.add_argument("--db")
    ls.set_defaults(handler=cmd_leases)


def cmd_migrate(a: argparse.Namespace) -> int:
    where = locate(a.where)
    with Store(where, migrate=True) as store:
        version = store.schema_version
    print(f"store {where.display} is at schema v{version}", file=sys.stderr)
    return 0


def cmd_copy(a: argparse.Namespace) -> int:
    from ..store.copy import copy_runs

    src_loc, dst_loc = locate(a.src), locate(a.dst)
    started = time.monotonic()
    with Store(src_loc, readonly=True) as src, Store(dst_loc, migrate=True) as dst:
        report = copy_runs(src, dst)
    print(f"{report.summary(src_loc.display, dst_loc.display)} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def cmd_leases(a: argparse.Namespace) -> int:
    from ..store import leases

    with Store(a.db, readonly=True) as store:
        rows = leases.holders(store)
    if not rows:
        print("no device is leased: nothing is measuring")
        return 0
    print(f"{'device':<10} {'host':<24} {'pid':>8}  {'expires in':>10}  purpose")
    for r in rows:
        print(
            f"{r['name']:<10} {r['host']:<24} {r['pid'] or '?':>8}  {r['seconds_left']:>8.0f} s  {r['purpose'] or ''}"
        )
    return 0
