"""The drift demo: real text, a real model, no download.

A small byte-level language model (each character of this English text is one byte) is
trained by the training lab (``labs/training/measure.py``: a Pre-LN decoder from ``measure/models/stack.py``, LayerNorm,
two blocks) on the Shakespeare corpus (``make corpus``), split by play. The held-out plays are split again by play
into a reference part (the profile), a calibration part (the thresholds, at the stated
false-alarm rate) and a test part (the false-alarm rate measured on in-distribution
text the calibration never saw). The shifted sets are modern English prose (this
project's own Markdown documentation), Python source code from this project, and the
test plays with each character replaced at random with probability p (a shift whose
size is controlled).

``demo_model`` has the shape of a user's model function (``(model, data iterator)``),
so ``--model demo --arg set=code`` works wherever ``--model package.module:function`` does.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ... import corpus
from ...measure.models.hooks import load_model
from ...measure.models.stack import build_stack
from ...spec import SpecError
from ..training import measure as training
from ..training.spec import TrainingSpec
from . import analysis as analysis
from . import measure as record
from .spec import DEMO_SETS, DriftSpec

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
BATCH = 8  # sequences per batch: one window of one batch is 8 × 64 = 512 characters
CONTEXT = 64
HIDDEN = 64
HELDOUT_FACTOR = 4  # more held-out windows than shifted ones: the false-alarm rate is the number to pin down
DEFAULT_STEPS = 800
_SKIP_DIRS = {".venv", ".git", "data", ".pytest_cache", ".ruff_cache", "node_modules", "__pycache__"}

Say = Callable[[str], None]


def _repo_files(pattern: str) -> list[Path]:
    return sorted(
        p for p in REPO_ROOT.rglob(pattern) if p.is_file() and not _SKIP_DIRS & set(p.relative_to(REPO_ROOT).parts)
    )


def prose_text() -> tuple[str, list[str]]:
    """This project's Markdown documentation: modern English prose (with some code spans and tables)."""
    files = _repo_files("*.md")
    return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files), [
        str(f.relative_to(REPO_ROOT)) for f in files
    ]


def code_text() -> tuple[str, list[str]]:
    """Python source code of this project."""
    files = [f for f in _repo_files("*.py") if f.parts[-2] != "tests"]
    return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files), [
        str(f.relative_to(REPO_ROOT)) for f in files
    ]


def corrupt(text: str, p: float, alphabet: str, seed: int) -> str:
    """Each character replaced, with probability ``p``, by one drawn uniformly from ``alphabet``."""
    rng = random.Random(seed)
    chars = list(text)
    for i in range(len(chars)):
        if rng.random() < p:
            chars[i] = rng.choice(alphabet)
    return "".join(chars)


def shakespeare_parts(seed: int) -> dict[str, str]:
    """train / reference / calibration / test texts. The model trains on three quarters of the plays; the other
    plays are cut into blocks of one window's length, shuffled and dealt into reference, calibration and test,
    so the three are disjoint samples of the same held-out text (exchangeable windows: the calibration's
    false-alarm bound applies to the test part)."""
    docs = corpus.shakespeare()
    train, held = corpus.split_by_document(docs, val_fraction=0.25, seed=seed)
    text = "\n".join(d.text for d in held)
    size = BATCH * CONTEXT
    blocks = [text[i : i + size] for i in range(0, len(text) - size + 1, size)]
    random.Random(seed).shuffle(blocks)
    names = ("reference", "calibration", "test")
    out = {k: "".join(blocks[i::3]) for i, k in enumerate(names)}
    out["train"] = "\n".join(d.text for d in train)
    out["heldout_plays"] = ", ".join(d.name for d in held)
    return out


@dataclass(frozen=True)
class Trained:
    model: torch.nn.Module
    alphabet: str  # the characters of the training text: what corruption draws from
    steps: int
    train_loss: float | None
    val_loss: float | None
    unigram_nats: float
    seconds: float
    how: str

    def describe(self) -> dict[str, Any]:
        return {
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "steps": self.steps,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "unigram_nats": self.unigram_nats,
            "train_s": self.seconds,
            "how": self.how,
        }


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes as token ids (the training lab's byte-level vocabulary)."""
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).to(torch.int64)


