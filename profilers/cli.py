"""`python -m profilers`: the headless CLI.

Bad input of any kind gets one line on stderr naming the problem and the fix,
exit code 2, and an unchanged store.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, NoReturn

from .measure import hugepages
from .report.text import progress_line
from .spec import (
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
from .store import Store, StoreError
from .store.exchange import atomic_write, export_run, import_run, load_export_file, output_path

EXIT_USAGE = 2
EXPORT_FORMATS = ("json", "csv", "parquet")
PROG = "normscope"


# The labs' subcommands live in profilers/commands/: each module has register(subparsers), which adds its
# parsers with set_defaults(handler=...); handlers import torch only when they run.
LAB_COMMANDS: tuple[str, ...] = (
    "profilers.commands.corpus",
    "profilers.commands.numerics",
    "profilers.commands.drift",
    "profilers.commands.train",
    "profilers.commands.blocks",
)


class UsageError(Exception):
    """A flag or argument the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if "expected one argument" in message:
            message += " (a value that starts with '-' is written --flag=VALUE)"
        raise UsageError(f"{message}: see `{self.prog} --help`")


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m profilers", description="NormScope: profile normalization layers.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    r.add_argument("--label", help="a label stored with the run")
    r.add_argument("--db", help="store path (default data/results.db or $NORMSCOPE_DB)")
    r.add_argument("--json", action="store_true", help="print the run as JSON on stdout")

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
    rp.add_argument("--db")

    im = sub.add_parser("import", help="import a run exported elsewhere")
    im.add_argument("file")
    im.add_argument("--db")

    env = sub.add_parser("env", help="describe this machine and what NormScope can measure on it")
    env.add_argument("--json", action="store_true")

    se = sub.add_parser("sensors", help="read GPU and host sensors (live with --watch, Ctrl-C to stop)")
    se.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    se.add_argument("--interval-s", type=float, default=1.0, help="refresh period (default 1 s)")
    se.add_argument("--count", type=int, help="stop after this many readings")
    se.add_argument("--json", action="store_true", help="one JSON object per reading")
    for name, sp in sub.choices.items():
        if name in COMMANDS:
            sp.set_defaults(handler=COMMANDS[name])
    for module in LAB_COMMANDS:  # each adds its subcommands with set_defaults(handler=...)
        importlib.import_module(module).register(sub)
    return p


def rounds_fields(value: str | None) -> dict[str, Any]:
    """The spec fields a --rounds flag sets: a number of rounds, or a preset (rounds and CI target)."""
    if value is None:
        return {}
    if value in ROUND_PRESETS:
        rounds, target = ROUND_PRESETS[value]
        return {"rounds": rounds, "ci_target_pct": target}
    if value.isdigit():
        return {"rounds": int(value)}
    raise UsageError(f"--rounds must be a number or one of {', '.join(ROUND_PRESETS)}, got {value!r}")


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
        kw["variants"] = list(VARIANTS) if a.variants == "all" else _list(a.variants)
    if a.impls:
        kw["impls"] = list(IMPLS) if a.impls == "all" else _list(a.impls)
    shapes: list[tuple[int, int]] = []
    if a.preset:
        if a.preset not in PRESETS:
            raise SpecError(f"unknown preset {a.preset!r}: use one of {', '.join(PRESETS)}")
        shapes += PRESETS[a.preset].shapes()
        kw["preset"] = a.preset
    if a.shapes is not None:
        parts = _list(a.shapes)
        if not parts:
            raise SpecError("--shapes is empty: write TOKENSxHIDDEN, e.g. 4096x768")
        shapes += [parse_shape(s) for s in parts]
    if shapes:
        kw["shapes"] = shapes
    if a.dtypes:
        kw["dtypes"] = _list(a.dtypes)
    if a.modes:
        kw["modes"] = _list(a.modes)
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
    for flag in ("flush", "cuda_launch", "cpu_allocator", "cpu_pages", "cpu_placement", "processes"):
        if getattr(a, flag) is not None:
            kw[flag] = getattr(a, flag)
    return SweepSpec.from_dict(kw)


