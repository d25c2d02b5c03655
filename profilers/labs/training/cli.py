"""`python -m profilers training run|show` (once `train`): the training lab from the command line.

``training run`` trains a grid (a preset, a spec file, flags over either) and commits each finished cell;
a grid that was stopped is resumed (``--resume RUN_ID``, or automatically when the same spec is started
again; ``--fresh`` starts over). ``training show RUN_ID`` prints the tables and the claims check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from ...commands.base import UsageError
from ...spec import SpecError
from .spec import PLACEMENTS, PRESETS, TrainingSpec, estimate_seconds, preset_spec


def register(sub: Any) -> None:
    p = sub.add_parser(
        "training",
        aliases=["train"],  # its name before the labs had one name each
        help="training lab: the stability of small LMs trained by placement × lr × warmup × seed",
    )
    tsub = p.add_subparsers(dest="training_command", required=True, parser_class=type(p))
    r = tsub.add_parser("run", help="train a grid and store each finished cell (resumes a stopped grid)")
    r.add_argument("--preset", choices=sorted(PRESETS), help="quick (2 CPU cores, ≤ 15 min) or standard (GPU)")
    r.add_argument("--spec", help="read the grid from a JSON spec file (flags override it)")
    r.add_argument("--corpus", nargs="+", metavar="FILE", help="train on these text files (default: Shakespeare)")
    r.add_argument("--finetune-doc", help="the document (a file's stem) to fine-tune on, or none to skip")
    r.add_argument("--placements", help=f"comma list: {','.join(PLACEMENTS)}")
    r.add_argument("--norm", help="the grid's norm (layernorm, rmsnorm, dyt, ...)")
    r.add_argument("--lrs", help="comma list of peak learning rates, e.g. 1e-3,1e-2")
    r.add_argument("--warmups", help="comma list of warmup steps, e.g. 0,100")
    r.add_argument("--seeds", help="comma list of seeds, e.g. 0,1")
    r.add_argument("--depths", help="comma list of layer counts, e.g. 6,12")
    r.add_argument("--steps", type=int, help="optimizer steps per training run")
    r.add_argument("--clip", type=float, help="clip the global gradient norm at this value (default: off)")
    r.add_argument("--device", help="cpu, cuda or cuda:N")
    r.add_argument("--threads", type=int, help="CPU threads per process")
    r.add_argument("--workers", type=int, help="CPU processes training runs side by side (quick: 2)")
    r.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="train the cells on a Ray cluster: auto (the cluster this host joined), local (start one here) or "
        "its address; each cell one task on a node's CPUs (--threads each) or one GPU",
    )
    r.add_argument("--label", help="a label stored with the run")
    r.add_argument("--resume", type=int, metavar="RUN_ID", help="continue this stopped grid")
    r.add_argument("--fresh", action="store_true", help="start over even if this grid was stopped before")
    r.add_argument("--db", help="store path (default data/results.db or $NORMSCOPE_DB)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    r.set_defaults(handler=cmd_training_run)
    s = tsub.add_parser("show", help="print a training run's tables and claims check")
    s.add_argument("run_id", type=int)
    s.add_argument("--db")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_training_show)


def _list(text: str, kind: type, flag: str) -> list[Any]:
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts:
        raise UsageError(f"{flag} is empty: give a comma list")
    try:
        return [kind(p) for p in parts]
    except ValueError:
        raise UsageError(f"{flag} has a value that is not a {kind.__name__}: {text!r}") from None


def spec_from_args(a: argparse.Namespace) -> TrainingSpec:
    """The grid: a spec file or a preset (quick by default), with the flags given on top; validated."""
    if a.spec:
        try:
            base = TrainingSpec.from_json(Path(a.spec).read_text(encoding="utf-8")).to_dict()
        except OSError as e:
            raise SpecError(f"cannot read spec file {a.spec}: {e.strerror}") from None
        if a.preset:
            raise UsageError("give --spec or --preset, not both")
    else:
        base = preset_spec(a.preset or "quick").to_dict()
    kw: dict[str, Any] = dict(base)
    if a.placements:
        kw["placements"] = _list(a.placements, str, "--placements")
    for flag, kind in (("lrs", float), ("warmups", int), ("seeds", int), ("depths", int)):
        if getattr(a, flag):
            kw[flag] = _list(getattr(a, flag), kind, f"--{flag}")
    for name in ("norm", "steps", "device", "threads", "workers", "label", "ray"):
        if getattr(a, name) is not None:
            kw[name] = getattr(a, name)
    if a.ray and a.workers is None:
        kw["workers"] = 1  # the cluster trains the cells side by side
    if a.clip is not None:
        kw["clip_norm"] = a.clip
    if a.corpus:
        kw["corpus"] = [str(Path(c).resolve()) for c in a.corpus]
    if a.finetune_doc is not None:
        kw["finetune_document"] = None if a.finetune_doc.lower() == "none" else a.finetune_doc
    return TrainingSpec.from_dict(kw)


def _progress(tty: bool):
    def progress(done: int, total: int, cell: Any, step: int, steps: int, loss: float | None) -> None:
        if step == -1:
            line = f"[{done}/{total}] {cell.key} done"
        elif not tty:
            return
        else:
            shown = "…" if loss is None else f"{loss:.3f}"
            line = f"[{done}/{total}] {cell.key} step {step}/{steps} loss {shown}"
        if tty and step != -1:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(("\r\033[K" if tty else "") + line + "\n")
        sys.stderr.flush()

    return progress


def cmd_training_run(a: argparse.Namespace) -> int:
    if a.resume is not None and a.fresh:
        raise UsageError("give --resume RUN_ID or --fresh, not both")
    from ...store import Store

    resume_spec = None
    if a.resume is not None and not a.spec and not a.preset:
        with Store(a.db) as store:  # the stopped run's own grid, where this command says it trains
            kw = store.get_run(a.resume)["spec"]
            if a.ray is not None:
                kw = {**kw, "ray": a.ray, "workers": 1}
            resume_spec = TrainingSpec.from_dict(kw)
    spec = resume_spec or spec_from_args(a)  # validated before torch is imported

    from ...jobs import device_lock
    from .measure import preflight, resumable, run_grid

    prepared = preflight(spec)  # device and corpus: refused before the store is touched
    # a grid on a cluster trains on its nodes' devices, not on this machine's
    with Store(a.db) as store, contextlib.nullcontext() if spec.ray else device_lock(store, spec.device):
        resume = a.resume
        if resume is None and not a.fresh:
            stopped = resumable(store, spec)
            resume = stopped["id"] if stopped else None
        if resume is not None:
            print(f"resuming the grid of run {resume}", file=sys.stderr)
        else:
            est = estimate_seconds(spec)
            print(f"{len(spec.cells())} cells, about {est / 60:.0f} min (estimate)", file=sys.stderr)
        outcome = run_grid(spec, store, _progress(sys.stderr.isatty()), resume=resume, prepared=prepared)
        print(
            f"run {outcome.run_id} {outcome.status}: {outcome.cells_done} of {outcome.cells_total} cells"
            + (f" ({outcome.carried} carried over from run {resume})" if outcome.carried else "")
            + f"; store {store.where}",
            file=sys.stderr,
        )
        if a.json:
            _print_json(store, outcome.run_id)
    return outcome.exit_code


def _summary(store: Any, run_id: int) -> tuple[dict[str, Any], Any, Any]:
    from . import analysis as analysis
    from .section import load

    run = store.get_run(run_id)
    if run.get("kind") != "training":
        raise UsageError(f"run {run_id} is a {run.get('kind')} run, not a training run")
    cells, corpus = load(store, run_id)
    return run, analysis.summarize(cells, run["spec"].get("quality_margin_pct", 1.0)), corpus


def _print_json(store: Any, run_id: int) -> None:
    from .section import tables

    run, s, corpus = _summary(store, run_id)
    doc = {"run_id": run_id, "status": run["status"], "cells_done": s.cells_done, "corpus": corpus, **tables(s)}
    doc["claims_raw"] = [{"key": c.key, "verdict": c.verdict, **c.details} for c in s.claims]
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


def cmd_training_show(a: argparse.Namespace) -> int:
    from ...store import Store
    from .section import format_text

    with Store(a.db, readonly=True) as store:
        if a.json:
            _print_json(store, a.run_id)
            return 0
        run, s, corpus = _summary(store, a.run_id)
    print(format_text(run, s, corpus))
    return 0
