"""The numerics lab's measurements: each norm × dtype × eps × input family × implementation against float64.

Why: reduced precision turns a small denominator into a division by zero. In
fp16, eps = 1e-12 rounds to 0, so a constant row (variance exactly 0) gives
(x − mean)·rsqrt(0 + 0) = 0·∞ = NaN (pytorch#41527); |x| > 256 makes x² overflow
fp16's 65504. Each cell stores the error against a float64 reference computed on
the *same stored tensors* (input, parameters and running statistics as held in
the dtype, exact eps), so the error is the layer's, not the storage's.

Implementations (``spec.NUMERICS_IMPLS``):
- ``eager``: every op in the dtype, eps held in the dtype. fp8 has storage and
  casts in torch but no arithmetic kernels on CPU, so fp8 ops run in fp32 and
  every result is rounded to fp8 through torch's own cast (said in the record
  as ``arithmetic: emulated``);
- ``upcast``: statistics in fp32 from the stored input, output rounded to the dtype;
- ``native``: torch's fused operator on tensors of the dtype (it may upcast inside).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ...catalog import VARIANTS as CATALOG
from ...measure.machine.devices import resolve_device
from ...runs import CANCELLED_BY_USER, Outcome, checkpoint, stored_run
from ...store import Store
from .spec import DEMO_MODEL, INPUTS, RECORDED, NumericsSpec

Tensor = torch.Tensor
DYT_ALPHA = 0.5
CONSTANTS = (0.1, 1.0, 3.0, -7.5)  # 0.1 is not representable in binary: the mean of its copies may round


# -- dtypes -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arith:
    """How a dtype's arithmetic runs: in the dtype itself, or in fp32 with every result rounded to it."""

    name: str
    dtype: torch.dtype | None  # None: torch lacks this dtype (rounded by software, emulated)
    compute: torch.dtype
    emulated: bool

    def q(self, t: Tensor) -> Tensor:
        """Round a result to the dtype (a no-op when the ops already run in it)."""
        if not self.emulated:
            return t
        if self.dtype is not None:
            return t.to(self.dtype).to(self.compute)
        return round_float8(t, self.name)

    def store(self, x64: Tensor) -> Tensor:
        """A float64 tensor as held in the dtype, in the compute dtype."""
        return self.q(x64.to(self.compute)) if self.emulated else x64.to(self.compute)


# (mantissa bits, smallest normal exponent, largest finite value) of the fp8 formats, for torch without them
_FP8_FORMATS = {"float8_e4m3fn": (3, -6, 448.0), "float8_e5m2": (2, -14, 57344.0)}


def round_float8(t: Tensor, name: str) -> Tensor:
    """Software round-to-nearest-even to an fp8 format, used only where torch has no such dtype
    (out-of-range values saturate for e4m3fn, become ±inf for e5m2, as torch's casts do)."""
    mant, emin, vmax = _FP8_FORMATS[name]
    x = t.to(torch.float32)
    mag = x.abs()
    exp = torch.floor(torch.log2(torch.where(mag > 0, mag, torch.ones_like(mag))))
    exp = torch.clamp(exp, min=emin)
    step = torch.pow(2.0, exp - mant)
    r = torch.round(x / step) * step  # torch.round is round-half-to-even
    over = r.abs() > vmax
    if name == "float8_e4m3fn":
        r = torch.where(over, torch.sign(r) * vmax, r)
    else:
        r = torch.where(over, torch.sign(r) * math.inf, r)
    return torch.where(torch.isnan(x), x, r)


def arith(name: str) -> Arith:
    dt = getattr(torch, name, None)
    if name in ("float32", "bfloat16", "float16"):
        return Arith(name, dt, dt, False)
    return Arith(name, dt if isinstance(dt, torch.dtype) else None, torch.float32, True)