def training_spec(steps: int, seed: int) -> TrainingSpec:
    """The demo model as a training-lab spec: one Pre-LN decoder, two blocks, LayerNorm, d_model 64."""
    return TrainingSpec(
        placements=("pre_ln",),
        norm="layernorm",
        depths=(2,),
        lrs=(3e-3,),
        warmups=(min(50, max(1, steps // 10)),),
        seeds=(seed,),
        hidden=HIDDEN,
        heads=4,
        seq_len=CONTEXT,
        batch=32,
        steps=steps,
        eval_every=steps,
        log_every=steps,
        finetune_document=None,
    )


@functools.lru_cache(maxsize=2)
def trained(steps: int = DEFAULT_STEPS, seed: int = 0) -> Trained:
    """The demo model, trained once per process on the training plays by the training lab's Trainer."""
    torch.set_num_threads(1)  # small matrices: on a shared machine a second OpenMP thread mostly waits
    parts = shakespeare_parts(seed)
    spec = training_spec(steps, seed)
    device = torch.device("cpu")
    train_ids, val_ids = encode(parts["train"]), encode(parts["reference"])
    stack = build_stack(training.stack_config(spec, "pre_ln", "layernorm", 2), device=device, seed=seed)
    meter, close = training.open_meter(device)
    try:
        rec = training.Trainer(spec, device, meter).run(
            stack,
            train_ids,
            training.eval_batches(val_ids, spec, device),
            steps,
            spec.lrs[0],
            spec.warmups[0],
            seed,
            training.unigram_nats(train_ids, val_ids),
        )
    finally:
        close()
    if rec["diverged"]:
        raise SpecError(f"the demo model diverged ({rec['divergence']}): try another --seed or fewer --steps")
    stack.eval()
    how = (
        f"byte-level LM trained by the training lab: Pre-LN decoder, 2 blocks, LayerNorm, d_model {HIDDEN}, "
        f"{steps} steps of {spec.batch}×{CONTEXT} bytes of Shakespeare"
    )
    return Trained(
        stack,
        "".join(sorted(set(parts["train"]) - {"\r"})),
        steps,
        rec["final_loss"],
        rec["final_val_loss"],
        rec["unigram_nats"],
        rec["wall_s"],
        how,
    )


def batches(text: str, seed: int) -> Iterator[torch.Tensor]:
    """Non-overlapping windows of ``CONTEXT`` bytes of ``text`` in a seeded random order, ``BATCH`` at a time."""
    ids = encode(text)
    n = len(ids) // CONTEXT
    order = list(range(n))
    random.Random(seed).shuffle(order)
    for i in range(0, n - BATCH + 1, BATCH):
        yield torch.stack([ids[j * CONTEXT : (j + 1) * CONTEXT] for j in order[i : i + BATCH]])


def set_text(name: str, level: float, seed: int, model: Trained) -> str:
    """The text of one demo set (``spec.DEMO_SETS``)."""
    parts = shakespeare_parts(seed)
    if name == "heldout":
        return parts["test"]
    if name == "prose":
        return prose_text()[0]
    if name == "code":
        return code_text()[0]
    if name == "corrupt":
        return corrupt(parts["test"], level, model.alphabet, seed + 17)
    raise SpecError(f"unknown demo set {name!r}: use one of {', '.join(DEMO_SETS)}")


def demo_model(
    set: str = "profile", level: str = "0.1", steps: str = str(DEFAULT_STEPS), seed: str = "0"
) -> tuple[torch.nn.Module, Iterator[torch.Tensor]]:
    """``--model demo``: the trained demo language model and batches of one set. ``set=profile`` (the default) gives
    the reference plays then the calibration plays, as ``drift profile`` expects; heldout, prose, code and corrupt
    (with ``level``) give new data for ``drift check``."""
    try:
        n_steps, n_seed, p = int(steps), int(seed), float(level)
    except ValueError:
        raise SpecError("demo arguments steps and seed are whole numbers, level a probability") from None
    t = trained(n_steps, n_seed)
    if set == "profile":
        parts = shakespeare_parts(n_seed)
        data = _chain(batches(parts["reference"], n_seed), batches(parts["calibration"], n_seed + 1))
        return t.model, data
    return t.model, batches(set_text(set, p, n_seed, t), n_seed + 2)


def _chain(*its: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    for it in its:
        yield from it


def _nats(v: float | None) -> str:
    return "N/A" if v is None else f"{v:.2f} nats"


def run_demo(spec: DriftSpec, say: Say | None = None) -> dict[str, Any]:
    """Train, profile, calibrate, and score every set; the whole result as one JSON-ready document."""
    say = say or (lambda _m: None)
    t0 = time.perf_counter()
    parts = shakespeare_parts(spec.seed)
    say(f"training the demo model: {spec.steps} steps on {len(parts['train']):,} characters of Shakespeare …")
    t = trained(spec.steps, spec.seed)
    model = t.model
    say(f"trained in {t.seconds:.0f} s (held-out loss {_nats(t.val_loss)}, unigram {t.unigram_nats:.2f}); profiling …")
    ref = record.record_windows(
        model, batches(parts["reference"], spec.seed), spec.window_batches, spec.reference_windows
    )
    cal = record.record_windows(
        model, batches(parts["calibration"], spec.seed + 1), spec.window_batches, spec.calibration_windows
    )
    if len(ref) < spec.reference_windows or len(cal) < spec.calibration_windows:
        raise SpecError(
            f"the held-out plays give {len(ref)} reference and {len(cal)} calibration windows, fewer than asked: "
            "lower --reference-windows / --calibration-windows"
        )
    meta = {
        "model": "demo",
        "model_description": t.how,
        "window": f"{spec.window_batches} batch(es) of {BATCH}×{CONTEXT} characters",
        "heldout_plays": parts["heldout_plays"],
    }
    profile = analysis.build_profile(record.merge_windows(ref), cal, spec.alpha, spec.sample_rows, spec.seed, meta=meta)
    sets: list[dict[str, Any]] = []
    wanted = [("heldout", None), ("prose", None), ("code", None)] + [("corrupt", p) for p in spec.levels]
    for name, level in wanted:
        text = set_text(name, level or 0.0, spec.seed, t)
        limit = spec.test_windows * (HELDOUT_FACTOR if name == "heldout" else 1)
        windows = record.record_windows(model, batches(text, spec.seed + 2), spec.window_batches, limit)
        if not windows:
            say(f"{name}: too little text for one window; skipped")
            continue
        scored = [analysis.score_window(profile, w) for w in windows]
        summary = analysis.summarize(profile, scored)
        summary.update(
            set=name,
            level=level,
            chars=len(text),
            model_scores=[s["model_score"] for s in scored],
        )
        sets.append(summary)
        label = f"{name} p={level:g}" if level is not None else name
        say(f"{label:<16} {summary['windows']:>3} windows  alarm rate {summary['alarm_rate'] * 100:5.1f}%")
    heldout = next((s for s in sets if s["set"] == "heldout"), None)
    return {
        "model": t.describe(),
        "profile": profile,
        "sets": sets,
        "alpha": spec.alpha,
        "false_alarm_rate": heldout["alarm_rate"] if heldout else None,
        "false_alarm_windows": heldout["windows"] if heldout else None,
        "prose_files": prose_text()[1],
        "code_files": len(code_text()[1]),
        "seconds": time.perf_counter() - t0,
    }


def resolve(path: str, args: Mapping[str, str] | None = None) -> tuple[torch.nn.Module, Iterable[Any]]:
    """The model a lab is pointed at: ``demo`` (the drift demo's byte-level language model on held-out
    Shakespeare) or a user's import path."""
    if path == "demo":
        return demo_model(**dict(args or {}))
    return load_model(path, args)
