"""On a CUDA GPU: the block builder at Llama-3-8B shapes against float64, and a slice of the standard training grid.

Prints (1) one Llama-3-8B decoder block (RMSNorm, Pre-LN, 8192 tokens) in bf16 and fp32 against its float64
copy, and (2) a few cells of the ``standard`` preset (its width, sequence and batch; Post-LN and Pre-LN at 6 and
12 layers, 100 steps) with seconds per step, tokens/s and energy: the figures the standard preset's time
estimate rests on. Needs the corpus under data/corpora (``make corpus``). Exits 2 without CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from profilers.labs.training import measure as T
from profilers.labs.training.spec import preset_spec
from profilers.measure.models import blocks as B
from profilers.store import Store


def block_check() -> list[dict]:
    out = []
    for dtype in (torch.bfloat16, torch.float32):
        cfg = B.block_config_from_preset("llama-3-8b", norm="rmsnorm", placement="pre_ln", impl="native")
        block = B.build_block(cfg, device="cuda", dtype=dtype, seed=0)
        x = B.block_input(cfg, 1, 8192, device="cuda", dtype=dtype, seed=1)
        t0 = time.perf_counter()
        check = B.check_against_float64(block, x)
        torch.cuda.synchronize()
        out.append(
            {
                "dtype": str(dtype).removeprefix("torch."),
                "output_max_rel": check.output.max_rel,
                "output_rel_l2": check.output.rel_l2,
                "grads_max_rel": check.grads.max_rel if check.grads else None,
                "grads_rel_l2": check.grads.rel_l2 if check.grads else None,
                "worst_grad": check.grads.worst if check.grads else None,
                "check_s": time.perf_counter() - t0,
            }
        )
        del block, x
        torch.cuda.empty_cache()
    return out


def grid_slice(steps: int) -> list[dict]:
    spec = preset_spec(
        "standard",
        placements=["post_ln", "pre_ln"],
        lrs=[1e-3],
        warmups=[0],
        seeds=[0],
        depths=[6, 12],
        steps=steps,
        eval_every=steps,
        init_depths=[6, 12],
        finetune_document=None,
        quality_norms=[],
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "gpu.db") as store:
        out = T.run_grid(spec, store)
        for name, doc in store.artifacts(out.run_id, T.ARTIFACT_PREFIX).items():
            c = doc["cell"]
            row = {"cell": name, "kind": c["kind"]}
            if c["kind"] == "train":
                row |= {
                    "s_per_step": doc["wall_s"] / doc["steps_done"],
                    "tokens_per_s": doc["tokens_per_s"],
                    "final_val_loss": doc["final_val_loss"],
                    "trained": doc["trained"],
                    "energy_j": doc["energy_j"],
                    "energy_reason": doc["energy_reason"],
                }
            else:
                row |= {"last_ffn_grad": doc["ffn_out_grad_norm"][-1]}
            rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", help="also write the results as JSON here")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("training_gpu: no CUDA GPU visible to torch; run this on a GPU machine", file=sys.stderr)
        return 2
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    result["block_vs_float64"] = block_check()
    result["grid"] = grid_slice(a.steps)
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
