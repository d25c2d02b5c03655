"""Tiny training grids for the stability lab's tests: a corpus the test writes, and a spec that trains in seconds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from profilers.labs.training.spec import TrainingSpec

TEXT = (
    "to be or not that is the question whether tis nobler in the mind to suffer the slings and arrows of "
    "outrageous fortune or to take arms against a sea of troubles and by opposing end them"
)
WORDS = tuple(TEXT.split())


def write_corpus(folder: Path, documents: int = 4, words: int = 1500) -> list[str]:
    """Plain-text documents of seeded random words: real bytes for a byte-level model, no download."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    paths = []
    for i in range(documents):
        p = folder / f"doc{i}.txt"
        p.write_text(" ".join(rng.choice(WORDS) for _ in range(words)) + "\n", encoding="utf-8")
        paths.append(str(p))
    return paths


def tiny_spec(corpus: list[str], **overrides: Any) -> TrainingSpec:
    """A grid of a few 2-layer, 32-wide models trained for a few dozen steps (about a second each)."""
    kw: dict[str, Any] = dict(
        placements=("post_ln", "pre_ln"),
        depths=(2,),
        lrs=(3e-3,),
        warmups=(0, 5),
        seeds=(0,),
        hidden=32,
        heads=2,
        seq_len=16,
        batch=4,
        steps=20,
        eval_every=10,
        eval_batches=2,
        log_every=5,
        init_depths=(2, 4),
        init_seeds=(0, 1),
        finetune_document="doc3",
        finetune_placements=("post_ln", "pre_ln"),
        pretrain_steps=10,
        pretrain_lr=3e-3,
        pretrain_warmup=2,
        finetune_steps=5,
        finetune_lrs=(3e-3,),
        quality_norms=("layernorm", "rmsnorm"),
        quality_seeds=(0,),
        threads=1,
        corpus=tuple(corpus),
        label="tiny grid",
    )
    kw.update(overrides)
    return TrainingSpec(**kw)
