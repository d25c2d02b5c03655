"""`python -m profilers model run|show|configs`: the norm implementation inside a real model's fine-tuning step.

``model run`` builds a `transformers` model from a config (a shipped name or a config.json; random weights,
nothing downloaded), swaps its norm modules per candidate, checks each against the model's own in float64 and
times forward, forward+backward and an AdamW step. ``model show RUN`` prints the answer and the claim check;
``model configs`` lists the shipped configs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ...catalog import STEP_MARGIN_PCT
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
from ...spec import SpecError
from ...store import Store
from .spec import FAMILIES, MODEL_IMPLS, MODEL_MODES, SWAP_NORMS, ModelSweepSpec, read_config, shipped


def register(sub: Any) -> None:
    p = sub.add_parser("model", help="the norm implementation inside a transformers model's fine-tuning step")
    msub = p.add_subparsers(dest="model_command", required=True, parser_class=type(p))
    r = msub.add_parser("run", help="swap the model's norms per implementation, gate them, time fwd/bwd/step")
    r.add_argument("--config", help=f"a shipped config ({', '.join(shipped())}) or a config.json path")
    r.add_argument("--layers", type=int, help="keep the first N layers (e.g. 2 of an 8B model on a CPU)")
    r.add_argument("--impls", help=f"comma list: {','.join(MODEL_IMPLS)} (the model's own module is always timed)")
    r.add_argument("--norms", help=f"other norm types to swap in, placement kept: {','.join(SWAP_NORMS)}")
    r.add_argument("--batch", type=int, help="sequences (or images) per call (default 1)")
    r.add_argument("--seq-len", type=int, help="tokens per sequence (default 512; an image model: its patches)")
    r.add_argument("--dtypes", help="comma list: float32,bfloat16,float16")
    r.add_argument("--modes", help=f"comma list: {','.join(MODEL_MODES)} (step: forward, backward and AdamW)")
    r.add_argument("--lora", type=int, help="LoRA rank on the attention and MLP projections (default 0: every weight)")
    add_lab_run_flags(r)
    r.set_defaults(handler=cmd_model_run)
    s = msub.add_parser("show", help="print a model run's answer and the fine-tuning claim check")
    s.add_argument("run_id", type=int)
    s.add_argument("--db")
    s.add_argument("--json", action="store_true")
    add_margin_flag(s, STEP_MARGIN_PCT, "the call's time")
    s.set_defaults(handler=cmd_model_show)
    c = msub.add_parser("configs", help="list the shipped model configs")
    c.set_defaults(handler=cmd_model_configs)


def spec_from_args(a: argparse.Namespace) -> ModelSweepSpec:
    if a.spec:
        try:
            kw = dict(ModelSweepSpec.from_json(Path(a.spec).read_text(encoding="utf-8")).to_dict())
        except OSError as e:
            raise SpecError(f"cannot read spec file {a.spec}: {e.strerror}") from None
    elif not a.config:
        raise UsageError(f"give --config: a shipped config ({', '.join(shipped())}) or a config.json path")
    else:
        kw = {}
    if a.config:
        ref = a.config if a.config in shipped() else str(Path(a.config).expanduser().resolve())
        kw["config"], kw["model_config"] = ref, read_config(a.config)[0]
    for flag in ("impls", "norms", "dtypes", "modes"):
        if getattr(a, flag):
            kw[flag] = split_list(getattr(a, flag))
    for flag in ("layers", "lora", "batch", "seq_len", "device", "threads", "budget_ms", "warmup_ms", "label"):
        if getattr(a, flag) is not None:
            kw[flag] = getattr(a, flag)
    kw.update(rounds_fields(a.rounds))
    if a.energy:
        kw["energy"] = True
    return ModelSweepSpec.from_dict(kw)


def cmd_model_run(a: argparse.Namespace) -> int:
    spec = spec_from_args(a)  # validated before torch is imported
    if spec.device == "cpu":
        hugepages.request(spec.cpu_pages)

    from .measure import MODELS

    banner = f"{spec.name}: {len(spec.points())} points, {spec.tokens:,} tokens per call, a step trains {spec.tuning}"
    return run_lab_sweep(spec, MODELS, a.db, a.label, a.json, banner)


def cmd_model_show(a: argparse.Namespace) -> int:
    from .analysis import answers, claim_check, table

    margin = margin_of(a, STEP_MARGIN_PCT)
    with Store(a.db, readonly=True) as store:
        run = store.get_run(a.run_id)
        if run.get("kind") != "models":
            raise UsageError(f"run {a.run_id} is a {run.get('kind')} run, not a model run: see `profilers runs`")
        points = store.points(a.run_id)
    if a.json:
        doc = {
            "run_id": a.run_id,
            "model": ModelSweepSpec.from_dict(run["spec"]).name,
            "margin_pct": margin,
            "rows": table(points, margin),
            "claims": [c.__dict__ for c in claim_check(points, margin)],
        }
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    print(f"run {a.run_id}: {ModelSweepSpec.from_dict(run['spec']).name}")
    for line in answers(points, margin):
        print(line)
    return 0


def cmd_model_configs(a: argparse.Namespace) -> int:
    for name, path in shipped().items():
        doc = json.loads(path.read_text(encoding="utf-8"))
        fam = FAMILIES[doc["model_type"]]
        print(
            f"{name:<24} {doc['model_type']:<8} {doc['num_hidden_layers']:>3} layers, hidden {doc['hidden_size']:>5}, "
            f"{fam.norm} ({fam.placement})"
        )
    return 0
