"""Energy, kernels and sampler overhead on a GPU, bf16 forward at 32768×8192.

For LayerNorm native, RMSNorm native, eager and compiled:
- energy counter vs integrated instant power (10 ms polling) over one 5 s loop (goal: within 10%);
- J per call with NormScope's energy windows (1 s × 3 repeats) and idle power;
- kernels per call from torch.profiler;
- p50 with and without the 100 ms sampler running (goal: within 2%).

    python benchmarks/gpu_sensors.py --out out/gpu_sensors.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _gpu import forward_call, require_cuda

from profilers.measure.instruments import energy, kernels
from profilers.measure.instruments.timing import CudaEventTimer
from profilers.measure.machine import provenance
from profilers.sensors.host import Host
from profilers.sensors.nvml import Nvml, gpu_for_torch_device
from profilers.sensors.sampler import Sampler

CASES = (("layernorm", "native"), ("rmsnorm", "native"), ("rmsnorm", "eager"), ("rmsnorm", "compiled"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--hidden", type=int, default=8192)
    ap.add_argument("--loop-s", type=float, default=5.0)
    ap.add_argument("--out", default="out/gpu_sensors.json")
    a = ap.parse_args()
    dev = require_cuda(__file__)
    nv = Nvml()
    gpu = gpu_for_torch_device(nv, 0)
    if gpu is None:
        sys.exit(f"no NVML device for cuda:0: {nv.reason or 'UUID not matched'}")
    meter = energy.NvmlCounterMeter(gpu)
    torch.cuda.synchronize()
    idle_w = energy.idle_power(meter, 2.0)
    rows = []
    for variant, impl in CASES:
        call, _, _ = forward_call(variant, impl, a.tokens, a.hidden, dev)
        with torch.no_grad():
            # sampler overhead: p50 without, with, without
            timer = CudaEventTimer(25, 300, dev)
            p_off1 = timer.measure(call).stats.p50_us
            s = Sampler(gpu, Host(), period_s=0.1).start()
            p_on = timer.measure(call).stats.p50_us
            s.stop()
            p_off2 = timer.measure(call).stats.p50_us
            p_off = (p_off1 + p_off2) / 2
            # counter vs integrated instant power over one long loop, 10 ms polling
            fast = Sampler(gpu, None, period_s=0.01).start()
            time.sleep(0.1)
            torch.cuda.synchronize()
            t0, e0 = fast.now_s(), gpu.energy_mj().value
            n = 0
            end = time.perf_counter() + a.loop_s
            while time.perf_counter() < end:
                call()
                n += 1
                if n % 50 == 0:
                    torch.cuda.synchronize()
            torch.cuda.synchronize()
            t1, e1 = fast.now_s(), gpu.energy_mj().value
            time.sleep(0.05)
            fast.stop()
            counter_j = (e1 - e0) / 1000
            integrated_j = energy.integrate_power(fast.columns["t_s"], fast.columns["gpu_power_instant_w"], t0, t1)
            # NormScope's own energy windows
            er = energy.measure(
                call, meter, tokens=a.tokens, window_s=1.0, repeats=3, idle_power_w=idle_w, sync=torch.cuda.synchronize
            )
            kb = kernels.breakdown(call, dev, p_off)
        rows.append(
            {
                "variant": variant,
                "impl": impl,
                "p50_us_sampler_off": p_off,
                "p50_us_sampler_on": p_on,
                "sampler_effect_pct": 100 * (p_on / p_off - 1),
                "loop_s": t1 - t0,
                "loop_calls": n,
                "counter_j": counter_j,
                "integrated_instant_j": integrated_j,
                "instant_vs_counter_pct": 100 * (integrated_j / counter_j - 1) if integrated_j else None,
                "mj_per_call": er.mj_per_call,
                "dynamic_mj_per_call": er.dynamic_mj_per_call,
                "mean_power_w": er.mean_power_w,
                "spread_pct": er.spread_pct,
                "j_per_mtok": er.j_per_mtok,
                "kernels_per_call": kb["kernels_per_call"],
                "kernels": kb["kernels"][:8],
                "launch_overhead_pct": kb["launch_overhead_pct"],
            }
        )
    doc = {
        "machine": provenance.machine("cuda:0", nvml=nv),
        "idle_power_w": idle_w,
        "rows": rows,
        "shape": [a.tokens, a.hidden],
        "dtype": "bfloat16",
        "mode": "fwd",
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1, default=str))
    print(f"{doc['machine']['gpu']['name']}: idle {idle_w:.0f} W; bf16 fwd {a.tokens}x{a.hidden}")
    print(
        f"{'case':<18} {'mJ/call':>8} {'dyn mJ':>7} {'W':>5} {'spread':>7} {'kern':>5} "
        f"{'counter J':>9} {'instant J':>9} {'inst-cnt':>8} {'p50 off':>8} {'p50 on':>8} {'sampler':>8}"
    )
    for r in rows:
        inst = f"{r['integrated_instant_j']:.1f}" if r["integrated_instant_j"] else "N/A"
        ivc = f"{r['instant_vs_counter_pct']:+.1f}%" if r["instant_vs_counter_pct"] is not None else "N/A"
        print(
            f"{r['variant'] + ' ' + r['impl']:<18} {r['mj_per_call']:>8.1f} {r['dynamic_mj_per_call']:>7.1f} "
            f"{r['mean_power_w']:>5.0f} {r['spread_pct']:>6.1f}% {r['kernels_per_call']:>5g} "
            f"{r['counter_j']:>9.1f} {inst:>9} {ivc:>8} {r['p50_us_sampler_off']:>8.1f} "
            f"{r['p50_us_sampler_on']:>8.1f} {r['sampler_effect_pct']:>+7.2f}%"
        )


if __name__ == "__main__":
    main()
