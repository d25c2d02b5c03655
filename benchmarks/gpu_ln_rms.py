"""LayerNorm and RMSNorm, bf16 forward at 32768×8192: NormScope's timer beside triton's do_bench.

Both time the same callables in the same process; the goal is agreement within 3%.
Prints a table and writes JSON to --out.

    python benchmarks/gpu_ln_rms.py --out out/gpu_bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profilers.analysis.roofline import bytes_moved
from profilers.catalog import Config, unsupported_reason
from profilers.measure import compile as compiling
from profilers.measure import provenance
from profilers.measure.copyprobe import copy_bandwidth_gbps
from profilers.measure.timing import CudaEventTimer, CudaGraphTimer
from profilers.measure.variants import VARIANTS, build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--hidden", type=int, default=8192)
    ap.add_argument("--out", default="out/gpu_bench.json")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit(f"{Path(__file__).name} needs a CUDA GPU: torch {torch.__version__} sees none")
    from triton.testing import do_bench

    dev = torch.device("cuda:0")
    cfg = Config()
    copy = copy_bandwidth_gbps(dev)
    rows = []
    timer = CudaEventTimer(25, 200, dev)
    for variant in ("layernorm", "rmsnorm"):
        ins = VARIANTS[variant].make_inputs(a.tokens, a.hidden, torch.bfloat16, dev, 0, cfg)
        for impl in ("eager", "native", "compiled", "liger"):
            reason = unsupported_reason(variant, impl, "cuda", a.tokens, a.hidden, cfg)
            if reason:
                rows.append({"variant": variant, "impl": impl, "skipped": reason})
                continue
            fn = build(variant, impl, cfg, compiler=compiling.compile_fresh)
            compile_s = None
            with torch.no_grad():
                if impl == "compiled":
                    with compiling.first_calls() as t:
                        fn(*ins)
                        torch.cuda.synchronize()
                    compile_s = t["compile_s"]

                def call(fn=fn, ins=ins):
                    return fn(*ins)

                ours = timer.measure(call).stats
                graph = CudaGraphTimer(25, 200, dev).measure(call).stats
                ref_us = do_bench(call, warmup=25, rep=200, return_mode="median") * 1e3
            nbytes = bytes_moved(variant, "fwd", a.tokens, a.hidden, 2)
            gbps = nbytes / ours.p50_us / 1e3
            rows.append(
                {
                    "variant": variant,
                    "impl": impl,
                    "p50_us": ours.p50_us,
                    "iqr_us": ours.iqr_us,
                    "n": ours.n,
                    "gbps": gbps,
                    "roofline_pct": 100 * gbps / copy,
                    "do_bench_us": ref_us,
                    "diff_pct": 100 * (ours.p50_us / ref_us - 1),
                    "cuda_graph_us": graph.p50_us,
                    "compile_s": compile_s,
                }
            )
    doc = {
        "machine": provenance.machine("cuda:0"),
        "versions": provenance.versions(),
        "copy_gbps": copy,
        "shape": [a.tokens, a.hidden],
        "dtype": "bfloat16",
        "mode": "fwd",
        "rows": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1))
    print(f"{doc['machine']['gpu']['name']}: copy {copy:.0f} GB/s; bf16 fwd {a.tokens}x{a.hidden}")
    print(
        f"{'variant':<10} {'impl':<9} {'p50 µs':>9} {'GB/s':>7} {'roof%':>6} {'do_bench':>9} {'diff':>7} "
        f"{'graph µs':>9} {'compile s':>9}"
    )
    for r in rows:
        if "skipped" in r:
            print(f"{r['variant']:<10} {r['impl']:<9} skipped: {r['skipped']}")
            continue
        comp = f"{r['compile_s']:.1f}" if r["compile_s"] is not None else "-"
        print(
            f"{r['variant']:<10} {r['impl']:<9} {r['p50_us']:>9.1f} {r['gbps']:>7.0f} {r['roofline_pct']:>6.1f} "
            f"{r['do_bench_us']:>9.1f} {r['diff_pct']:>+6.1f}% {r['cuda_graph_us']:>9.1f} {comp:>9}"
        )


if __name__ == "__main__":
    main()
