"""Model points: the norm implementation timed inside a `transformers` model, forward, training and a fine-tuning step.

One group is one dtype × mode of the sweep's model: one model (``measure_model.build``) serves every candidate,
which differs only in the modules hung at the model's norm sites, so the candidates share weights, inputs and
(for a step) the optimizer, and their interleaved rounds pair. Before any candidate is timed, the model with
its own norms runs once in float64 (the model converted in place and back, so an 8B slice needs no second
copy): its logits and its gradients (every parameter but the embedding and the LM head, whose gradients are
one matmul of what is checked) are the reference. Each candidate's logits and gradients are checked against
them with the two-level gate (``gate.classify``; a model rounds its activations at about
``BLOCK_ROUNDINGS`` ops per layer): wrong is never timed. After timing, one profiled call measures the norm's
share of the candidate's time (each site inside a ``norm`` range, backward charged to it as for blocks).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from ...analysis.footprint import does_not_fit
from ...catalog import BLOCK_ROUNDINGS, DTYPES, STEP_MODE
from ...measure.instruments import compile as compiling
from ...measure.instruments.memory import available_bytes, peak_increment, return_freed_memory
from ...measure.instruments.timing import Measurement
from ...measure.models.blocks import grad_errors
from ...measure.subjects.gate import Errors, Verdict, classify, errors_vs_reference
from ...measure.sweep.point import Context, measure_energy, release, sync
from ...store.records import PointResult
from ..blocks.measure import component_breakdown, failure_result, record_timing, worst_errors
from . import measure_model as M
from .spec import ModelPoint, ModelSweepSpec


def gate_note(spec: ModelSweepSpec, training: bool) -> str:
    if not training:
        return "logits checked"
    if spec.lora:
        return "logits and the LoRA adapters' gradients checked (every other weight is frozen)"
    return "logits and gradients checked: every parameter but the embedding and the LM head"


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


@dataclass
class Reference:
    """The float64 run of the model with its own norms: logits, and gradients by parameter name."""

    logits: torch.Tensor
    grads: dict[str, torch.Tensor]


@dataclass
class Group:
    """What one dtype × mode shares: the model, its own norms, the batch, the reference, compiled formulas."""

    key: tuple[str, str]
    model: torch.nn.Module
    sites: list[M.Site]
    own: M.Installation
    inputs: dict[str, torch.Tensor]
    reference: Reference | None = None
    compiled: dict[str, Any] | None = None
    optimizer: torch.optim.Optimizer | None = None  # one AdamW for every candidate of the group: see _optimizer


@dataclass
class ModelPrepared:
    point: ModelPoint
    result: PointResult
    call: Callable[[], Any]
    compiled: bool
    installation: M.Installation
    group: Group

    @contextlib.contextmanager
    def steady(self) -> Iterator[None]:
        with compiling.steady_state() if self.compiled else contextlib.nullcontext():
            yield


def _checked(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Every trained parameter but the embedding's and the LM head's, by name: the ones the gate checks."""
    ends = (model.get_input_embeddings(), model.get_output_embeddings())
    skip = {id(w) for m in ends if m is not None for w in m.parameters()}
    return {n: q for n, q in model.named_parameters() if q.requires_grad and id(q) not in skip}


def _run(model: torch.nn.Module, inputs: dict[str, torch.Tensor], training: bool) -> tuple[torch.Tensor, dict]:
    """Logits (and, training, the loss's gradients of the checked parameters) in eval mode: no dropout, so runs
    compare. The gradients come from ``autograd.grad``: the embedding's and the head's are never computed (an 8B
    slice's float64 reference would otherwise hold 8 GB of them), and nothing is left in ``.grad``."""
    model.eval()
    model.zero_grad(set_to_none=True)
    if not training:
        with torch.no_grad():
            return M.logits(model, inputs).detach(), {}
    checked = _checked(model)
    out = model(**inputs)
    found = torch.autograd.grad(out.loss, list(checked.values()), allow_unused=True)
    grads = {n: d.detach() for n, d in zip(checked, found, strict=True) if d is not None}
    return out.logits.detach(), grads