def dtype_facts(name: str) -> dict[str, Any]:
    """What the dtype can hold (torch.finfo), and how the lab computes in it."""
    a = arith(name)
    if a.dtype is not None:
        fi = torch.finfo(a.dtype)
        max_v, normal, eps, bits = float(fi.max), float(fi.smallest_normal), float(fi.eps), fi.bits
    else:
        mant, emin, vmax = _FP8_FORMATS[name]
        max_v, normal, eps, bits = vmax, 2.0**emin, 2.0**-mant, 8
    if not a.emulated:
        how = f"torch's {name} kernels on this device"
    elif a.dtype is not None:
        how = f"emulated: fp32 ops, every result rounded to {name} by torch's cast (torch has no {name} arithmetic)"
    else:
        how = f"emulated: fp32 ops, every result rounded to {name} in software (this torch has no {name} dtype)"
    return {
        "dtype": name,
        "bits": bits,
        "max": max_v,
        "smallest_normal": normal,
        "smallest_subnormal": normal * eps,
        "machine_eps": eps,
        "arithmetic": how,
        "emulated": a.emulated,
        "torch_dtype": a.dtype is not None,
    }


def eps_facts(eps: float, name: str, normal: float) -> dict[str, Any]:
    """eps as held in the dtype: the value, and normal / subnormal (underflowing) / zero."""
    held = float(arith(name).store(torch.tensor([eps], dtype=torch.float64))[0])
    cls = "zero" if held == 0 else "subnormal" if held < normal else "normal"
    return {
        "eps": eps,
        "dtype": name,
        "held": held,
        "class": cls,
        "underflows": cls != "normal",
        "rel_change_pct": abs(held - eps) / eps * 100,
    }


# -- input families ---------------------------------------------------------------------------------
def family(name: str, rows: int, hidden: int, gen: torch.Generator) -> Tensor:
    """A float64 matrix whose rows have the family's property (see spec.INPUTS)."""
    randn = lambda scale=1.0: scale * torch.randn(rows, hidden, generator=gen, dtype=torch.float64)  # noqa: E731
    if name == "typical":
        return randn()
    if name == "zero":
        return torch.zeros(rows, hidden, dtype=torch.float64)
    if name == "constant":
        values = torch.tensor([CONSTANTS[i % len(CONSTANTS)] for i in range(rows)], dtype=torch.float64)
        return values[:, None].expand(rows, hidden).clone()
    if name == "near_constant":
        return 1.0 + randn(1e-3)
    if name.startswith("tiny_"):
        return randn(float(name.removeprefix("tiny_")))
    if name == "large":
        return randn(1000.0)
    if name == "mixed":
        x = randn()
        for i in range(rows):
            kind = i % 8
            if kind == 4:
                x[i] = 1.0 + 1e-3 * x[i]
            elif kind == 5:
                x[i] = 0.0
            elif kind == 6:
                x[i] = CONSTANTS[i % len(CONSTANTS)]
            elif kind == 7:
                x[i] *= 1000.0
        return x
    raise KeyError(name)


