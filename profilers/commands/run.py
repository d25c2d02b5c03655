"""`python -m profilers run`: the kernel sweep, in this process or over fresh processes, stored as it goes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..measure.machine import hugepages
from ..report.text import progress_line
from ..runs import CANCELLED_BY_USER, Outcome, stored_run
from ..spec import (
    CACHE_STATES,
    CPU_ALLOCATORS,
    CPU_PAGES,
    CPU_PLACEMENTS,
    CUDA_LAUNCHES,
    ENERGY_WINDOWS_S,
    FLUSH_METHODS,
    IMPLS,
    MODES,
    PRESETS,
    ROUND_PRESETS,
    VARIANTS,
    SpecError,
    SweepSpec,
    default_spec,
    parse_shape,
)
from ..store import Store, StoreError
from .base import rounds_fields, split_list


def register(sub: Any) -> None:
    r = sub.add_parser("run", help="run a sweep and store it")
    r.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    r.add_argument("--variants", help=f"comma list or 'all': {','.join(VARIANTS)}")
    r.add_argument("--impls", help=f"comma list or 'all': {','.join(IMPLS)}")
    r.add_argument("--shapes", help="comma list of TOKENSxHIDDEN, e.g. 1024x768,4096x4096")
    r.add_argument("--preset", help=f"model preset: {', '.join(PRESETS)}")
    r.add_argument("--dtypes", help="comma list: float32,bfloat16,float16 (or fp32,bf16,fp16)")
    r.add_argument("--modes", help=f"comma list: {','.join(MODES)}")
    r.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    r.add_argument("--budget-ms", type=float, help="measurement budget per point in ms")
    r.add_argument("--warmup-ms", type=float, help="warmup budget per point in ms")
    r.add_argument("--cuda-graph", action="store_true", help="time CUDA-graph replays (launch-free)")
    r.add_argument("--seed", type=int, help="input seed (default 0)")
    r.add_argument("--spec", help="read the sweep from a JSON spec file (flags override it)")
    r.add_argument(
        "--energy",
        nargs="?",
        const="quick",
        choices=sorted(ENERGY_WINDOWS_S),
        help="measure energy per call: quick (1 s windows, default) or accurate (5 s)",
    )
    r.add_argument("--energy-window-s", type=float, help="energy window per repeat in seconds (overrides the preset)")
    r.add_argument("--energy-repeats", type=int, help="energy repeats per point (default 3)")
    r.add_argument("--trace", action="store_true", help="record the kernels each call launches (torch.profiler)")
    r.add_argument("--save-traces", action="store_true", help="also save a Chrome trace per point (Perfetto)")
    r.add_argument("--sample-ms", type=float, help="sensor sampling period in ms (default 100; 0 turns it off)")
    r.add_argument(
        "--rounds",
        help="interleaved rounds per group: a number, or "
        + ", ".join(f"{k} ({n} rounds, ±{t:g}%% target)" for k, (n, t) in ROUND_PRESETS.items()),
    )
    r.add_argument("--ci-target-pct", type=float, help="add rounds until every 95%% interval is this narrow (±%%)")
    r.add_argument("--baseline", help="what ratios are against: 'VARIANT IMPL' (default 'layernorm native')")
    r.add_argument("--cache", choices=CACHE_STATES, help="CUDA: cold (L2 flushed before each call, default) or warm")
    r.add_argument("--flush", choices=FLUSH_METHODS, help="CUDA cold cache: zero (default) or read the flush buffer")
    r.add_argument(
        "--cuda-launch",
        choices=CUDA_LAUNCHES,
        help="CUDA cold cache: queued (default: each call behind a spin kernel, the GPU's time) or direct "
        "(timed as launched, as do_bench: a launch slower than the kernels counts)",
    )
    r.add_argument(
        "--cpu-allocator",
        choices=sorted(CPU_ALLOCATORS),
        help="CPU: reuse (default: freed memory kept, page faults excluded) or system (the allocator untouched)",
    )
    r.add_argument(
        "--cpu-pages",
        choices=sorted(CPU_PAGES),
        help="CPU: huge (default: tensors on 2 MiB pages, less that differs between processes) or base (torch's)",
    )
    r.add_argument(
        "--cpu-placement",
        choices=sorted(CPU_PLACEMENTS),
        help="CPU: round (default: inputs moved to new memory each round) or fixed (allocated once)",
    )
    r.add_argument(
        "--processes",
        type=int,
        help="CPU: run the sweep in N fresh processes, one after the other, and merge them: intervals then "
        "include what differs between processes (about N times the time; default 1)",
    )
    r.add_argument(
        "--spread-s",
        type=float,
        help="CPU, with --processes: start the processes this many seconds apart, so the run samples the "
        "machine's states (its intervals then include what differs between moments, not only processes)",
    )
    r.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="spread the sweep's groups over a Ray cluster: auto (the cluster this host joined), local (start one "
        "here) or its address; one run per device, each group on one device (give a store every node reaches)",
    )
    r.add_argument("--label", help="a label stored with the run")
    r.add_argument("--db", help="store path (default data/results.db or $NORMSCOPE_DB)")
    r.add_argument("--json", action="store_true", help="print the run as JSON on stdout")

    r.set_defaults(handler=cmd_run)


def spec_from_args(a: argparse.Namespace) -> SweepSpec:
    if a.spec:
        try:
            base = SweepSpec.from_json(Path(a.spec).read_text(encoding="utf-8")).to_dict()
        except OSError as e:
            raise SpecError(f"cannot read spec file {a.spec}: {e.strerror}") from None
    else:
        base = default_spec(a.device).to_dict()
    kw: dict[str, Any] = dict(base)
    kw["device"] = a.device if (a.device != "cpu" or not a.spec) else base.get("device", "cpu")
    if a.variants:
        kw["variants"] = list(VARIANTS) if a.variants == "all" else split_list(a.variants)
    if a.impls:
        kw["impls"] = list(IMPLS) if a.impls == "all" else split_list(a.impls)
    shapes: list[tuple[int, int]] = []
    if a.preset:
        if a.preset not in PRESETS:
            raise SpecError(f"unknown preset {a.preset!r}: use one of {', '.join(PRESETS)}")
        shapes += PRESETS[a.preset].shapes()
        kw["preset"] = a.preset
    if a.shapes is not None:
        parts = split_list(a.shapes)
        if not parts:
            raise SpecError("--shapes is empty: write TOKENSxHIDDEN, e.g. 4096x768")
        shapes += [parse_shape(s) for s in parts]
    if shapes:
        kw["shapes"] = shapes
    if a.dtypes:
        kw["dtypes"] = split_list(a.dtypes)
    if a.modes:
        kw["modes"] = split_list(a.modes)
    for name in ("threads", "budget_ms", "warmup_ms", "seed", "label"):  # flags given override the base
        if getattr(a, name) is not None:
            kw[name] = getattr(a, name)
    if a.cuda_graph:
        kw["cuda_graph"] = True
    if a.energy:
        kw["energy"] = True
        kw["energy_window_s"] = ENERGY_WINDOWS_S[a.energy]
    if a.energy_window_s is not None:
        kw["energy"] = True
        kw["energy_window_s"] = a.energy_window_s
    if a.energy_repeats is not None:
        kw["energy_repeats"] = a.energy_repeats
    if a.trace:
        kw["trace"] = True
    if a.save_traces:
        kw["save_traces"] = True
    if a.sample_ms is not None:
        kw["sample_ms"] = a.sample_ms
    kw.update(rounds_fields(a.rounds))
    for flag, key in (("ci_target_pct", "ci_target_pct"), ("baseline", "baseline"), ("cache", "cache_state")):
        if getattr(a, flag) is not None:
            kw[key] = getattr(a, flag)
    for flag in ("flush", "cuda_launch", "cpu_allocator", "cpu_pages", "cpu_placement", "processes", "spread_s", "ray"):
        if getattr(a, flag) is not None:
            kw[flag] = getattr(a, flag)
    return SweepSpec.from_dict(kw)


def cmd_run(a: argparse.Namespace) -> int:
    spec = spec_from_args(a)  # validated before torch is even imported
    if spec.ray:
        return _run_on_cluster(spec, a)
    if spec.device == "cpu":
        hugepages.request(spec.cpu_pages)  # read by torch at its first allocation: before the import

    from ..jobs import device_lock
    from ..measure.sweep.runner import preflight, run_sweep

    preflight(spec)  # refuse before the store is touched
    if spec.processes > 1:
        return _run_in_processes(spec, a)
    tty = sys.stderr.isatty()

    def progress(done, total, p, res):
        if res is None and not tty:
            return
        line = progress_line(done if res else done + 1, total, p, res)
        if tty and res is None:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(("\r\033[K" if tty else "") + line + "\n")
        sys.stderr.flush()

    with Store(a.db) as store, device_lock(store, spec.device):
        outcome = run_sweep(spec, store, progress=progress, label=a.label)
        run = store.get_run(outcome.run_id)
    _report_run(a, spec, store.where, run, "", [_point_json(r) for r in outcome.results])
    return outcome.exit_code


def _run_in_processes(spec: SweepSpec, a: argparse.Namespace) -> int:
    from ..analysis import rerun
    from ..jobs import device_lock
    from ..measure.machine import provenance
    from ..measure.sweep.processes import ProcessFailed, merge, progress_recorder, run_processes

    n, per_process = spec.processes, len(spec.points())
    kept_none = "a run over processes keeps no points unless all of them completed"
    with Store(a.db) as store, device_lock(store, spec.device):  # the processes use scratch stores
        # the run the user follows (dashboard, Runs): running with the processes' progress, filled at the end
        machine, versions = provenance.machine(spec.device), provenance.versions()
        run_id = store.create_run(spec, machine, versions, n * per_process, label=a.label)
        calibration = rerun.calibration_for(store, machine, versions)  # the processes' scratch stores have none

        progress = progress_recorder(store, run_id, n, per_process)

        cancelled = f"{CANCELLED_BY_USER} while its processes ran: {kept_none}"
        with stored_run(store, outcome := Outcome(run_id), cancelled=cancelled, failed=kept_none, reraise=False):
            try:
                docs = run_processes(spec, n, on_progress=progress)
                run, points = merge(docs, spec.to_dict(), a.label, calibration)
            except ProcessFailed as e:  # a process failed or did not complete: its reason is the run's
                outcome.status, outcome.error = "failed", f"{e}; {kept_none}"
            else:
                try:
                    store.fill_run(run_id, run, points)  # one transaction, its ending included
                except StoreError:  # the row was marked ended meanwhile: keep the results as a run of their own
                    run_id = outcome.run_id = store.insert_imported(run, points, source="local")
                    print(f"normscope: the run's first record had been closed; stored as run {run_id}", file=sys.stderr)
                outcome.closed = True
        if outcome.status == "cancelled":
            print("normscope: cancelled: the process running stopped too; no points were stored", file=sys.stderr)
        elif outcome.status == "failed":
            print(f"normscope: error: {outcome.error}", file=sys.stderr)
        if outcome.status != "completed":
            return outcome.exit_code
        stored = store.get_run(run_id)
        stored_points = store.points(run_id)
        path = store.where
    _report_run(a, spec, path, stored, f" over {n} processes", [_stored_point_json(p) for p in stored_points])
    return 0


def _run_on_cluster(spec: SweepSpec, a: argparse.Namespace) -> int:
    """The sweep over a Ray cluster: one run per device (``measure/sweep/fleet.py``); a line per run at the end."""
    from ..measure.sweep.fleet import run_fleet

    with Store(a.db) as store:  # refuse a store that cannot be written before the cluster is joined
        where = store.where
        if not store.can_write:
            raise StoreError(f"{where}: this role may only read the store: a sweep needs a role that may write")
    outcome = run_fleet(spec, a.db, label=a.label)
    with Store(a.db, readonly=True) as store:
        runs = [store.get_run(r) for r in outcome.run_ids]
    for run in runs:
        node = ((run.get("extra") or {}).get("fleet") or {}).get("node", "?")
        print(
            f"run {run['id']} {run['status']} on {node} ({run['machine'].get('hostname') or run['host']}): "
            f"{run['points_ok']} ok, {run['points_flagged']} imprecise or unstable, {run['points_failed']} failed, "
            f"{run['points_skipped']} skipped" + (f"; {run['error']}" if run.get("error") else ""),
            file=sys.stderr,
        )
    for r in outcome.retried:
        print(f"group {r['group'] + 1} retried on another device: {r['reason']}", file=sys.stderr)
    for r in outcome.lost:
        print(f"group {r['group'] + 1} {r['reason']}", file=sys.stderr)
    print(
        f"cluster sweep {outcome.status} (fleet {outcome.uid[:8]}, {len(runs)} device run(s)); store {where}"
        + (f": {outcome.error}" if outcome.error else ""),
        file=sys.stderr,
    )
    if a.json:
        doc = {
            "fleet": outcome.uid,
            "status": outcome.status,
            "error": outcome.error,
            "db": str(where),
            "spec": spec.to_dict(),
            "runs": [
                {"run_id": r["id"], "status": r["status"], "fleet": (r.get("extra") or {}).get("fleet")} for r in runs
            ],
            "retried": outcome.retried,
            "lost": outcome.lost,
        }
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    return outcome.exit_code


def _report_run(
    a: argparse.Namespace, spec: SweepSpec, path: Any, run: dict[str, Any], how: str, points: list[dict[str, Any]]
) -> None:
    """The run's one-line summary on stderr, and with --json the run on stdout."""
    print(
        f"run {run['id']} {run['status']}{how}: {run['points_ok']} ok, {run['points_flagged']} imprecise or "
        f"unstable, {run['points_failed']} failed, {run['points_skipped']} skipped; copy bandwidth "
        + (f"{run['copy_gbps']:.1f} GB/s" if run["copy_gbps"] is not None else "N/A")
        + (" (median of the processes')" if how else "")
        + f"; store {path}",
        file=sys.stderr,
    )
    note = ((run.get("extra") or {}).get("rerun") or {}).get("note")
    if note:
        print(f"rerun intervals: {note}", file=sys.stderr)
    if a.json:
        doc = {
            "run_id": run["id"],
            "status": run["status"],
            "db": str(path),
            "copy_gbps": run["copy_gbps"],
            "spec": spec.to_dict(),
            "energy_note": None if spec.energy else "not requested: run with --energy",
            "idle_power_w": run["idle_power_w"],
            "sensors": run["sensors"],
            "points": points,
        }
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")


def _stored_point_json(p: dict[str, Any]) -> dict[str, Any]:
    """A stored point in the shape ``_point_json`` gives a fresh one."""
    d = {k: v for k, v in p.items() if k not in ("id", "run_id", "extra")}
    extra = dict(p.get("extra") or {})
    d["kernels"] = extra.pop("kernels", None)
    d["sensors"] = extra.pop("sensors", None)
    d["extra"] = extra
    return d


def _point_json(r) -> dict[str, Any]:
    d = r.to_dict()
    extra = d.pop("extra")
    d["kernels"] = extra.get("kernels")
    d["sensors"] = extra.get("sensors")
    d["extra"] = {k: v for k, v in extra.items() if k not in ("kernels", "sensors")}
    return d