@contextlib.contextmanager
def _in_dtype(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Every floating parameter and buffer in ``dtype``, tensor by tensor, then each back to its own dtype (a
    LoRA model's float32 adapters beside its bfloat16 weights stay float32; no second copy is ever held). A
    conversion stopped part way (out of memory) restores what it had converted."""
    done: list[tuple[torch.Tensor, torch.dtype]] = []
    try:
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point() and t.dtype != dtype:
                was = t.dtype
                t.data = t.data.to(dtype)
                done.append((t, was))
        yield
    finally:
        for t, was in reversed(done):
            t.data = t.data.to(was)


def _as_float64(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}


class ModelKind:
    """Model points for ``group.measure_group``."""

    default_baseline = "rmsnorm own"
    run_kind = "models"
    # a whole model's call takes seconds on a CPU: each visit is one re-warming call and one timed call (more
    # when the visit's budget buys them); the pairs come from the rounds, not from repeats inside a visit
    visit_samples = 1
    points_own_memory = False  # a group's candidates share one model, checked once by begin_group

    def __init__(self) -> None:
        self.group: Group | None = None

    def begin_group(self, points: Sequence[ModelPoint], ctx: Context) -> str | None:
        """The previous group's model let go, then the group's peak (the most any of its points needs: the
        model, its float64 check, a candidate's step) against the memory available now."""
        self.group = None
        gc.collect()
        release(ctx.device)
        if ctx.device.type == "cpu":
            return_freed_memory()
        return does_not_fit(max(self.need_bytes(p, ctx.spec) for p in points), *available_bytes(ctx.device))

    def check(self, spec: ModelSweepSpec) -> None:
        """A config transformers cannot build is refused before any run is stored (SpecError)."""
        M.check(spec)

    def close(self) -> None:
        """The run ended: its model, reference and optimizer go (a later run in this process builds its own),
        and the host memory they held goes back to the OS, where the next run's memory check counts it."""
        self.group = None
        gc.collect()
        return_freed_memory()

    def key(self, p: ModelPoint) -> str:
        return p.key

    def need_bytes(self, p: ModelPoint, spec: ModelSweepSpec) -> int:
        """An upper estimate of the larger of two peaks.

        Checking: the weights in float64 (converted in place), the checked gradients (every layer's, none of the
        embedding's or head's), the activations in float64 with attention's scores (float64 attention takes the
        unfused path: batch × heads × seq² a layer), and, for another norm type, the group's reference still held
        while its own is made. Timing: the weights in the dtype, the reference kept (logits and gradients in
        float64), a candidate's gradients of what it trains, its activations (peft's float32 copies of the
        adapted projections' inputs beside a half-precision model), and for a step AdamW's two moments, held once
        for the group."""
        m = spec.model
        h, depth = spec.hidden, spec.depth
        f = int(m.get("intermediate_size") or 4 * h)
        vocab = int(m.get("vocab_size") or 0)
        layers = depth * (4 * h * h + 3 * h * f)
        params = layers + (1 if m.get("tie_word_embeddings") else 2) * vocab * h  # untied unless it says so
        e = DTYPES[p.dtype]
        training = p.mode != "fwd"
        kept = depth if training else 1  # layers whose activations are held at once
        acts = p.tokens * kept * (12 * h + 4 * f)
        seq = p.tokens // spec.batch
        scores = spec.batch * int(m.get("num_attention_heads") or 1) * seq * seq * kept
        logits = p.tokens * vocab
        # what a step trains: every weight, or LoRA's A and B (float32) on 7 projections a layer
        trained, te = (depth * spec.lora * (10 * h + 3 * f), 4) if spec.lora else (params, e)
        checked = min(layers, trained) if training else 0
        reference = logits * 8 + checked * 8
        checking = params * 8 + (acts + scores) * 8 + logits * 8 * (2 if training else 1) + checked * 8
        if spec.norms:
            checking += reference
        timing = params * e + reference + acts * e
        if training:
            timing += trained * te
            if spec.lora and e < 4:
                timing += p.tokens * depth * (6 * h + f) * 4
        if p.mode == STEP_MODE:
            timing += 2 * trained * te
        return int(max(checking, timing) * 1.15) + (256 << 20)

    def result(self, p: ModelPoint, ctx: Context, status: str, error: str | None) -> PointResult:
        spec: ModelSweepSpec = ctx.spec
        return PointResult(
            p.norm,
            p.impl,
            str(ctx.device),
            p.dtype,
            p.tokens,
            p.hidden,
            p.mode,
            status,
            error,
            block=spec.name,
            placement=spec.family.placement,
        )

    def failure(self, p: ModelPoint, ctx: Context, exc: BaseException) -> PointResult:
        return failure_result(self, p, ctx, exc)

    # -- the group: one model, its reference --------------------------------------------------------------
    def _group(self, p: ModelPoint, ctx: Context) -> Group:
        key = (p.dtype, p.mode)
        if self.group is not None and self.group.key == key:
            return self.group
        self.group = None
        gc.collect()
        release(ctx.device)
        spec: ModelSweepSpec = ctx.spec
        model = M.build(spec, ctx.device, _dtype(p.dtype))
        sites = M.sites(model, spec.family)
        if not sites:
            raise RuntimeError(f"no {spec.family.norm} module found in the model: nothing to swap")
        own = M.Installation(sites, [s.module for s in sites])
        group = Group(key, model, sites, own, M.batch(spec, model, ctx.device), compiled={})
        group.reference = self._reference(group, M.reference_installation(sites, spec.family), p.mode != "fwd")
        self.group = group
        return group

    @staticmethod
    def _reference(g: Group, inst: M.Installation, training: bool) -> Reference:
        """The model with ``inst``'s norms in float64 (converted in place, then back: a bfloat16 or float32
        weight survives the round trip exactly, and no second copy of the model is held)."""
        with M.installed(inst, g.own), _in_dtype(g.model, torch.float64):
            logits, grads = _run(g.model, _as_float64(g.inputs), training)
        return Reference(logits, grads)

    # -- prepare: install → gate → timed callable -------------------------------------------------------
    def prepare(self, p: ModelPoint, ctx: Context) -> ModelPrepared | PointResult:
        spec: ModelSweepSpec = ctx.spec
        g = self._group(p, ctx)
        try:
            modules = [M.implementation(s, p.norm, p.impl, spec.family, ctx.device, g.compiled) for s in g.sites]
        except M.Unsupported as why:
            return self.result(p, ctx, "skipped", str(why))
        inst = M.Installation(g.sites, modules)
        training = p.mode != "fwd"
        res = self.result(p, ctx, "ok", None)
        compiled = p.impl == "compiled"
        # another norm type computes another function: checked against itself in float64, not the model's own
        ref = g.reference if p.norm == spec.family.norm else self._reference(g, inst, training)
        with M.installed(inst, g.own):
            if compiled:
                with compiling.first_calls() as t:
                    errs = self._errors(g, ref, training)
                    sync(ctx.device)
                res.compile_s = t["compile_s"]
            else:
                errs = self._errors(g, ref, training)
            verdict = self._gate(p, spec, g, ref, errs, training)
        res.max_abs_err, res.max_rel_err, res.rel_l2_err = errs.max_abs, errs.max_rel, errs.rel_l2
        res.gate, res.gate_note, res.error_multiple = verdict.level, verdict.note, verdict.multiple
        res.extra["model"] = self._describe(spec, g, p)
        if not verdict.timed:
            res.status, res.error = "failed", f"correctness: {verdict.note}"
            return res
        call = self._call(p, g, inst)
        if compiled:  # the graphs the timed calls run, compiled now (a step's warm call skips AdamW: the
            # weights stay those every later candidate of the group is checked with)
            warm = self._call(replace(p, mode="fwdbwd"), g, inst) if p.mode == STEP_MODE else call
            with compiling.steady_state():
                warm()
                sync(ctx.device)
        return ModelPrepared(p, res, call, compiled, inst, g)

    def _errors(self, g: Group, ref: Reference, training: bool, inputs: dict | None = None) -> Errors:
        """The model's logits (and gradients) against the reference; ``inputs``: other inputs than the group's
        (the float32 fallback check's)."""
        logits, grads = _run(g.model, g.inputs if inputs is None else inputs, training)
        out = errors_vs_reference([logits], [ref.logits], ["logits"])
        if not training:
            return out
        names = [n for n in ref.grads if n in grads]
        missing = sorted(set(ref.grads) - set(grads))
        if missing:
            return Errors(float("inf"), float("inf"), float("inf"), f"d{missing[0]} (no gradient)")
        return worst_errors(out, self._grad_errors(grads, ref, names))

    def _gate(
        self, p: ModelPoint, spec: ModelSweepSpec, g: Group, ref: Reference, errs: Errors, training: bool
    ) -> Verdict:
        n = max(spec.hidden, p.tokens if training else 0)

        def fp32() -> Errors:
            floats = {k: v.float() if v.is_floating_point() else v for k, v in g.inputs.items()}
            with _in_dtype(g.model, torch.float32):
                return self._errors(g, ref, training, floats)

        return classify(errs, p.dtype, n, fp32, roundings=BLOCK_ROUNDINGS * spec.depth)

    @staticmethod
    def _grad_errors(grads: dict[str, torch.Tensor], ref: Reference, names: list[str]) -> Errors:
        """Gradient errors; one the math makes exactly zero (attention's key bias: softmax ignores a shift) is
        judged on the scale of the largest gradient (``blocks.grad_errors``)."""
        return grad_errors([grads[n] for n in names], [ref.grads[n] for n in names], [f"d{n}" for n in names])

    def _call(self, p: ModelPoint, g: Group, inst: M.Installation) -> Callable[[], Any]:
        """The timed call: the candidate hung at the sites (a no-op once it is), then the mode's work."""
        body = self._body(p, g, inst)

        def call() -> Any:
            inst.install()
            return body()

        return call

    @staticmethod
    def _body(p: ModelPoint, g: Group, inst: M.Installation) -> Callable[[], Any]:
        """Forward (eval, no grad: inference), forward+backward of the loss (train mode: dropout as in a
        fine-tune), or a whole AdamW step (the group's one optimizer: ``_optimizer``)."""
        model, inputs = g.model, g.inputs
        if p.mode == "fwd":

            def forward() -> Any:
                model.eval()
                with torch.no_grad():
                    return M.logits(model, inputs)

            return forward
        if p.mode == "fwdbwd":

            def train() -> Any:
                model.train()
                model.zero_grad(set_to_none=True)
                loss = M.loss(model, inputs)
                loss.backward()
                return loss

            return train
        opt = ModelKind._optimizer(g, inst.parameters(model))

        def step() -> Any:
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = M.loss(model, inputs)
            loss.backward()
            opt.step()
            return loss

        return step

    @staticmethod
    def _optimizer(g: Group, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The group's one AdamW (lr 1e-6, so a round's steps leave the weights the gate saw): created with the
        first candidate's parameters; a swapped-in norm type's own parameters join as a group of their own. A
        step updates the parameters that have gradients, so each candidate's step is its own and the shared
        weights' moments are held once, not once per candidate."""
        if g.optimizer is None:
            g.optimizer = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.0, foreach=True)
            return g.optimizer
        known = {id(q) for group in g.optimizer.param_groups for q in group["params"]}
        new = [q for q in params if id(q) not in known]
        if new:
            g.optimizer.add_param_group({"params": new})
        return g.optimizer

    @staticmethod
    def _describe(spec: ModelSweepSpec, g: Group, p: ModelPoint) -> dict[str, Any]:
        kinds = sorted({type(s.module).__name__ for s in g.sites})
        return {
            "name": spec.name,
            "model_type": spec.model["model_type"],
            "layers": spec.depth,
            "layers_of": int(spec.model[spec.family.layer_key]),
            "parameters": sum(q.numel() for q in g.model.parameters()),
            "trained_parameters": sum(q.numel() for q in g.model.parameters() if q.requires_grad),
            "lora": spec.lora or None,
            "tuning": spec.tuning,
            "norm_modules": len(g.sites),
            "norm_classes": kinds,
            "batch": spec.batch,
            "seq_len": spec.seq_len if spec.family.head != "image" else None,
            "head": spec.family.head,
            "attention": getattr(g.model.config, "_attn_implementation", None),
            "gate": gate_note(spec, p.mode != "fwd"),
        }

    # -- finish: stats → the norm's share → memory → energy ---------------------------------------------
    def finish(
        self, prep: ModelPrepared, m: Measurement, ctx: Context, sensors: dict | None, unstable: str | None
    ) -> PointResult:
        res = record_timing(prep.result, m, ctx, sensors, unstable)
        s = m.stats
        res.extra["components"] = norm_share(prep, ctx, s.p50_us)
        res.extra["tokens_per_s"] = prep.point.tokens / (s.p50_us * 1e-6) if s.p50_us else None
        peak = peak_increment(prep.call, ctx.device)
        res.peak_bytes, res.peak_note = peak.value, peak.reason
        measure_energy(prep.point.tokens, ctx, prep.call, res)
        return res


class _Ranged(torch.nn.Module):
    """A site's module inside a ``norm`` profiler range, for the share breakdown."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.profiler.record_function("norm"):
            return self.inner(x)


@dataclass
class _Shim:
    call: Callable[[], Any]
    compiled: bool = False


def norm_share(prep: ModelPrepared, ctx: Context, p50_us: float) -> dict[str, Any]:
    """The norm's share of the candidate's time from one profiled session (``blocks.component_breakdown``), each
    site's module inside a ``norm`` range; backward work is charged to the range whose forward created it."""
    ranged = M.Installation(prep.installation.sites, [_Ranged(mod) for mod in prep.installation.modules])
    body = ModelKind._body(prep.point, prep.group, prep.installation)

    def call() -> Any:
        ranged.install()
        try:
            return body()
        finally:
            prep.installation.install()

    with prep.steady():
        return component_breakdown(_Shim(call), ctx, p50_us)  # type: ignore[arg-type]


MODELS = ModelKind()
