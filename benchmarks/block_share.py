"""The norm's share of a transformer block, and what LayerNorm → RMSNorm changes at block and step level.

Runs block sweeps (the same engine as `python -m profilers blocks run`: interleaved rounds, paired ratios,
profiled component breakdown) for BERT-base and ViT-B blocks at several token counts, fp32 and bf16,
fwd and fwd+bwd, native and compiled, plus one AdamW training step of a 2-block stack; then prints, per
configuration, the norm's share of the block's time and the LN → RMS ratio with its 95% interval, and the
claims check at block and step level. On a GPU, --preset llama-3-8b --tokens 8192 --dtypes bf16.

    .venv/bin/python benchmarks/block_share.py [--presets bert-base,vit-b] [--db /tmp/blocks.db]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profilers.labs.blocks import analysis as blocks
from profilers.labs.blocks.measure import BLOCKS
from profilers.labs.blocks.spec import BlockSweepSpec
from profilers.measure.sweep.runner import run_sweep
from profilers.spec import PRESETS
from profilers.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="bert-base,vit-b")
    ap.add_argument("--tokens", help="comma list (default: 1, 4 and 8 sequences of the preset)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--impls", default="native,compiled")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget-ms", type=float, default=300.0)
    ap.add_argument("--step-depth", type=int, default=2)
    ap.add_argument("--db", default=None)
    a = ap.parse_args()
    db = Path(a.db) if a.db else Path(tempfile.mkdtemp()) / "blocks.db"
    t0 = time.perf_counter()
    rows, claim_rows = [], []
    for preset in a.presets.split(","):
        seq = PRESETS[preset].seq_len or 512
        tokens = [int(t) for t in a.tokens.split(",")] if a.tokens else [seq, 4 * seq, 8 * seq]
        spec = BlockSweepSpec(
            preset=preset,
            norms=("layernorm", "rmsnorm"),
            placements=("pre_ln",),
            impls=tuple(a.impls.split(",")),
            tokens=tuple(tokens),
            dtypes=tuple(a.dtypes.split(",")),
            modes=("fwd", "fwdbwd", "step"),
            step_depth=a.step_depth,
            device=a.device,
            budget_ms=a.budget_ms,
            warmup_ms=30.0,
            label=f"block share: {preset}",
        )
        with Store(db) as store:
            started = time.perf_counter()
            out = run_sweep(spec, store, kind=BLOCKS)
            points = store.points(out.run_id)
        print(
            f"{preset}: run {out.run_id} {out.status}, {len(points)} points, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        for s in blocks.switches(points):
            rows.append((preset, s))
        claim_rows += [(preset, c) for c in blocks.claims(points)]
    print(f"\nblock shares and LN → RMS on this machine ({time.perf_counter() - t0:.0f} s; store {db})")
    print(
        f"{'preset':<10} {'impl':<9} {'dtype':<9} {'mode':<7} {'tokens':>7} {'norm % (LN)':>11} {'norm % (RMS)':>12} "
        f"{'RMS/LN':>7} {'95% interval':>16}  measurable"
    )
    for preset, s in rows:
        r = s.ratio
        ln = f"{s.ln_share_pct:.1f}" if s.ln_share_pct is not None else "N/A"
        rms = f"{s.rms_share_pct:.1f}" if s.rms_share_pct is not None else "N/A"
        print(
            f"{preset:<10} {s.impl:<9} {s.dtype:<9} {s.mode:<7} {s.tokens:>7} {ln:>11} {rms:>12} {r.value:>7.3f} "
            f"{r.lo:>7.3f}-{r.hi:<7.3f}  {'yes' if r.measurable else 'no'}"
        )
    print("\nclaims")
    for preset, c in claim_rows:
        print(f"{preset:<10} {c.level:<13} {c.verdict:<28} {c.measured} [{c.config}]")
    verdicts = {}
    for _, c in claim_rows:
        verdicts.setdefault(c.level, []).append(c.verdict)
    for level, v in verdicts.items():
        held = sum(x == "consistent with the claim" for x in v)
        print(f"{level}: consistent with the claim in {held} of {len(v)} configurations")


if __name__ == "__main__":
    main()
