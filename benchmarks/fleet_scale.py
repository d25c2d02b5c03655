"""A sweep spread over N devices of a Ray cluster: wall time, each device's ratios against the one-device run,
and the scheduling overhead per group (goal: < 2% of a group's time).

On a CPU machine the devices are nodes of a local cluster, each started on CPU sets of their own (node k on
cores k·c … k·c+c-1, inherited by its workers), so their leases differ and they measure side by side; N=1 is
the same sweep on node 0 alone, the reference. On a GPU machine (``--device cuda``) one node holds every GPU and
each GPU is a device. The overhead of a group is its round trip at the driver (dispatch, lease, commit, result)
minus the time its worker spent measuring it.

    .venv/bin/python benchmarks/fleet_scale.py                  # CPU: N = 1, 2 (one core per node here)
    .venv/bin/python benchmarks/fleet_scale.py --device cuda    # every GPU of this machine, against one
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profilers.store import Store  # noqa: E402

TIMED = ("ok", "imprecise", "unstable")


def start_cluster(n: int, device: str, cores_per_node: int):
    """A local cluster: CPU nodes pinned to disjoint cores, or one node with the machine's GPUs."""
    from ray.cluster_utils import Cluster

    small = 200 * 2**20
    everything = os.sched_getaffinity(0)
    if device == "cuda":
        import torch

        gpus = torch.cuda.device_count() if n is None else n
        c = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 2 * gpus, "num_gpus": gpus, "include_dashboard": False},
        )
        return c
    c = Cluster()
    try:
        for k in range(n):
            os.sched_setaffinity(0, set(range(k * cores_per_node, (k + 1) * cores_per_node)))
            args = {"num_cpus": cores_per_node, "object_store_memory": small}
            if k == 0:
                args["include_dashboard"] = False
            c.add_node(**args)
    finally:
        os.sched_setaffinity(0, everything)
    c.wait_for_nodes(timeout=120)
    return c


def sweep(address: str, db: Path, device: str, label: str) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k != "NORMSCOPE_DB"}
    cmd = [sys.executable, "-m", "profilers", "run", "--device", device, "--ray", address, "--db", str(db)]
    start = time.perf_counter()
    p = subprocess.run(
        [*cmd, "--label", label, "--json"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"the {label} sweep failed (exit {p.returncode}): {p.stderr[-1500:]}")
    return wall, json.loads(p.stdout)


def ratios(store: Store, run_ids: list[int]) -> dict[tuple, tuple[float, float, float]]:
    out = {}
    for q in store.points(run_ids):
        if q["status"] in TIMED and q["ratio"] is not None and not q["ratio"] == q["ratio_lo"] == q["ratio_hi"]:
            key = (q["variant"], q["impl"], q["tokens"], q["hidden"], q["dtype"], q["mode"])
            out[key] = (q["ratio"], q["ratio_lo"], q["ratio_hi"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--nodes", type=int, default=2, help="CPU: the most nodes (default 2)")
    a = ap.parse_args()
    import ray  # noqa: F401  (fail early when missing)

    cores = max(1, len(os.sched_getaffinity(0)) // a.nodes)
    counts = [1, a.nodes] if a.device == "cpu" else [1, None]
    tmp = Path(tempfile.mkdtemp(prefix="normscope-fleet-"))
    db = tmp / "fleet.db"
    results = {}
    for n in counts:
        c = start_cluster(n, a.device, cores)
        try:
            wall, doc = sweep(c.address, db, a.device, f"fleet N={n or 'all'}")
        finally:
            c.shutdown()
        results[n] = (wall, doc)
    with Store(db, readonly=True) as store:
        base_ids = [r["run_id"] for r in results[counts[0]][1]["runs"]]
        base = ratios(store, base_ids)
        print(f"machine: {os.uname().nodename}, {len(os.sched_getaffinity(0))} cores; device {a.device}")
        for n in counts:
            wall, doc = results[n]
            runs = doc["runs"]
            record = store.artifact(runs[0]["run_id"], "fleet")
            timing = record["timing"]
            over = [(t["trip_s"] - t["measure_s"]) for t in timing]
            share = [(t["trip_s"] - t["measure_s"]) / t["measure_s"] for t in timing if t["measure_s"] > 0]
            print(
                f"N={len(runs)} device(s): wall {wall:.1f} s for {record['groups']} groups; group measuring median "
                f"{statistics.median(t['measure_s'] for t in timing):.2f} s; scheduling overhead per group median "
                f"{statistics.median(over) * 1000:.0f} ms (max {max(over) * 1000:.0f} ms) = "
                f"{statistics.median(share) * 100:.2f}% of the group's time (max {max(share) * 100:.2f}%)"
            )
            if n == counts[0]:
                continue
            for run in runs:
                mine = ratios(store, [run["run_id"]])
                inside = sum(1 for k, (r, _, _) in mine.items() if k in base and base[k][1] <= r <= base[k][2])
                overlap = sum(
                    1 for k, (_, lo, hi) in mine.items() if k in base and lo <= base[k][2] and base[k][1] <= hi
                )
                shifts = [abs(mine[k][0] / base[k][0] - 1) * 100 for k in mine if k in base]
                node = (run["fleet"] or {}).get("node")
                print(
                    f"  run {run['run_id']} on {node} (slot {(run['fleet'] or {}).get('slot')}): {len(mine)} ratios; "
                    f"{inside} inside the one-device run's 95% interval, {overlap} with overlapping intervals; "
                    f"|shift| median {statistics.median(shifts):.1f}% (max {max(shifts):.1f}%)"
                    if shifts
                    else f"  run {run['run_id']}: no ratio in common with the one-device run"
                )
    print(f"store: {db}")


if __name__ == "__main__":
    main()
