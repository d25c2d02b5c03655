"""A CPU run spread over several fresh processes, so its intervals include what differs between processes.

A CPU process keeps the memory placement, the page mapping and the scheduler state it started with; a ratio
settles in a per-process mode that rounds inside one process never sample (``benchmarks/cpu_process_spread.py``
measures how far apart processes land). With ``--processes N`` the sweep runs N times, one fresh process after
the other (never side by side: they would take each other's cores), each a complete run in a scratch store;
then the N runs become one: every timed point keeps all its rounds with the process each ran in, its ratio is
the median of the per-round ratios of all processes, and its 95% interval resamples processes, then rounds
within them (``noise.hierarchical_median_ci``). The first process runs the spec's seed, the others seeds of
their own (other inputs, round orders and placements). The run is created at the start, in status running
with the processes' progress, so the dashboard can follow and cancel it; the merged points and fields are
written into it in one transaction at the end. A process that fails, or a cancel, ends it failed or cancelled
with no points: a partial merge would pool processes that did not all measure every point.

What the merged point takes from the first process: the correctness gate and its errors, compile time,
memory, energy, kernels (one process measures them as well as N). What it pools: rounds, visits, disturbed
visits. Its p20/p50/p80 are quantiles of the per-round medians of all processes (a single process's are
quantiles of its samples); ``extra.processes`` keeps each process's own p50 and ratio.

Nothing here imports torch: the processes run the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from ...analysis import rerun
from ...analysis.noise import (
    Ratio,
    hierarchical_median_ci,
    is_noisy,
    paired_ratio,
    rounds_index_of,
    seed_for,
    shared_rounds,
)
from ...analysis.roofline import roofline_pct
from ...runs import checkpoint, pause
from ...store import Store
from ...store.exchange import export_run
from ..instruments.timing import quantile
from ..machine.disturbance import BUSY_ROUNDS_MAX_DIV
from .rounds import too_wide

TIMED = ("ok", "imprecise", "unstable")


class ProcessFailed(RuntimeError):
    """One of the processes did not complete its run: nothing is merged."""


def process_seed(seed: int, k: int) -> int:
    """Process k's seed: the first process runs the spec's own seed (it is what one process would measure), the
    others their own, so each draws other inputs, round orders and memory placements."""
    return seed if k == 0 else seed_for(seed, "process", k)


def run_processes(
    spec: Any,
    n: int,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    on_progress: Callable[[int, int], None] | None = None,
    poll_s: float = 0.5,
) -> list[dict[str, Any]]:
    """Run ``spec`` (a SweepSpec with processes == n) in ``n`` fresh processes, one after the other, and return
    their runs as exports (``store`` them with ``merge`` and ``Store.fill_run``). ``on_progress(k, done)``
    hears, while process k runs, how many of its points are done. Raises ``ProcessFailed`` when one does not
    complete; a cancel (an exception here) stops the running one too."""
    root = str(Path(__file__).resolve().parents[2])  # the processes import this NormScope, wherever they start
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    docs = []
    spread = float(getattr(spec, "spread_s", 0.0) or 0.0)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="normscope-processes-") as tmp:
        for k in range(n):
            wait = start + k * spread - time.monotonic()  # --spread-s: process k starts k × S seconds in
            if wait > 0:
                say(f"process {k + 1} of {n} starts in {wait:.0f} s (processes {spread:g} s apart)")
                pause(wait)
            say(f"process {k + 1} of {n}")
            spec_path = Path(tmp) / f"spec{k}.json"
            one = {"processes": 1, "spread_s": 0.0, "seed": process_seed(spec.seed, k)}
            spec_path.write_text(json.dumps(spec.to_dict() | one))
            child_db = Path(tmp) / f"p{k}.db"
            cmd = [sys.executable, "-m", "profilers", "run", "--spec", str(spec_path), "--db", str(child_db)]
            proc = None
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)  # progress passes on stderr
                done = -1
                while (rc := proc.poll()) is None:
                    pause(poll_s)
                    now = _points_in(child_db)
                    if on_progress and now is not None and now != done:  # told only when it moved
                        done = now
                        on_progress(k, done)
                checkpoint()  # Ctrl-C reaches the process too: its exit 130 is this run's cancel, not a failure
            except BaseException:  # Ctrl-C or a cancel: the running process goes too
                if proc is not None:
                    proc.terminate()
                    proc.wait()
                raise
            if rc != 0:
                raise ProcessFailed(f"process {k + 1} of {n} ended with exit code {rc}: nothing was stored")
            with Store(child_db) as s:
                docs.append(export_run(s, 1))
    return docs


def progress_recorder(store: Store, run_id: int, n: int, per_process: int) -> Callable[[int, int], None]:
    """``on_progress`` for ``run_processes`` that writes the processes' progress on the run the user follows
    (the dashboard's Run page reads it); a busy store delays the bar, never the run."""

    def record(k: int, done: int) -> None:
        with contextlib.suppress(sqlite3.Error):
            store.update_run(
                run_id, extra={"progress": {"process": k + 1, "of": n, "points_done": k * per_process + done}}
            )

    return record


def _points_in(db: Path) -> int | None:
    """Points a process has stored so far in its scratch store (0 before it made one; None when the store
    could not be read this time, e.g. while the process sets it up)."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)) as con:
            return int(con.execute("SELECT COUNT(*) FROM points").fetchone()[0])
    except sqlite3.Error:
        return None


def merge(
    docs: list[dict[str, Any]],
    spec: dict[str, Any],
    label: str | None,
    calibration: tuple[dict[str, Any] | None, str] | None = None,
) -> tuple[dict, list[dict]]:
    """One run from the exports of the same sweep taken in several processes (see the module's docstring).
    ``calibration`` is the machine's (``rerun.calibration_for`` on the store the run goes to: the processes'
    scratch stores have none) and the sentence on it; the merged candidates' rerun intervals come from it, or
    from the processes themselves when they were started apart (``spread_s``)."""
    if len(docs) < 2:
        raise ValueError("merging needs the runs of at least two processes")
    runs = [d["run"] for d in docs]
    for k, r in enumerate(runs):
        if r["status"] != "completed":
            raise ProcessFailed(f"process {k + 1} of {len(runs)} ended {r['status']}: {r.get('error') or ''}")
    per_point = list(zip(*(d["points"] for d in docs), strict=True))
    merged = [_merge_point(list(ps), spec) for ps in per_point]
    _merge_ratios(merged, [list(ps) for ps in per_point], spec)
    cal, note = calibration or (None, "this machine has no calibration: run `python -m profilers calibrate`")
    _judge_reruns(merged, [list(ps) for ps in per_point], spec, cal)
    first = runs[0]
    each = [
        {
            "copy_gbps": r.get("copy_gbps"),
            "started": r["created_at"],
            "finished": r.get("finished_at"),
            "cpu_pages": ((r.get("machine") or {}).get("cpu_pages") or {}).get("mode"),
        }
        for r in runs
    ]
    copies = [r["copy_gbps"] for r in runs if r.get("copy_gbps") is not None]
    run = {
        **first,
        "uid": uuid.uuid4().hex,
        "label": label if label is not None else spec.get("label"),
        "spec": spec,
        "finished_at": runs[-1].get("finished_at"),
        "copy_gbps": statistics.median(copies) if copies else None,
        "machine": {**first["machine"], "processes": {"count": len(runs), "each": each}},
        "points_planned": len(merged),
    }
    spread = float(spec.get("spread_s") or 0.0)
    if spread > 0:
        note = f"between-run spread from this run's {len(runs)} processes, started {spread:g} s apart"
    run["extra"] = {
        **(first.get("extra") or {}),
        "rerun": {"calibration": cal["source"] if cal and not spread else None, "note": note},
    }
    return run, merged


def _same_point(ps: list[dict[str, Any]]) -> None:
    keys = ("variant", "impl", "dtype", "tokens", "hidden", "mode")
    if any(tuple(p[k] for k in keys) != tuple(ps[0][k] for k in keys) for p in ps):
        raise ValueError("the processes' runs do not hold the same points in the same order")


def _merge_point(ps: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    _same_point(ps)
    n = len(ps)
    untimed = [k for k, p in enumerate(ps) if p["status"] not in TIMED or not (p.get("extra") or {}).get("rounds_us")]
    if untimed:
        # skipped or failed everywhere, or somewhere: the first such process's point stands, and says where
        k = next((k for k in untimed if ps[k]["status"] == "failed"), untimed[0])
        out = dict(ps[k])
        if len(untimed) < n:
            out["error"] = f"{out['status']} in process {k + 1} of {n}, timed in the others: {out.get('error')}"
            if out["status"] == "skipped":
                out["status"] = "failed"  # not a combination that is unsupported: it ran elsewhere
        return out
    out = dict(ps[0])
    extra = dict(out.get("extra") or {})
    rounds = [float(v) for p in ps for v in p["extra"]["rounds_us"]]
    procs = [k for k, p in enumerate(ps) for _ in p["extra"]["rounds_us"]]
    s = sorted(rounds)
    out["p20_us"], out["p50_us"], out["p80_us"] = (quantile(s, q) for q in (0.2, 0.5, 0.8))
    out["mean_us"] = statistics.fmean(rounds)
    out["iqr_us"] = quantile(s, 0.75) - quantile(s, 0.25)
    out["noisy"] = is_noisy(out["iqr_us"], out["p50_us"])
    out["n_samples"] = sum(p.get("n_samples") or 0 for p in ps)
    out["rounds"] = sum(p.get("rounds") or 0 for p in ps)
    out["visits"] = sum(p.get("visits") or 0 for p in ps)
    out["visits_disturbed"] = sum(p.get("visits_disturbed") or 0 for p in ps)
    if out.get("bytes_moved") and out["p50_us"]:
        out["gbps"] = out["bytes_moved"] / out["p50_us"] / 1e3
        out["roofline_pct"] = roofline_pct(out["gbps"], out.get("ceiling_gbps"))
    _, lo, hi = hierarchical_median_ci(rounds, procs, seed_for(spec.get("seed", 0), out["variant"], out["impl"], "p50"))
    extra.update(
        rounds_us=rounds,
        rounds_process=procs,
        rounds_index=[i for p in ps for i in _index(p)],
        p50_ci_us=[lo, hi],
        stats_over=f"per-round medians of {n} processes",
        processes=[{"p50_us": p["p50_us"], "ratio": p.get("ratio"), "status": p["status"]} for p in ps],
    )
    disturbed = sum(((p.get("extra") or {}).get("disturbance") or {}).get("kept_disturbed_visits", 0) for p in ps)
    extra["disturbance"] = {
        **(extra.get("disturbance") or {}),
        "retried_visits": sum(((p.get("extra") or {}).get("disturbance") or {}).get("retried_visits", 0) for p in ps),
        "kept_disturbed_visits": disturbed,
        "processes": [(p.get("extra") or {}).get("disturbance") for p in ps],
    }
    busy = [p["extra"]["busy"] for p in ps if (p.get("extra") or {}).get("busy")]
    extra.pop("busy", None)
    if busy:
        extra["busy"] = busy[0] + (f" (and in {len(busy) - 1} more process(es))" if len(busy) > 1 else "")
    out["extra"] = extra
    out["status"] = "imprecise" if out.get("gate") == "imprecise" else "ok"
    out["error"] = None
    if busy and disturbed * BUSY_ROUNDS_MAX_DIV > len(rounds):  # the rule a single process applies
        out["status"], out["error"] = "unstable", extra["busy"]
    # processes that met the machine in two states: each process's own interval against the gap between them
    own = [rerun.within_sd_log(Ratio(p["p50_us"], *p["extra"]["p50_ci_us"], "rounds"), p.get("rounds") or 2) for p in ps
           if (p.get("extra") or {}).get("p50_ci_us")]  # fmt: skip
    # judged only where every process stored its own interval (older exports did not)
    split = rerun.process_clusters([p["p50_us"] for p in ps], statistics.median(own)) if len(own) == n else None
    if split:
        extra["state_change"] = split
        if out["status"] == "ok":
            out["status"], out["error"] = "unstable", split
    return out


def _index(p: dict[str, Any]) -> list[int]:
    """A process's round numbers for its point (older runs stored none: every round, in order)."""
    n = len(p["extra"]["rounds_us"])
    idx = rounds_index_of(p)
    return idx if idx and len(idx) == n else list(range(n))


def _merge_ratios(merged: list[dict], per_point: list[list[dict]], spec: dict[str, Any]) -> None:
    """Each timed point's ratio to its group's baseline over the rounds of every process, paired by round;
    a point alone in its group is judged by its own median's interval, as in one process."""
    target = float(spec.get("ci_target_pct") or 3.0)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(merged):
        groups.setdefault((p["tokens"], p["hidden"], p["dtype"], p["mode"]), []).append(i)
    for members in groups.values():
        timed = [i for i in members if merged[i]["status"] in TIMED]
        if len(timed) == 1:
            _judge_alone(merged[timed[0]], len(per_point[timed[0]]), target)
        for i in timed:
            p = merged[i]
            name = p.get("ratio_baseline")
            base = next((j for j in members if f"{merged[j]['variant']} {merged[j]['impl']}" == name), None)
            if base is None or merged[base]["status"] not in TIMED:
                # the baseline failed in some process (or each process chose its own): no ratio, rather than
                # one process's ratio beside rounds pooled from all of them
                p["ratio"] = p["ratio_lo"] = p["ratio_hi"] = None
                p["extra"]["ratio_note"] = f"no ratio: its baseline ({name}) was not timed in every process"
                continue
            if base == i:
                p["ratio"] = p["ratio_lo"] = p["ratio_hi"] = 1.0
                continue
            mine, theirs, procs = shared_rounds(p, merged[base]) or ([], [], [])
            seed = seed_for(spec.get("seed", 0), p["tokens"], p["dtype"], p["mode"], p["variant"], p["impl"])
            r = paired_ratio(mine, theirs, seed, procs)
            p["ratio"], p["ratio_lo"], p["ratio_hi"] = r.value, r.lo, r.hi
            if r.half_width_pct > target and p["status"] != "unstable":
                p["status"] = "unstable"
                what = f"its ratio to the baseline over {len(per_point[i])} processes"
                p["error"] = too_wide(what, r.half_width_pct, target)


def _group_of(p: dict[str, Any]) -> tuple:
    return (p["tokens"], p["hidden"], p["dtype"], p["mode"])


def _is_baseline(p: dict[str, Any]) -> bool:
    return p.get("ratio") == p.get("ratio_lo") == p.get("ratio_hi") == 1.0


def _judge_reruns(
    merged: list[dict], per_point: list[list[dict]], spec: dict[str, Any], calibration: dict[str, Any] | None
) -> None:
    """Each merged candidate's rerun interval (the first process's, from a scratch store, is dropped): from the
    processes' own spread when they were started apart in time, else from the machine's calibration (its
    between-run part added to the run's interval, which rests on the processes: P − 1 degrees of freedom). A
    group's baseline beyond the calibrated range (measured as calibrated) flags the group, as in one process."""
    n = len(per_point[0]) if per_point else 0
    spread = float(spec.get("spread_s") or 0.0)
    alike = calibration if calibration and calibration.get("method") == rerun.method_of(spec) else None
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(merged):
        groups.setdefault(_group_of(p), []).append(i)
    for members in groups.values():
        ones = [i for i in members if _is_baseline(merged[i])]
        baselines = [
            (merged[i]["p50_us"], merged[i].get("roofline_level"), rerun.shape_key(*_group_of(merged[i])))
            for i in ones
            if merged[i]["status"] in TIMED
        ]
        changed = rerun.group_state_change(baselines, alike) if not spread else None
        for i in members:
            p = merged[i]
            extra = p.setdefault("extra", {})
            extra.pop("rerun", None)
            probes = [v for q in per_point[i] for v in rerun.memory_copy_gbps(q.get("extra"))]
            if probes:
                extra["memory_state"] = {"copy_gbps": probes}  # every process's: one state only if all agree
            timed = p["status"] in TIMED and p.get("ratio") is not None and p.get("ratio_lo") is not None
            if timed and i not in ones:
                r = Ratio(p["ratio"], p["ratio_lo"], p["ratio_hi"], "paired rounds")
                own = None
                if spread > 0:
                    each = [q for q in per_point[i] if q.get("ratio") and q.get("ratio_lo") and q.get("ratio_hi")]
                    own = rerun.from_processes(
                        [Ratio(q["ratio"], q["ratio_lo"], q["ratio_hi"], "paired rounds") for q in each],
                        [q.get("rounds") or 2 for q in each],
                        spread,
                    )
                rr = rerun.point_rerun(r, p, alike or calibration, p.get("rounds") or 2, within_df=n - 1, own=own)
                extra["rerun"] = rr.to_dict()
            if changed and p["status"] in TIMED:
                extra["state_change"] = changed
                if p["status"] == "ok":
                    p["status"], p["error"] = "unstable", changed


def _judge_alone(p: dict[str, Any], n: int, target: float) -> None:
    lo, hi = p["extra"]["p50_ci_us"]
    half = 100 * (hi - lo) / (2 * p["p50_us"]) if p["p50_us"] else float("inf")
    if half > target and p["status"] != "unstable":
        p["status"] = "unstable"
        p["error"] = too_wide(f"its median over {n} processes", half, target)
