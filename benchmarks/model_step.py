"""What the norm implementation costs inside a real model's fine-tuning step, with the 20-30% claim checked.

Runs model sweeps (the same engine as `python -m profilers model run`: the model's norm modules swapped per
implementation, each gated against float64 logits and gradients, interleaved rounds, paired ratios with 95%
intervals, the norm's share from torch.profiler) for each model given, at each dtype, in forward,
forward+backward and AdamW-step modes; then prints one table per model and dtype and the claim check. A point
whose memory estimate exceeds what the machine has is skipped with the estimate, never half-run.

    .venv/bin/python benchmarks/model_step.py                                  # Qwen2.5-0.5B, Llama-3.1-8B (2 layers)
    .venv/bin/python benchmarks/model_step.py --models llama-3.1-8b:2 --lora 16 --dtypes bfloat16
    .venv/bin/python benchmarks/model_step.py --device cuda --models llama-3.1-8b:8,qwen2.5-7b --seq-len 4096 \\
        --dtypes bfloat16 --impls native,compiled,liger,quack
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profilers.labs.models import analysis
from profilers.labs.models.measure import MODELS
from profilers.labs.models.spec import ModelSweepSpec
from profilers.measure.machine import hugepages
from profilers.measure.sweep.runner import run_sweep
from profilers.store import Store


def _fmt(v: float | None, spec: str) -> str:
    """``v`` in ``spec`` (its width first: '10.1f'), or N/A in the same width."""
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
    return "N/A".rjust(width) if v is None else format(v, spec)


def _print_table(rows: list[dict], points: list[dict]) -> None:
    print(
        f"  {'mode':<7} {'implementation':<18} {'status':<9} {'p50 ms':>10} {'saved %':>8} {'95% interval':>17} "
        f"{'norm %':>7} {'tok/s':>8} {'peak MiB':>9}"
    )
    for r, p in zip(rows, points, strict=True):
        interval = (
            "N/A" if r["saving_lo_pct"] is None else f"[{r['saving_lo_pct']:+.1f}, {r['saving_hi_pct']:+.1f}]".rjust(17)
        )
        line = (
            f"  {r['mode']:<7} {r['candidate']:<18} {r['status']:<9} {_fmt(r['p50_ms'], '10.1f')} "
            f"{_fmt(r['saving_pct'], '+8.1f')} {interval:>17} {_fmt(r['norm_share_pct'], '7.2f')} "
            f"{_fmt(r['tokens_per_s'], '8.0f')} {_fmt(r['peak_mib'], '9.0f')}"
        )
        print(line)
        if p["status"] in ("skipped", "failed") and p.get("error"):
            print(f"      {p['status']}: {p['error']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="qwen2.5-0.5b,llama-3.1-8b:2", help="comma list of CONFIG[:LAYERS]")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--modes", default="fwd,fwdbwd,step")
    ap.add_argument("--impls", default="native,compiled,liger,quack")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--lora", type=int, default=0, help="LoRA rank (0: every weight trained)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget-ms", type=float, default=1000.0)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--db", default=None)
    a = ap.parse_args()
    db = Path(a.db) if a.db else Path(tempfile.mkdtemp()) / "models.db"
    t_all = time.perf_counter()
    claims = []
    for item in a.models.split(","):
        config, _, layers = item.partition(":")
        spec = ModelSweepSpec(
            config=config,
            layers=int(layers) if layers else None,
            impls=tuple(a.impls.split(",")),
            dtypes=tuple(a.dtypes.split(",")),
            modes=tuple(a.modes.split(",")),
            seq_len=a.seq_len,
            batch=a.batch,
            lora=a.lora,
            device=a.device,
            budget_ms=a.budget_ms,
            rounds=a.rounds,
            label=f"model step: {item}",
        )
        if spec.device == "cpu":
            hugepages.request(spec.cpu_pages)  # as `profilers model run` does
        t0 = time.perf_counter()
        with Store(db) as store:
            out = run_sweep(spec, store, kind=MODELS)
            points = store.points(out.run_id)
            run = store.get_run(out.run_id)
        wall = time.perf_counter() - t0
        info = next((p["extra"]["model"] for p in points if (p.get("extra") or {}).get("model")), {})
        machine = run.get("machine") or {}
        print(
            f"\n== {spec.name}: {spec.tokens:,} tokens per call, a step trains {spec.tuning}; "
            f"{_fmt(info['parameters'] / 1e6 if info.get('parameters') else None, ',.1f')} M parameters, "
            f"{info.get('norm_modules', 'N/A')} norm modules; run {out.run_id} {out.status} in {wall:.0f} s on "
            f"{machine.get('cpu') or machine.get('device_name') or a.device}"
        )
        for dtype in spec.dtypes:
            mine = [p for p in points if p["dtype"] == dtype]
            print(f" {dtype}")
            _print_table(analysis.table(mine), mine)
        claims += analysis.claim_check(points)
        for line in analysis.answers(points):
            print(f"  - {line}")
    print("\nThe claim:", analysis.CLAIM)
    for c in claims:
        print(f"  {c.config}: {c.measured}: {c.verdict}")
    if not claims:
        print("  no fine-tuning step was timed beside the model's own norm: not measured")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; store {db}")


if __name__ == "__main__":
    main()
