"""`python -m profilers blocks run|show`: the norm choice inside a transformer block and a training step."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...catalog import PLACEMENTS, STEP_MARGIN_PCT
from ...commands.base import (
    UsageError,
    add_lab_run_flags,
    add_margin_flag,
    margin_of,
    rounds_fields,
    run_lab_sweep,
    split_list,
)
from ...measure.machine import hugepages
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
    add_lab_run_flags(r)
    r.set_defaults(handler=cmd_blocks_run)
    s = bsub.add_parser("show", help="print a block run's answer: the norm's share and LN→RMS ratios")
    s.add_argument("run_id", type=int)
    s.add_argument("--db")
    add_margin_flag(s, STEP_MARGIN_PCT, "a block's or a step's time")
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

    from .measure import BLOCKS

    return run_lab_sweep(spec, BLOCKS, a.db, a.label, a.json)


def cmd_blocks_show(a: argparse.Namespace) -> int:
    from .analysis import answers

    margin = margin_of(a, STEP_MARGIN_PCT)
    with Store(a.db) as store:
        run = store.get_run(a.run_id)
        if run.get("kind") != "blocks":
            raise UsageError(f"run {a.run_id} is a {run.get('kind')} run, not a block run: see `profilers runs`")
        points = store.points(a.run_id)
    for line in answers(points, margin):
        print(line)
    return 0
