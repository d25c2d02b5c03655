"""The training-stability lab: small byte-level language models trained on a real corpus, and what they record.

A grid (``spec.TrainingSpec``) is one store run of kind "training". Each unit of work
(``TrainingSpec.cells``) ends in one artifact ``cell/<key>``, committed as soon as the cell finishes,
so a killed grid loses at most the cell in progress: ``run_grid(..., resume=RUN_ID)`` starts a new
run that carries over the finished cells and trains only the rest. SIGTERM or Ctrl-C marks the run
cancelled and keeps what finished, as the kernel runner does.

What a training cell records: training loss per step, validation loss every ``eval_every`` steps
(fixed held-out windows, the same for every cell), and every ``log_every`` steps the global gradient
norm (before clipping), the gradient norms of each layer's attention and FFN output projections,
their update-to-weight ratios ‖ΔW‖/‖W‖, and each block's largest |activation|; divergence (a NaN/Inf
loss, or a loss above the first loss + margin) with its step; wall time, tokens/s, and energy where a
counter exists (N/A with the reason otherwise). Training is deterministic on CPU for a seed: the
weights, the batches and the validation windows all come from seeded generators.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ... import corpus
from ...measure.instruments import energy
from ...measure.machine import provenance
from ...measure.machine.devices import resolve_device
from ...measure.models.blocks import BlockConfig
from ...measure.models.stack import LMStack, StackConfig, blocks_of, build_stack, make_optimizer
from ...runs import Outcome, checkpoint, stored_run
from ...spec import SpecError
from ...store import Store
from .spec import VOCAB, Cell, TrainingSpec, norm_impl

ARTIFACT_PREFIX = "cell/"
EVAL_SEED = 0x5EED  # the validation windows: one fixed set for every cell of every grid on a corpus
PROGRESS_EVERY_S = 1.0
WAIT_S = 1.0  # the longest wait for a worker's cell between looks at the cancel state

# (cells done, cells total, cell, step, steps, loss or None)
OnStep = Callable[[int, int, Cell, int, int, float | None], None]  # cells done, cells, the cell, step, steps, loss


# ---- the corpus as byte tensors ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TextData:
    """Byte ids for pretraining (train/validation split by document) and for fine-tuning on one document."""

    train: torch.Tensor
    val: torch.Tensor
    unigram_nats: float  # validation loss of predicting bytes by their training frequency alone
    ft_train: torch.Tensor | None
    ft_val: torch.Tensor | None
    ft_unigram_nats: float | None
    description: dict[str, Any]


def _bytes(docs: list[corpus.Document]) -> torch.Tensor:
    raw = b"\n\n".join(d.text.encode("utf-8") for d in docs)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.int64)


def unigram_nats(train: torch.Tensor, val: torch.Tensor) -> float:
    """Cross-entropy of ``val`` under ``train``'s byte frequencies (add-one smoothed): the loss a model
    reaches by learning letter frequencies and nothing else. A run that ends near it did not train."""
    q = (torch.bincount(train, minlength=VOCAB).double() + 1.0).div_(train.numel() + VOCAB)
    p = torch.bincount(val, minlength=VOCAB).double().div_(val.numel())
    return float(-(p * q.log()).sum())


def load_text(spec: TrainingSpec) -> TextData:
    """The spec's corpus as byte tensors; refused with one line (SpecError) when it cannot serve the grid."""
    try:
        docs = corpus.load_files(spec.corpus) if spec.corpus else corpus.shakespeare()
    except corpus.CorpusError as e:
        raise SpecError(str(e)) from None
    ft_doc = None
    if spec.finetune_document is not None:
        names = [d.name for d in docs]
        if spec.finetune_document not in names:
            shown = ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
            raise SpecError(
                f"fine-tuning document {spec.finetune_document!r} is not in the corpus ({shown}): "
                "name one of its files' stems, or skip fine-tuning (--finetune-doc none; null in a spec)"
            )
        ft_doc = docs[names.index(spec.finetune_document)]
        docs = [d for d in docs if d is not ft_doc]
    if len(docs) < 2:
        extra = " besides the fine-tuning document" if ft_doc else ""
        raise SpecError(f"the corpus needs at least two documents{extra} to split train/validation by document")
    train_docs, val_docs = corpus.split_by_document(docs, spec.val_fraction, seed=0)
    train, val = _bytes(train_docs), _bytes(val_docs)
    need = spec.seq_len + 2
    for name, t in (("training", train), ("validation", val)):
        if t.numel() < need:
            raise SpecError(f"the {name} text has {t.numel()} bytes, fewer than seq_len + 2 = {need}: add text")
    ft_train = ft_val = None
    ft_unigram = None
    if ft_doc is not None:
        whole = _bytes([ft_doc])
        cut = int(whole.numel() * 0.9)
        ft_train, ft_val = whole[:cut], whole[cut:]
        if ft_val.numel() < need:
            raise SpecError(f"fine-tuning document {ft_doc.name!r} is too short for seq_len {spec.seq_len}")
        ft_unigram = unigram_nats(ft_train, ft_val)
    description = {
        "source": "files" if spec.corpus else "shakespeare",
        "train_documents": sorted(d.name for d in train_docs),
        "val_documents": sorted(d.name for d in val_docs),
        "train_bytes": int(train.numel()),
        "val_bytes": int(val.numel()),
        "unigram_nats": unigram_nats(train, val),
        "finetune_document": ft_doc.name if ft_doc else None,
        "finetune_train_bytes": int(ft_train.numel()) if ft_train is not None else None,
        "finetune_val_bytes": int(ft_val.numel()) if ft_val is not None else None,
        "finetune_unigram_nats": ft_unigram,
        "finetune_split": "first 90% of the document for fine-tuning, last 10% for validation",
    }
    return TextData(train, val, description["unigram_nats"], ft_train, ft_val, ft_unigram, description)


