"""`python -m profilers cluster`: the nodes and devices of a Ray cluster, as a sweep with `--ray` would use them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    c = sub.add_parser("cluster", help="list a Ray cluster's nodes and the devices a sweep with --ray would use")
    c.add_argument("address", nargs="?", default="auto", help="auto (default), local, or the head's HOST:PORT")
    c.add_argument("--json", action="store_true", help="print the nodes as JSON on stdout")
    c.set_defaults(handler=cmd_cluster)


def cmd_cluster(a: argparse.Namespace) -> int:
    from ..cluster import describe

    rows = describe(a.address)
    if a.json:
        json.dump({"address": a.address, "nodes": rows}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{'node':<16} {'id':<12} {'alive':<5} {'CPUs':>4} {'GPUs':>4}  GPU kind")
    for r in rows:
        alive = "yes" if r["alive"] else "no"
        print(f"{r['node']:<16} {r['node_id']:<12} {alive:<5} {r['cpus']:>4} {r['gpus']:>4}  {r['gpu_kind'] or '-'}")
    cpu = sum(r["cpu_sweep_devices"] for r in rows)
    gpu = sum(r["cuda_sweep_devices"] for r in rows)
    print(
        f"a CPU sweep with --ray gets {cpu} device(s) (one per node); a CUDA sweep {gpu} (one per GPU)", file=sys.stderr
    )
    return 0
