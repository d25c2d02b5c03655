"""Does NormScope's CPU timer agree with torch.utils.benchmark? (the CPU counterpart of the GPU do_bench check)

For LayerNorm and RMSNorm, native and compiled, fp32 forward at three shapes, this measures in one process
and under one allocator mode, interleaved round by round (a random order per round):

- NormScope's p50: the engine's CPU timer (``CpuTimer``, blocks of calls of at least 1 ms) with the
  samples of every round pooled, as a sweep pools its rounds;
- torch.utils.benchmark's median: ``Timer.blocked_autorange`` per round, the raw per-call times pooled.

Each allocator mode (``reuse``: glibc keeps freed memory; ``system``: the process's allocator untouched) runs
in its own subprocess, since glibc's settings cannot be undone within a process. Prints the table with the
differences and the goal: within 5% on ≥ 90% of pairs on an idle machine. Then the allocator's effect: each
pair's p50 in ``system`` mode over ``reuse`` mode.

    .venv/bin/python benchmarks/cpu_fidelity.py [--rounds 5] [--budget-ms 200] [--modes reuse,system]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = ((2048, 1024), (4096, 4096), (16384, 1024))
VARIANTS = ("layernorm", "rmsnorm")
IMPLS = ("native", "compiled")


def child(mode: str, rounds: int, budget_ms: float, seed: int) -> list[dict]:
    """One allocator mode, in this process: every candidate timed by both timers, interleaved."""
    import torch
    import torch.utils.benchmark as tb

    from profilers.catalog import Config
    from profilers.measure.instruments import compile as compiling
    from profilers.measure.instruments.memory import set_cpu_allocator
    from profilers.measure.instruments.timing import CpuTimer
    from profilers.measure.machine import provenance
    from profilers.measure.subjects.variants import VARIANTS as KINDS
    from profilers.measure.subjects.variants import build

    allocator = set_cpu_allocator(mode)
    threads = provenance.usable_cores()
    torch.set_num_threads(threads)
    compiling.configure("cpu")
    dev, cfg = torch.device("cpu"), Config()
    cands = []
    for tokens, hidden in SHAPES:
        for variant in VARIANTS:
            for impl in IMPLS:
                ins = KINDS[variant].make_inputs(tokens, hidden, torch.float32, dev, 0, cfg)
                fn = build(variant, impl, cfg, compiler=compiling.compile_fresh)
                with torch.no_grad():
                    fn(*ins)  # compiles a compiled candidate; a first touch for the others

                def call(fn=fn, ins=ins):
                    with torch.no_grad():
                        return fn(*ins)

                cands.append({"key": (variant, impl, tokens, hidden), "call": call, "ours": [], "theirs": []})
    ours_timer = CpuTimer(warmup_ms=20, budget_ms=budget_ms, threads=threads)
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(cands)
        rng.shuffle(order)
        for c in order:
            c["ours"].extend(ours_timer.measure(c["call"]).samples_us)
            t = tb.Timer("call()", globals={"call": c["call"]}, num_threads=threads)
            m = t.blocked_autorange(min_run_time=budget_ms / 1e3)
            c["theirs"].extend(x / m.number_per_run * 1e6 for x in m.raw_times)
    return [
        {
            "mode": mode,
            "allocator": allocator["effect"],
            "threads": threads,
            "variant": c["key"][0],
            "impl": c["key"][1],
            "tokens": c["key"][2],
            "hidden": c["key"][3],
            "ours_p50_us": statistics.median(c["ours"]),
            "theirs_median_us": statistics.median(c["theirs"]),
            "ours_n": len(c["ours"]),
            "theirs_n": len(c["theirs"]),
        }
        for c in cands
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget-ms", type=float, default=200.0)
    ap.add_argument("--modes", default="reuse,system")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.rounds, a.budget_ms, a.seed)))
        return
    import platform

    rows: list[dict] = []
    for mode in a.modes.split(","):
        p = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--rounds",
                str(a.rounds),
                "--budget-ms",
                str(a.budget_ms),
                "--seed",
                str(a.seed),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode != 0:
            sys.exit(f"mode {mode} failed:\n{p.stderr[-3000:]}")
        rows.extend(json.loads(p.stdout.strip().splitlines()[-1]))
    print(
        f"machine: {platform.processor() or platform.machine()}, {rows[0]['threads']} threads; "
        f"{a.rounds} interleaved rounds of {a.budget_ms:.0f} ms per timer and candidate; fp32 forward"
    )
    print(
        f"{'mode':<7} {'variant':<10} {'impl':<9} {'shape':>11} {'NormScope p50':>14} {'torch median':>13} {'diff':>7}"
    )
    diffs = []
    for r in rows:
        d = 100 * (r["ours_p50_us"] / r["theirs_median_us"] - 1)
        diffs.append(d)
        shape = f"{r['tokens']}x{r['hidden']}"
        print(
            f"{r['mode']:<7} {r['variant']:<10} {r['impl']:<9} {shape:>11} {r['ours_p50_us']:>11,.1f} µs "
            f"{r['theirs_median_us']:>10,.1f} µs {d:>+6.1f}%"
        )
    within = sum(abs(d) <= 5 for d in diffs)
    print(
        f"within 5%: {within}/{len(diffs)} ({100 * within / len(diffs):.0f}%; goal ≥ 90%); "
        f"median |diff| {statistics.median(abs(d) for d in diffs):.2f}%, worst {max(diffs, key=abs):+.1f}%"
    )
    modes = {r["mode"] for r in rows}
    if {"reuse", "system"} <= modes:
        by = {(r["mode"], r["variant"], r["impl"], r["tokens"], r["hidden"]): r for r in rows}
        print("\nthe allocator's effect (NormScope p50, system ÷ reuse), and RMS/LN per mode:")
        for tokens, hidden in SHAPES:
            for impl in IMPLS:
                eff = [
                    by[("system", v, impl, tokens, hidden)]["ours_p50_us"]
                    / by[("reuse", v, impl, tokens, hidden)]["ours_p50_us"]
                    for v in VARIANTS
                ]
                rms_ln = [
                    by[(m, "rmsnorm", impl, tokens, hidden)]["ours_p50_us"]
                    / by[(m, "layernorm", impl, tokens, hidden)]["ours_p50_us"]
                    for m in ("reuse", "system")
                ]
                print(
                    f"  {f'{tokens}x{hidden}':<11} {impl:<9} LN ×{eff[0]:.2f}  RMS ×{eff[1]:.2f}   "
                    f"RMS/LN reuse {rms_ln[0]:.2f}, system {rms_ln[1]:.2f}"
                )


if __name__ == "__main__":
    main()