def cmd_run(a: argparse.Namespace) -> int:
    spec = spec_from_args(a)  # validated before torch is even imported
    if spec.device == "cpu":
        hugepages.request(spec.cpu_pages)  # read by torch at its first allocation: before the import

    from .jobs import device_lock
    from .measure.runner import prepare, run_sweep

    prepare(spec)  # refuse before the store is touched
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

    with Store(a.db) as store, device_lock(store.path, spec.device):
        outcome = run_sweep(spec, store, progress=progress, label=a.label)
        run = store.get_run(outcome.run_id)
    _report_run(a, spec, store.path, run, "", [_point_json(r) for r in outcome.results])
    return 0 if outcome.status == "completed" else 130 if outcome.status == "cancelled" else 1


def _run_in_processes(spec: SweepSpec, a: argparse.Namespace) -> int:
    from .jobs import device_lock
    from .measure import provenance
    from .measure.processes import ProcessFailed, merge, run_processes
    from .measure.runner import Cancelled, sigterm_cancels

    n, per_process = spec.processes, len(spec.points())
    kept_none = "a run over processes keeps no points unless all of them completed"
    with Store(a.db) as store, device_lock(store.path, spec.device):  # the processes use scratch stores
        # the run the user follows (dashboard, Runs): running with the processes' progress, filled at the end
        run_id = store.create_run(
            spec, provenance.machine(spec.device), provenance.versions(), n * per_process, label=a.label
        )

        def progress(k: int, done: int) -> None:
            with contextlib.suppress(sqlite3.Error):  # a busy store delays the bar, never the run
                store.update_run(
                    run_id, extra={"progress": {"process": k + 1, "of": n, "points_done": k * per_process + done}}
                )

        try:
            with sigterm_cancels():
                docs = run_processes(spec, n, on_progress=progress)
                run, points = merge(docs, spec.to_dict(), a.label)
                try:
                    store.fill_run(run_id, run, points)  # one transaction
                except StoreError:  # the row was marked ended meanwhile: keep the results as a run of their own
                    run_id = store.insert_imported(run, points, source="local")
                    print(f"normscope: the run's first record had been closed; stored as run {run_id}", file=sys.stderr)
        except ProcessFailed as e:
            store.finish_run(run_id, "failed", f"{e}; {kept_none}")
            print(f"normscope: error: {e}", file=sys.stderr)
            return 1
        except (Cancelled, KeyboardInterrupt):
            store.finish_run(run_id, "cancelled", f"cancelled while its processes ran: {kept_none}")
            print("normscope: cancelled: the process running stopped too; no points were stored", file=sys.stderr)
            return 130
        except Exception as e:  # merging or storing went wrong: the run says why instead of "interrupted"
            store.finish_run(run_id, "failed", f"{type(e).__name__}: {e}; {kept_none}")
            print(f"normscope: error: {type(e).__name__}: {e}; nothing was stored", file=sys.stderr)
            return 1
        stored = store.get_run(run_id)
        stored_points = store.points(run_id)
        path = store.path
    _report_run(a, spec, path, stored, f" over {n} processes", [_stored_point_json(p) for p in stored_points])
    return 0


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
    from .report import document

    out = output_path(a.output, "report.html")
    with Store(a.db) as store:
        for rid in a.run_ids:
            store.get_run(rid)
        document.write(store, a.run_ids, out, title=a.title)
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


def cmd_env(a: argparse.Namespace) -> int:
    from .measure.environment import describe, format_text

    info = describe()
    if a.json:
        json.dump(info, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        print(format_text(info))
    return 0


def cmd_sensors(a: argparse.Namespace) -> int:
    from .sensors.live import watch

    if a.interval_s <= 0 or a.interval_s > 3600:
        raise UsageError(f"--interval-s must be in (0, 3600], got {a.interval_s}")
    if a.count is not None and a.count < 1:
        raise UsageError(f"--count must be at least 1, got {a.count}")
    count = a.count if a.count is not None else (None if a.watch else 1)
    try:
        watch(a.interval_s, count, a.json)
    except KeyboardInterrupt:
        pass
    return 0


COMMANDS = {
    "run": cmd_run,
    "runs": cmd_runs,
    "export": cmd_export,
    "import": cmd_import,
    "env": cmd_env,
    "sensors": cmd_sensors,
    "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (UsageError, SpecError, StoreError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
