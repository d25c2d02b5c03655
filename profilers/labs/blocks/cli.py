"""`python -m profilers blocks run|show`: the norm choice inside a transformer block and a training step."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ...catalog import PLACEMENTS
from ...commands.base import UsageError, rounds_fields, split_list
from ...measure.machine import hugepages
from ...report.text import block_progress_line
from ...spec import PRESETS, SpecError
from ...store import Store
from .spec import BLOCK_IMPLS, BLOCK_NORMS, BlockSweepSpec, default_block_spec


def register(sub: Any) -> None:
    p = sub.add_parser("blocks", help="the norm inside a real transformer block and a training step")
    bsub = p.add_subparsers(dest="blocks_command", required=True, parser_class=type(p))
    r = bsub.add_parser("run", help="time blocks (and training steps) per norm, placement and implementation")
    r.add_argument("--preset", help=f"model preset: {', '.join(k for k, v in PRESETS.items() if v.family)}")
    r.add_argument("--norms", help=f"comma list: {','.join(BLOCK_NORMS)}")
    r.add_argument("--placements", help=f"comma list: {','.join(PLACEMENTS)}")
    r.add_argument("--impls", help=f"comma list: {','.join(BLOCK_IMPLS)} (compiled: the whole block)")
    r.add_argument("--tokens", help="comma list of token counts per step (batch × sequence length)")
    r.add_argument("--seq-len", type=int, help="tokens per sequence (default: the preset's)")
    r.add_argument("--dtypes", help="comma list: float32,bfloat16,float16")
    r.add_argument("--modes", help="comma list: fwd,fwdbwd,step (step: one AdamW step of a small stack)")
    r.add_argument("--step-depth", type=int, help="blocks in the stack whose training step is timed")
    r.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    r.add_argument("--threads", type=int, help="CPU threads (default: all usable)")
    r.add_argument("--budget-ms", type=float, help="measurement budget per point in ms")
    r.add_argument("--warmup-ms", type=float, help="warmup budget per point in ms")
    r.add_argument("--rounds", help="a number, or quick|default|accurate")
    r.add_argument("--energy", action="store_true", help="measure energy per call")
    r.add_argument("--spec", help="read the sweep from a JSON spec file (flags override it)")
    r.add_argument("--label", help="a label stored with the run")
    r.add_argument("--db", help="store path (default data/results.db or $NORMSCOPE_DB)")
    r.add_argument("--json", action="store_true", help="print the run's points as JSON on stdout")
    r.set_defaults(handler=cmd_blocks_run)
    s = bsub.add_parser("show", help="print a block run's answer: the norm's share and LN→RMS ratios")
    s.add_argument("run_id", type=int)
    s.add_argument("--db")
    s.set_defaults(handler=cmd_blocks_show)


def spec_from_args(a: argparse.Namespace) -> BlockSweepSpec:
    if a.spec:
        try:
            base = BlockSweepSpec.from_json(Path(a.spec).read_text(encoding="utf-8")).to_dict()
        except OSError as e:
            raise SpecError(f"cannot read spec file {a.spec}: {e.strerror}") from None
    else:
        base = default_block_spec(a.device or "cpu").to_dict()
    kw = dict(base)
    if a.device:
        kw["device"] = a.device
    if a.preset:
        kw["preset"] = a.preset
        kw["seq_len"] = None if not a.seq_len else a.seq_len
    for flag, key in (
        ("norms", "norms"),
        ("placements", "placements"),
        ("impls", "impls"),
        ("dtypes", "dtypes"),
        ("modes", "modes"),
    ):
        if getattr(a, flag):
            kw[key] = split_list(getattr(a, flag))
    if a.tokens:
        try:
            kw["tokens"] = [int(t) for t in split_list(a.tokens)]
        except ValueError:
            raise UsageError(f"--tokens must be whole numbers, got {a.tokens!r}") from None
    for flag in ("seq_len", "step_depth", "threads", "budget_ms", "warmup_ms", "label"):
        if getattr(a, flag) is not None:
            kw[flag] = getattr(a, flag)
    if a.preset and not a.tokens:
        seq = a.seq_len or PRESETS[a.preset].seq_len or 512 if a.preset in PRESETS else 512
        kw["tokens"] = [t for t in kw["tokens"] if t % seq == 0] or [4 * seq]
    kw.update(rounds_fields(a.rounds))
    if a.energy:
        kw["energy"] = True
    return BlockSweepSpec.from_dict(kw)


def cmd_blocks_run(a: argparse.Namespace) -> int:
    spec = spec_from_args(a)  # validated before torch is imported
    if spec.device == "cpu":
        hugepages.request(spec.cpu_pages)  # read by torch at its first allocation: before the import

    from ...jobs import device_lock
    from ...measure.sweep.runner import preflight, run_sweep
    from .measure import BLOCKS

    preflight(spec, BLOCKS)
    tty = sys.stderr.isatty()

    def progress(done, total, p, res):
        if res is None and not tty:
            return
        line = block_progress_line(done if res else done + 1, total, p, res)
        sys.stderr.write(("\r\033[K" if tty else "") + line + ("" if tty and res is None else "\n"))
        sys.stderr.flush()

    with Store(a.db) as store, device_lock(store, spec.device):
        outcome = run_sweep(spec, store, progress=progress, label=a.label, kind=BLOCKS)
        run = store.get_run(outcome.run_id)
    print(
        f"run {outcome.run_id} {outcome.status}: {run['points_ok']} ok, {run['points_flagged']} imprecise or "
        f"unstable, {run['points_failed']} failed, {run['points_skipped']} skipped; store {store.where}",
        file=sys.stderr,
    )
    if a.json:
        json.dump(
            {"run_id": outcome.run_id, "status": outcome.status, "points": [r.to_dict() for r in outcome.results]},
            sys.stdout,
            indent=1,
            default=str,
        )
        sys.stdout.write("\n")
    return outcome.exit_code


def cmd_blocks_show(a: argparse.Namespace) -> int:
    from .analysis import answers

    with Store(a.db) as store:
        run = store.get_run(a.run_id)
        if run.get("kind") != "blocks":
            raise UsageError(f"run {a.run_id} is a {run.get('kind')} run, not a block run: see `profilers runs`")
        points = store.points(a.run_id)
    for line in answers(points):
        print(line)
    return 0