# -- the formulas: (output, statistic, denominator) with every op rounded by ``a.q`` --------------------
def _ln(a: Arith, x: Tensor, w: Tensor, b: Tensor, e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    q = a.q
    mean = q(x.mean(-1, keepdim=True))
    d = q(x - mean)
    var = q(q(d * d).mean(-1, keepdim=True))
    den = q(var + e)
    y = q(q(q(d * q(torch.rsqrt(den))) * w) + b)
    return y, var, den


def _rms(a: Arith, x: Tensor, w: Tensor, e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    q = a.q
    ms = q(q(x * x).mean(-1, keepdim=True))
    den = q(ms + e)
    return q(q(x * q(torch.rsqrt(den))) * w), ms, den


def _gn(a: Arith, x: Tensor, w: Tensor, b: Tensor, e: Tensor, groups: int) -> tuple[Tensor, Tensor, Tensor]:
    t, h = x.shape
    ones, zeros = torch.ones_like(x[0, : h // groups]), torch.zeros_like(x[0, : h // groups])
    y, var, den = _ln(a, x.reshape(t, groups, h // groups), ones, zeros, e)
    q = a.q
    return q(q(y.reshape(t, h) * w) + b), var, den


def _bn(a: Arith, x: Tensor, w: Tensor, b: Tensor, e: Tensor, rm: Tensor, rv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    q = a.q
    den = q(rv + e)
    y = q(q(q(q(x - rm) * q(torch.rsqrt(den))) * w) + b)
    return y, rv, den


def _dyt(a: Arith, x: Tensor, alpha: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, None, None]:
    q = a.q
    return q(q(q(torch.tanh(q(alpha * x))) * w) + b), None, None


def _reference(variant: str, t: dict[str, Tensor], eps: float | None, groups: int) -> Tensor:
    """The float64 formula on the stored tensors with the exact eps."""
    x = t["x"].double()
    w, b = t["w"].double(), t["b"].double()
    if variant == "layernorm":
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * w + b
    if variant == "rmsnorm":
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    if variant == "groupnorm":
        n, h = x.shape
        g = x.reshape(n, groups, h // groups)
        mean = g.mean(-1, keepdim=True)
        var = (g - mean).pow(2).mean(-1, keepdim=True)
        return ((g - mean) / torch.sqrt(var + eps)).reshape(n, h) * w + b
    if variant == "batchnorm":
        return (x - t["rm"].double()) / torch.sqrt(t["rv"].double() + eps) * w + b
    return torch.tanh(t["alpha"].double() * x) * w + b


def _ours(
    variant: str, a: Arith, t: dict[str, Tensor], eps: float | None, groups: int
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The eager formula in arithmetic ``a`` on tensors ``t`` (already in ``a.compute``)."""
    e = a.store(torch.tensor(eps if eps is not None else 0.0, dtype=torch.float64))
    if variant == "layernorm":
        return _ln(a, t["x"], t["w"], t["b"], e)
    if variant == "rmsnorm":
        return _rms(a, t["x"], t["w"], e)
    if variant == "groupnorm":
        return _gn(a, t["x"], t["w"], t["b"], e, groups)
    if variant == "batchnorm":
        return _bn(a, t["x"], t["w"], t["b"], e, t["rm"], t["rv"])
    return _dyt(a, t["x"], t["alpha"], t["w"], t["b"])


def _native(variant: str, a: Arith, t: dict[str, Tensor], eps: float | None, groups: int) -> Tensor:
    """torch's fused operator on tensors of the dtype; raises where torch has none for it."""
    if a.dtype is None:
        raise RuntimeError(f"this torch has no {a.name} dtype")
    d = {k: v.to(a.dtype) for k, v in t.items()}
    x = d["x"]
    if variant == "layernorm":
        return F.layer_norm(x, (x.shape[-1],), d["w"], d["b"], eps)
    if variant == "rmsnorm":
        return F.rms_norm(x, (x.shape[-1],), d["w"], eps)
    if variant == "groupnorm":
        return F.group_norm(x, groups, d["w"], d["b"], eps)
    if variant == "batchnorm":
        return F.batch_norm(x, d["rm"].flatten(), d["rv"].flatten(), d["w"], d["b"], training=False, eps=eps)
    raise RuntimeError(CATALOG[variant].native_note)


# -- errors ---------------------------------------------------------------------------------------------
def errors(out: Tensor, ref: Tensor) -> dict[str, Any]:
    """Max-abs, max-rel (÷ max |ref|) and rel-L2 error over the finite outputs, and the NaN/Inf counts."""
    out = out.double()
    finite = torch.isfinite(out)
    nan = int(torch.isnan(out).sum())
    inf = int(torch.isinf(out).sum())
    rec: dict[str, Any] = {
        "numel": out.numel(),
        "nan_count": nan,
        "inf_count": inf,
        "nonfinite_rows": int((~finite).reshape(out.shape[0], -1).any(-1).sum()),
        "max_abs_err": None,
        "ref_max_abs": float(ref.abs().max()),
        "max_rel_err": None,
        "rel_l2_err": None,
        "err_reason": None,
    }
    if not bool(finite.any()):
        rec["err_reason"] = "every output is NaN or Inf"
        return rec
    diff = (out - ref)[finite]
    r = ref[finite]
    rec["max_abs_err"] = float(diff.abs().max())
    top, norm = float(r.abs().max()), float(r.norm())
    if top > 0:
        rec["max_rel_err"] = rec["max_abs_err"] / top
        rec["rel_l2_err"] = float(diff.norm()) / norm
    else:
        rec["err_reason"] = "the reference output is all zero: relative errors are undefined, see the max abs error"
    return rec


def _diff(a: Tensor | None, b: Tensor | None) -> tuple[float | None, int | None]:
    if a is None or b is None:
        return None, None
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    both = fa & fb
    mismatch = int((fa != fb).sum())
    if not bool(both.any()):
        return None, mismatch
    return float((a.double() - b.double())[both].abs().max()), mismatch


def _facts(stat: Tensor | None, den: Tensor | None) -> dict[str, int | None]:
    if stat is None or den is None:
        return {"groups": None, "variance_overflow_groups": None, "zero_denominator_groups": None}
    return {
        "groups": int(den.numel()),
        "variance_overflow_groups": int(torch.isinf(stat).sum()),
        "zero_denominator_groups": int((den == 0).sum()),
    }


# -- the run ------------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    """One family's stored tensors for one dtype (in the compute dtype) and their shape."""

    tensors: dict[str, Tensor]
    rows: int
    hidden: int


def prepare_inputs(variant: str, fam: str, x64: Tensor, a: Arith, gen_seed: int) -> Inputs:
    """Stored input, parameters (γ near 1, β near 0, never exactly) and, for BatchNorm, running statistics."""
    rows, hidden = x64.shape
    g = torch.Generator().manual_seed(gen_seed)
    w = 1.0 + 0.1 * torch.randn(hidden, generator=g, dtype=torch.float64)
    b = 0.1 * torch.randn(hidden, generator=g, dtype=torch.float64)
    t = {"x": a.store(x64), "w": a.store(w), "b": a.store(b)}
    if variant == "batchnorm":
        xs = t["x"].double()  # calibrated on the data as stored, kept in the dtype like the model's buffers
        t["rm"] = a.store(xs.mean(0, keepdim=True))
        t["rv"] = a.store(xs.var(0, unbiased=False, keepdim=True))
    if variant == "dyt":
        t["alpha"] = a.store(torch.tensor([DYT_ALPHA], dtype=torch.float64))
    return Inputs(t, rows, hidden)


def family_matrix(variant: str, fam: str, spec: NumericsSpec, recorded: Tensor | None) -> Tensor:
    """The family's float64 matrix laid out for ``variant``: BatchNorm normalizes channels over tokens, so
    its family property is given to channels (the matrix is generated transposed)."""
    if fam == RECORDED:
        assert recorded is not None
        return recorded.double()
    seed = spec.seed * 1000 + sorted(INPUTS).index(fam)
    gen = torch.Generator().manual_seed(seed)
    if variant == "batchnorm":
        return family(fam, spec.hidden, spec.rows, gen).T.contiguous()
    return family(fam, spec.rows, spec.hidden, gen)


def unsupported(variant: str, groups: int, hidden: int, rows: int) -> str | None:
    if variant == "groupnorm" and hidden % groups:
        return f"groupnorm needs hidden divisible by groups: {hidden} % {groups} ≠ 0"
    if variant == "batchnorm" and rows < 2:
        return "batchnorm needs at least 2 rows to calibrate running statistics"
    return None


OnCell = Callable[[int, int], None]  # cells done, cells


def cells(spec: NumericsSpec, recorded: Tensor | None, progress: OnCell | None = None) -> Iterator[dict[str, Any]]:
    """Every cell of the run, measured, as plain records (None with a reason where a reading is missing)."""
    total, done = spec.cells(), 0
    dev = torch.device(spec.device)
    for variant in spec.variants:
        eps_list: list[float | None] = [None] if variant == "dyt" else list(spec.eps)
        for dtype in spec.dtypes:
            a = arith(dtype)
            normal = dtype_facts(dtype)["smallest_normal"]
            for fam in spec.families:
                x64 = family_matrix(variant, fam, spec, recorded)
                inp = prepare_inputs(variant, fam, x64, a, spec.seed + 7)
                t = {k: v.to(dev) for k, v in inp.tensors.items()}
                why = unsupported(variant, spec.groups, inp.hidden, inp.rows)
                for eps in eps_list:
                    ef = eps_facts(eps, dtype, normal) if eps is not None else None
                    base = {
                        "variant": variant,
                        "dtype": dtype,
                        "eps": eps,
                        "input": fam,
                        "rows": inp.rows,
                        "hidden": inp.hidden,
                        "eps_held": ef["held"] if ef else None,
                        "eps_class": ef["class"] if ef else None,
                    }
                    outs: dict[str, Tensor | None] = {}
                    recs: dict[str, dict[str, Any]] = {}
                    ref = None if why else _reference(variant, t, eps, spec.groups)
                    for impl in spec.impls:
                        rec = dict(base, impl=impl)
                        if why:
                            recs[impl] = dict(rec, status="unsupported", reason=why)
                            continue
                        try:
                            out, stat, den, arithmetic = _run_impl(impl, variant, a, t, eps, spec.groups)
                        except (RuntimeError, NotImplementedError) as e:
                            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                            recs[impl] = dict(rec, status="unsupported", reason=f"{first[:200]}")
                            continue
                        outs[impl] = out
                        rec.update(status="ok", reason=None, arithmetic=arithmetic)
                        rec.update(errors(out, ref))
                        rec.update(_facts(stat, den))
                        recs[impl] = rec
                    if "native" in recs and recs["native"]["status"] == "ok":
                        for other in ("eager", "upcast"):
                            d, mismatch = _diff(outs.get("native"), outs.get(other))
                            recs["native"][f"vs_{other}_max_abs"] = d
                            recs["native"][f"vs_{other}_finiteness_mismatch"] = mismatch
                    for impl in spec.impls:
                        done += 1
                        yield recs[impl]
                    if progress:
                        progress(done, total)


def _run_impl(
    impl: str, variant: str, a: Arith, t: dict[str, Tensor], eps: float | None, groups: int
) -> tuple[Tensor, Tensor | None, Tensor | None, str]:
    if impl == "eager":
        out, stat, den = _ours(variant, a, t, eps, groups)
        return out, stat, den, "emulated" if a.emulated else "dtype"
    if impl == "upcast":
        up = Arith("float32", torch.float32, torch.float32, False)
        f = {k: v.to(torch.float32) for k, v in t.items()}
        out, stat, den = _ours(variant, up, f, eps, groups)
        return a.store(out.double()), stat, den, "fp32 statistics"
    if variant == "dyt":
        raise RuntimeError(CATALOG["dyt"].native_note)
    out = _native(variant, a, t, eps, groups)
    return out.to(torch.float64), None, None, "torch fused op"


# -- activations recorded from a real model -----------------------------------------------------------------
def recorded_rows(spec: NumericsSpec) -> tuple[Tensor, dict[str, Any]]:
    """Input rows of a model's norm layers (through hooks), ``spec.recorded_rows`` of them, from the layers of the
    most common width; with what they came from."""
    from ...measure.models.hooks import record_rows
    from ..drift.measure_demo import resolve

    assert spec.recorded is not None
    model, data = resolve(spec.recorded, spec.recorded_args)
    per_layer = record_rows(model, data, max_batches=8)
    widths: dict[int, list[str]] = {}
    for name, r in per_layer.items():
        widths.setdefault(r.shape[1], []).append(name)
    width = max(widths, key=lambda w: len(widths[w]))
    layers = widths[width]
    gen = torch.Generator().manual_seed(spec.seed)
    per = max(1, spec.recorded_rows // len(layers))
    parts = []
    for name in layers:
        r = per_layer[name]
        idx = torch.randperm(r.shape[0], generator=gen)[:per]
        parts.append(r[idx])
    rows = torch.cat(parts)[: spec.recorded_rows]
    info = {
        "model": spec.recorded,
        "description": "the drift demo's byte-level language model (training lab) on held-out Shakespeare"
        if spec.recorded == DEMO_MODEL
        else f"{spec.recorded}({', '.join(f'{k}={v}' for k, v in spec.recorded_args.items())})",
        "layers": layers,
        "skipped_layers": [n for w, ns in widths.items() if w != width for n in ns],
        "rows": int(rows.shape[0]),
        "hidden": width,
        "row_rms_median": float(rows.double().pow(2).mean(-1).sqrt().median()),
        "row_maxabs_max": float(rows.abs().max()),
    }
    return rows, info


# -- a stored run -------------------------------------------------------------------------------------------
def finite(doc: Any) -> Any:
    """A JSON-safe copy: a non-finite float (never expected here) becomes None rather than a fake number."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite(v) for v in doc]
    return doc


@dataclass
class TableOutcome(Outcome):
    """How a numerics run ended, with its cells (stored whole, at the end)."""

    cells: list[dict[str, Any]] = field(default_factory=list)


def preflight(spec: NumericsSpec) -> tuple[Tensor | None, dict[str, Any] | None]:
    """Every check that can refuse the run, and the recorded activations, before the store is touched.

    One thread: the tensors are small, and on a shared machine OpenMP threads only wait for each other.
    """
    resolve_device(spec.device)
    torch.set_num_threads(1)
    return recorded_rows(spec) if spec.recorded else (None, None)


def run(
    spec: NumericsSpec,
    store: Store,
    progress: OnCell | None = None,
    prepared: tuple[Tensor | None, dict[str, Any] | None] | None = None,
) -> TableOutcome:
    """Measure every cell of ``spec`` into a new run of kind "numerics" (artifacts: cells, dtypes, eps, recorded).

    The recorded family's model is loaded (``preflight``) before the run exists, so a bad import path leaves the
    store untouched.
    """
    from ...measure.machine import provenance

    recorded, info = prepared if prepared is not None else preflight(spec)
    machine = provenance.machine(spec.device)
    machine["threads"] = 1
    run_id = store.create_run(spec, machine, provenance.versions(), 0, label=spec.label, kind="numerics")
    outcome = TableOutcome(run_id)
    total = spec.cells()
    last = [0.0]

    def tick(done: int, n: int) -> None:
        checkpoint()  # a cancel stops the table between cells
        now = time.monotonic()
        if now - last[0] > 0.5 or done == n:
            last[0] = now
            store.update_run(run_id, extra={"cells_done": done, "cells_total": n})
        if progress:
            progress(done, n)

    kept_none = "cells measured so far are not kept (the table is stored whole)"
    # a torch error mid-run: the run says so instead of staying "running"
    with stored_run(store, outcome, cancelled=f"{CANCELLED_BY_USER}; {kept_none}", reraise=False):
        store.put_artifact(run_id, "numerics/dtypes", finite([dtype_facts(d) for d in spec.dtypes]))
        eps_rows = [eps_facts(e, d, dtype_facts(d)["smallest_normal"]) for d in spec.dtypes for e in spec.eps]
        store.put_artifact(run_id, "numerics/eps", finite(eps_rows))
        store.put_artifact(run_id, "numerics/recorded", finite(info))
        outcome.cells = [finite(c) for c in cells(spec, recorded, tick)]
        store.put_artifact(run_id, "numerics/cells", outcome.cells)
        store.update_run(run_id, extra={"cells_done": len(outcome.cells), "cells_total": total})
    return outcome