def windows(
    data: torch.Tensor, gen: torch.Generator, batch: int, seq: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random windows of ``seq`` + 1 bytes: inputs and next-byte targets."""
    offsets = torch.randint(0, data.numel() - seq - 1, (batch,), generator=gen)
    w = data[offsets[:, None] + torch.arange(seq + 1)]
    return w[:, :-1].to(device), w[:, 1:].to(device)


def eval_batches(data: torch.Tensor, spec: TrainingSpec, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(EVAL_SEED)
    return [windows(data, gen, spec.batch, spec.seq_len, device) for _ in range(spec.eval_batches)]


# ---- the model -----------------------------------------------------------------------------------------------
def stack_config(spec: TrainingSpec, placement: str, norm: str, depth: int) -> StackConfig:
    block = BlockConfig(
        family=spec.family,
        norm=norm,
        placement=placement,
        impl=norm_impl(norm),
        hidden=spec.hidden,
        heads=spec.heads,
        kv_heads=spec.kv_heads,
        ffn=spec.ffn,
        ranges=False,
    )
    return StackConfig(block, depth=depth, vocab=VOCAB, max_seq=max(spec.seq_len, 1))


def lr_at(step: int, peak: float, warmup: int, steps: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 10% of the peak at the last step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _mean(values: list[float | None]) -> float | None:
    """The mean, or None when any value is missing (a non-finite gradient is not averaged away)."""
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None) / len(values)


def _layer_weights(stack: LMStack) -> dict[str, list[torch.nn.Parameter]]:
    blocks = list(blocks_of(stack))
    return {"attn_out": [b.attn_out_proj.weight for b in blocks], "ffn_out": [b.ffn_out_proj.weight for b in blocks]}


def _grad_norms(weights: list[torch.nn.Parameter]) -> list[float | None]:
    return [_finite(float(w.grad.norm())) if w.grad is not None else None for w in weights]


@torch.no_grad()
def evaluate(stack: LMStack, batches: list[tuple[torch.Tensor, ...]], autocast: Any) -> float | None:
    was = stack.training
    stack.eval()
    with autocast():
        total = sum(float(stack.loss(x, y)) for x, y in batches)
    stack.train(was)
    return _finite(total / len(batches))


@dataclass
class Meter:
    """Energy around a cell: a counter when the machine has one, else the reason."""

    meter: Any
    method: str | None
    reason: str | None

    def measure(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        return _energy_window(self)


@contextlib.contextmanager
def _energy_window(m: Meter) -> Iterator[dict[str, Any]]:
    out: dict[str, Any] = {"energy_j": None, "energy_method": m.method, "energy_reason": m.reason}
    token = m.meter.begin() if m.reason is None else None
    yield out
    if m.reason is None:
        try:
            out["energy_j"] = m.meter.end(token)
        except RuntimeError as e:  # too few samples or a counter that stopped answering
            out["energy_reason"] = str(e)
            out["energy_method"] = None


@dataclass
class Trainer:
    """Trains one stack on one text; ``run`` returns the record of what happened."""

    spec: TrainingSpec
    device: torch.device
    meter: Meter
    report: Callable[[int, int, float | None], None] = lambda step, steps, loss: None
    autocast_dtype: torch.dtype | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def run(
        self,
        stack: LMStack,
        data: torch.Tensor,
        val: list[tuple[torch.Tensor, ...]],
        steps: int,
        lr: float,
        warmup: int,
        seed: int,
        unigram: float,
    ) -> dict[str, Any]:
        spec = self.spec
        opt = make_optimizer(stack, lr, spec.weight_decay, (spec.beta1, spec.beta2))
        gen = torch.Generator().manual_seed(1_000_003 * (seed + 1))  # batches: the same order for every placement
        weights = _layer_weights(stack)
        params = [p for p in stack.parameters()]
        clip = spec.clip_norm if spec.clip_norm is not None else math.inf
        losses: list[float | None] = []
        val_curve: list[list[float | None]] = []
        log: dict[str, list[Any]] = {
            "step": [],
            "lr": [],
            "grad_norm": [],
            "attn_out_grad_norm": [],
            "ffn_out_grad_norm": [],
            "attn_out_update_ratio": [],
            "ffn_out_update_ratio": [],
            "act_max": [],
        }
        diverged_step: int | None = None
        divergence: str | None = None
        initial: float | None = None
        stack.train()
        with self.meter.measure() as joules:
            t0 = time.perf_counter()
            for step in range(steps):
                rate = lr_at(step, lr, warmup, steps)
                for g in opt.param_groups:
                    g["lr"] = rate
                x, y = windows(data, gen, spec.batch, spec.seq_len, self.device)
                logging = step % spec.log_every == 0 or step == steps - 1
                acts: list[torch.Tensor] | None = [] if logging else None
                opt.zero_grad(set_to_none=True)
                with self.autocast():
                    loss = stack.loss(x, y, acts)
                loss.backward()
                if logging:
                    g_attn, g_ffn = _grad_norms(weights["attn_out"]), _grad_norms(weights["ffn_out"])
                    before = {k: [w.detach().clone() for w in ws] for k, ws in weights.items()}
                norm = float(torch.nn.utils.clip_grad_norm_(params, clip, foreach=True))
                opt.step()
                value = float(loss.detach())
                losses.append(_finite(value))
                if initial is None:
                    initial = value
                if logging:
                    log["step"].append(step)
                    log["lr"].append(rate)
                    log["grad_norm"].append(_finite(norm))
                    log["attn_out_grad_norm"].append(g_attn)
                    log["ffn_out_grad_norm"].append(g_ffn)
                    for k, ws in weights.items():
                        log[f"{k}_update_ratio"].append(
                            [_finite(float((w.detach() - b).norm() / b.norm())) for w, b in zip(ws, before[k])]
                        )
                    log["act_max"].append([_finite(float(a)) for a in acts or []])
                if not math.isfinite(value):
                    diverged_step, divergence = step, f"loss became {value} at step {step}"
                elif value > initial + spec.divergence_margin:
                    diverged_step = step
                    limit = f"the initial {initial:.3f} + {spec.divergence_margin:g}"
                    divergence = f"loss {value:.3f} exceeded {limit} at step {step}"
                if diverged_step is not None:
                    break
                if (step + 1) % spec.eval_every == 0 or step == steps - 1:
                    val_curve.append([step + 1, evaluate(stack, val, self.autocast)])
                self.report(step + 1, steps, value)
                checkpoint()  # a cancel stops the cell between steps
            wall_s = time.perf_counter() - t0
        done = len(losses)
        final_val = val_curve[-1][1] if val_curve and diverged_step is None else None
        tail = [v for v in losses[-max(1, min(20, done // 10)) :] if v is not None]
        trained = final_val is not None and final_val < unigram - spec.learned_margin
        return {
            "lr": lr,
            "warmup": warmup,
            "steps": steps,
            "steps_done": done,
            "loss": losses,
            "val": val_curve,
            "log": log,
            "initial_loss": _finite(initial) if initial is not None else None,
            "final_loss": (sum(tail) / len(tail)) if tail and diverged_step is None else None,
            "final_val_loss": final_val,
            "final_val_reason": None if final_val is not None else divergence or "no validation pass",
            "unigram_nats": unigram,
            "diverged": diverged_step is not None,
            "diverged_step": diverged_step,
            "divergence": divergence,
            "trained": trained,
            "wall_s": wall_s,
            "tokens_per_s": done * spec.batch * spec.seq_len / wall_s if wall_s > 0 else None,
            **joules,
        }


# ---- cells --------------------------------------------------------------------------------------------------
def init_profile(spec: TrainingSpec, cell: Cell, data: TextData, device: torch.device) -> dict[str, Any]:
    """Gradient norms by layer at initialisation (Xiong et al. 2020, Fig. 3): ‖∇W‖ of each layer's FFN and
    attention output projection on the first training batches, averaged over ``init_seeds`` fresh models."""
    cfg = stack_config(spec, cell.placement, cell.norm, cell.depth)
    per_seed: dict[str, list[list[float | None]]] = {"ffn_out": [], "attn_out": []}
    t0 = time.perf_counter()
    for seed in spec.init_seeds:
        stack = build_stack(cfg, device=device, seed=seed)
        gen = torch.Generator().manual_seed(1_000_003 * (seed + 1))
        x, y = windows(data.train, gen, spec.batch, spec.seq_len, device)
        stack.zero_grad(set_to_none=True)
        stack.loss(x, y).backward()
        weights = _layer_weights(stack)
        for k in per_seed:
            per_seed[k].append(_grad_norms(weights[k]))
    mean = {k: [_mean([row[i] for row in rows]) for i in range(cell.depth)] for k, rows in per_seed.items()}
    return {
        "depth": cell.depth,
        "seeds": list(spec.init_seeds),
        "ffn_out_grad_norm": mean["ffn_out"],
        "attn_out_grad_norm": mean["attn_out"],
        "ffn_out_grad_norm_by_seed": per_seed["ffn_out"],
        "attn_out_grad_norm_by_seed": per_seed["attn_out"],
        "wall_s": time.perf_counter() - t0,
    }


def train_cell(spec: TrainingSpec, cell: Cell, data: TextData, trainer: Trainer) -> dict[str, Any]:
    assert cell.lr is not None and cell.warmup is not None
    stack = build_stack(
        stack_config(spec, cell.placement, cell.norm, cell.depth), device=trainer.device, seed=cell.seed
    )
    val = eval_batches(data.val, spec, trainer.device)
    return trainer.run(stack, data.train, val, spec.steps, cell.lr, cell.warmup, cell.seed, data.unigram_nats)


def finetune_cell(spec: TrainingSpec, cell: Cell, data: TextData, trainer: Trainer) -> dict[str, Any]:
    """Pretrain on the corpus without the document, then fine-tune a copy on the document at each lr."""
    assert data.ft_train is not None and data.ft_val is not None and data.ft_unigram_nats is not None
    stack = build_stack(
        stack_config(spec, cell.placement, cell.norm, cell.depth), device=trainer.device, seed=cell.seed
    )
    val = eval_batches(data.val, spec, trainer.device)
    steps = spec.pretrain_steps
    pre = trainer.run(
        stack, data.train, val, steps, spec.pretrain_lr, spec.pretrain_warmup, cell.seed, data.unigram_nats
    )
    out: dict[str, Any] = {"pretrain": pre, "finetune": []}
    if pre["diverged"]:
        out["finetune_reason"] = "pretraining diverged: nothing to fine-tune"
        return out
    state = {k: v.detach().clone() for k, v in stack.state_dict().items()}
    ft_val = eval_batches(data.ft_val, spec, trainer.device)
    out["pretrained_finetune_val_loss"] = evaluate(stack, ft_val, trainer.autocast)
    for lr in spec.finetune_lrs:
        stack.load_state_dict(state)
        out["finetune"].append(
            trainer.run(
                stack,
                data.ft_train,
                ft_val,
                spec.finetune_steps,
                lr,
                spec.finetune_warmup,
                cell.seed,
                data.ft_unigram_nats,
            )
        )
    return out


def run_cell(spec: TrainingSpec, cell: Cell, data: TextData, trainer: Trainer) -> dict[str, Any]:
    """One cell's artifact: its identity, the model's shape and what it recorded."""
    if cell.kind == "init":
        result = init_profile(spec, cell, data, trainer.device)
    elif cell.kind == "train":
        result = train_cell(spec, cell, data, trainer)
    else:
        result = finetune_cell(spec, cell, data, trainer)
    return {
        "cell": cell.to_dict(),
        "impl": norm_impl(cell.norm),
        "family": spec.family,
        "hidden": spec.hidden,
        "heads": spec.heads,
        "tokens_per_step": spec.batch * spec.seq_len,
        "finished_pid": os.getpid(),
        **result,
    }


# ---- the grid --------------------------------------------------------------------------------------------------
def open_meter(device: torch.device) -> tuple[Meter, Callable[[], None]]:
    """The best honest energy meter for the device (energy.choose_meter), and how to close it."""
    from ...sensors.host import Rapl
    from ...sensors.nvml import Nvml, gpu_for_torch_device

    nvml = Nvml() if device.type == "cuda" else None
    gpu = gpu_for_torch_device(nvml, device.index or 0) if nvml is not None and nvml.available else None
    m = energy.choose_meter(device.type, gpu, None, Rapl())
    reason = m.reason
    return Meter(m, None if reason else m.method, reason), (nvml.close if nvml is not None else lambda: None)


@dataclass
class GridOutcome(Outcome):
    """How a grid ended: cells finished (carried over included) of the grid's cells."""

    cells_done: int = 0
    cells_total: int = 0
    carried: int = 0  # cells carried over from the resumed run


def resumable(store: Store, spec: TrainingSpec) -> dict[str, Any] | None:
    """The newest stopped (interrupted or cancelled) run of this very spec not yet resumed, if any."""
    store.mark_interrupted()
    for r in store.list_runs(kind="training"):
        if r["status"] in ("interrupted", "cancelled") and not (r.get("extra") or {}).get("resumed_in"):
            try:
                same = TrainingSpec.from_dict(r["spec"]).same_grid(spec)
            except (SpecError, TypeError):
                same = False
            if same:
                return r
    return None


def preflight(spec: TrainingSpec) -> tuple[torch.device, TextData]:
    """Every check that can refuse a grid, before the store is touched (raises SpecError). A grid on a Ray
    cluster trains on the cluster's devices, not this machine's: its own are not asked for."""
    if spec.ray:
        from ...cluster import reach

        reach(spec.ray)  # an address that does not answer: refused here, not after minutes of Ray's retries
    device = torch.device(spec.device) if spec.ray else resolve_device(spec.device)
    if spec.dtype == "bfloat16" and device.type == "cpu":
        raise SpecError("bfloat16 training is for GPUs here: use --dtype float32 on the CPU")
    return device, load_text(spec)


# ---- parallel workers (CPU): each trains whole cells; only the parent writes to the store --------------------
_WORKER: dict[str, Any] = {}


def _worker_init(spec_doc: dict[str, Any], data: TextData, threads: int, energy_reason: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool
    torch.set_num_threads(threads)
    spec = TrainingSpec.from_dict(spec_doc)
    meter = Meter(energy.NullMeter(energy_reason), None, energy_reason)
    _WORKER.update(spec=spec, data=data, trainer=Trainer(spec, torch.device("cpu"), meter))


def _worker_cell(cell_doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    cell = Cell(**{**cell_doc, "groups": tuple(cell_doc["groups"])})
    return cell.key, run_cell(_WORKER["spec"], cell, _WORKER["data"], _WORKER["trainer"])


def _parallel(
    spec: TrainingSpec, data: TextData, pending: list[Cell], threads: int, energy_reason: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Finished cells as they come from ``spec.workers`` processes (spawned: no torch state is forked)."""
    ctx = multiprocessing.get_context("spawn")
    args = (spec.to_dict(), data, threads, energy_reason)
    pool = ctx.Pool(min(spec.workers, len(pending)), _worker_init, args)
    try:
        results = pool.imap_unordered(_worker_cell, [c.to_dict() for c in pending])
        for _ in pending:
            while True:  # waits of WAIT_S: a cancel is seen between them, not only when a cell ends
                checkpoint()
                try:
                    got = results.next(timeout=WAIT_S)
                except multiprocessing.TimeoutError:
                    continue
                break
            yield got
        pool.close()
        pool.join()
    finally:
        pool.terminate()  # cancel or failure: the runs in progress are dropped, the finished ones are stored


# ---- a Ray cluster: each cell one task; only this process (the driver) writes to the store ------------------
RAY_RETRIES = 1  # a cell whose worker died is trained again this many times, then left for the next resume
RAY_CPU_ENERGY = (
    "cells on a Ray cluster share their node's CPU package counter: train on one machine with workers 1 to "
    "measure each run"
)


def _ray_cell(spec_doc: dict[str, Any], data: TextData, cell_doc: dict[str, Any], threads: int) -> tuple[str, Any]:
    """One cell trained in a Ray worker (its GPU alone visible on CUDA, so cuda:0); the cell's artifact back,
    with the node and host that trained it."""
    import socket

    import ray

    torch.set_num_threads(threads)
    spec = TrainingSpec.from_dict(spec_doc)
    cell = Cell(**{**cell_doc, "groups": tuple(cell_doc["groups"])})
    if spec.device_type == "cuda":
        device = torch.device("cuda:0")
        torch.cuda.set_device(device)
        meter, close = open_meter(device)
    else:
        device = torch.device("cpu")
        meter, close = Meter(energy.NullMeter(RAY_CPU_ENERGY), None, RAY_CPU_ENERGY), lambda: None
    autocast = torch.bfloat16 if spec.dtype == "bfloat16" else None
    try:
        doc = run_cell(spec, cell, data, Trainer(spec, device, meter, autocast_dtype=autocast))
    finally:
        close()
    doc["ray_node"] = ray.get_runtime_context().get_node_id()[:12]
    doc["ray_host"] = socket.gethostname()
    return cell.key, doc


def _ray_options(ray: Any, spec: TrainingSpec, threads: int) -> dict[str, Any]:
    """What one cell holds while it trains: a GPU on CUDA, ``threads`` CPUs on CPU; refused when no node of the
    cluster has it (Ray would keep the cells waiting forever)."""
    from ...cluster import slots

    found = slots(ray, spec.device_type)  # SpecError when the cluster has no such device
    if spec.device_type == "cuda":
        return {"num_gpus": 1, "num_cpus": 1}
    most = max(int((n.get("Resources") or {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive"))
    if threads > most:
        raise SpecError(
            f"--threads {threads}: no node of the Ray cluster has more than {most} CPU(s) ({len(found)} node(s)); "
            f"give --threads {most} or less"
        )
    return {"num_cpus": threads}


def _on_ray(
    ray: Any, spec: TrainingSpec, data: TextData, pending: list[Cell], threads: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Finished cells as they come from the cluster: every pending cell a task, queued by Ray until a device
    is free; a worker that died is retried once (``RAY_RETRIES``). A cell that failed (an error in it, or its
    worker lost twice) is named when the others are done; the grid's next resume trains it. Closed early (a
    cancel, a failure), every task still queued or training is cancelled."""
    from ...measure.sweep.fleet import why

    task = ray.remote(max_retries=RAY_RETRIES, retry_exceptions=False)(_ray_cell)
    task = task.options(**_ray_options(ray, spec, threads))
    shared = ray.put(data)
    refs = {task.remote(spec.to_dict(), shared, c.to_dict(), threads): c for c in pending}
    failed: list[str] = []
    try:
        while refs:
            checkpoint()  # between turns of ray.wait: a cancel is acted on here, never inside Ray
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=WAIT_S)
            for ref in ready:
                cell = refs.pop(ref)
                try:
                    got = ray.get(ref)
                except Exception as e:  # the task's own error, or its worker lost RAY_RETRIES + 1 times
                    failed.append(f"{cell.key}: {why(e)}")
                    continue
                yield got
    finally:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
    if failed:
        shown = "; ".join(failed[:3]) + (f"; and {len(failed) - 3} more" if len(failed) > 3 else "")
        raise RuntimeError(
            f"{len(failed)} cell(s) not trained on the cluster ({shown}): the others are stored; run the grid "
            "again to train these"
        )


def run_grid(
    spec: TrainingSpec,
    store: Store,
    progress: OnStep | None = None,
    resume: int | None = None,
    prepared: tuple[torch.device, TextData] | None = None,
) -> GridOutcome:
    """Train every cell of ``spec`` not already finished in run ``resume``; one artifact per finished cell."""
    device, data = prepared or preflight(spec)
    old = None
    if resume is not None:
        old = store.get_run(resume)
        if old.get("kind") != "training":
            raise SpecError(f"run {resume} is not a training run: resume a run listed by `python -m profilers runs`")
        if old["status"] == "running":
            raise SpecError(f"run {resume} is still running: wait for it or cancel it before resuming")
        if not TrainingSpec.from_dict(old["spec"]).same_grid(spec):
            raise SpecError(f"run {resume} was a different grid: resume it with its own spec (omit --spec)")
    cells = spec.cells()
    ray = None
    if spec.ray:
        from ... import cluster

        ray = cluster.connect(spec.ray)  # SpecError, before the run is created, when there is none
        threads = spec.threads or 1
        try:
            options = _ray_options(ray, spec, threads)
            nodes = cluster.nodes(ray)
        except BaseException:
            ray.shutdown()
            raise
        meter = Meter(energy.NullMeter(RAY_CPU_ENERGY), None, RAY_CPU_ENERGY)
        close_meter = ray.shutdown
        machine = provenance.machine("cpu")  # this driver's; each cell names the node that trained it
    else:
        threads = spec.threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
        meter, close_meter = open_meter(device)
        machine = provenance.machine(spec.device)
    run_id = store.create_run(spec, machine, provenance.versions(), len(cells), kind="training")
    carried = 0
    if old is not None:
        for name, doc in store.artifacts(old["id"], ARTIFACT_PREFIX).items():
            store.put_artifact(run_id, name, doc)
            carried += 1
        store.update_run(old["id"], extra={**(old.get("extra") or {}), "resumed_in": run_id})
    store.update_run(
        run_id,
        extra={
            "resumed_from": old["id"] if old else None,
            "threads": threads,
            "workers": spec.workers,
            "energy_method": meter.method if spec.workers == 1 and not spec.ray else None,
            "energy_reason": meter.reason if not (spec.ray and spec.device_type == "cuda") else None,
            **({"ray": {"address": spec.ray, "task": options, "nodes": nodes}} if ray is not None else {}),
        },
    )
    store.put_artifact(run_id, "corpus", data.description)
    done = set(store.artifacts(run_id, ARTIFACT_PREFIX))
    outcome = GridOutcome(run_id, cells_done=len(done), cells_total=len(cells), carried=carried)
    autocast = torch.bfloat16 if spec.dtype == "bfloat16" else None
    last_write = [0.0]
    by_key = {c.key: c for c in cells}
    pending = [c for c in cells if ARTIFACT_PREFIX + c.key not in done]

    def commit(key: str, doc: dict[str, Any]) -> None:
        doc["workers"] = spec.workers
        store.put_artifact(run_id, ARTIFACT_PREFIX + key, doc)
        outcome.cells_done += 1
        if progress:
            progress(outcome.cells_done, len(cells), by_key[key], -1, -1, None)

    with stored_run(store, outcome), contextlib.ExitStack() as closing:
        closing.callback(close_meter)
        if ray is not None:
            store.put_artifact(run_id, "progress", {"cell": None, "cells_done": outcome.cells_done})
            with contextlib.closing(_on_ray(ray, spec, data, pending, threads)) as results:
                for key, doc in results:
                    commit(key, doc)
                    done_doc = {"cell": key, "finished": True, "cells_done": outcome.cells_done}
                    store.put_artifact(run_id, "progress", {**done_doc, "node": doc.get("ray_host")})
        elif spec.workers > 1 and len(pending) > 1:
            store.put_artifact(run_id, "progress", {"cell": None, "cells_done": outcome.cells_done})
            reason = meter.reason or (
                "parallel runs share the CPU package's energy counter: train with workers 1 to measure each run"
            )
            with contextlib.closing(_parallel(spec, data, pending, threads, reason)) as results:
                for key, doc in results:
                    commit(key, doc)
                    done_doc = {"cell": key, "finished": True, "cells_done": outcome.cells_done}
                    store.put_artifact(run_id, "progress", done_doc)
        else:
            for cell in pending:
                checkpoint()  # a cancel stops the grid between cells (an init cell takes no steps)

                def report(step: int, steps: int, loss: float | None, cell: Cell = cell) -> None:
                    if progress:
                        progress(outcome.cells_done, len(cells), cell, step, steps, loss)
                    now = time.monotonic()
                    if now - last_write[0] >= PROGRESS_EVERY_S or step == steps:
                        last_write[0] = now
                        doc = {"cell": cell.key, "step": step, "steps": steps, "loss": loss}
                        store.put_artifact(run_id, "progress", {**doc, "cells_done": outcome.cells_done})

                trainer = Trainer(spec, device, meter, report, autocast)
                report(0, 1, None)
                commit(cell.key, run_cell(spec, cell, data, trainer))
    return outcome
