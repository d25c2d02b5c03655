"""Registry: variant (the math) × implementation (how it is computed).

Every variant has three faces:
- ``reference``: the formula in float64, the ground truth of the correctness gate;
- ``eager``: the textbook formula in composed torch ops, statistics in fp32 for
  half inputs (what a model file written by hand does);
- ``native``: torch's fused op, where one exists.
``compiled`` is torch.compile of ``eager`` (see compile.py) and ``liger`` the
Triton kernels of liger-kernel when it is importable and the device is CUDA.

All functions take the variant's tensors positionally and return a tuple.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Fn = Callable[..., tuple[Tensor, ...]]


@dataclass(frozen=True)
class Config:
    """Hyper-parameters shared by every variant of one sweep."""

    eps: float = 1e-5
    groups: int = 32
    dyt_alpha: float = 0.5
    layerscale_init: float = 0.1


def _stats_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    inputs: tuple[str, ...]  # tensor names in call order; the first is the activation x
    param_inputs: tuple[str, ...]  # which of them are per-channel parameters
    n_outputs: int
    reference: Fn
    eager: Fn
    native: Fn | None
    native_note: str  # what "native" means here, or why there is none

    def unsupported(self, tokens: int, hidden: int, cfg: Config) -> str | None:
        if self.name == "batchnorm" and tokens < 2:
            return "batchnorm needs at least 2 tokens to compute batch statistics"
        if self.name == "groupnorm" and hidden % cfg.groups:
            return f"groupnorm needs hidden divisible by groups={cfg.groups}: choose another --groups or hidden"
        return None

    def param_numel(self, hidden: int) -> int:
        return sum(1 if n == "alpha" else hidden for n in self.param_inputs)

    def make_inputs(
        self, tokens: int, hidden: int, dtype: torch.dtype, device: torch.device, seed: int, cfg: Config
    ) -> list[Tensor]:
        """Random activations and near-one parameters (never zeros: they hide bugs)."""
        gen = torch.Generator(device=device).manual_seed(seed)
        out = []
        for name in self.inputs:
            if name in ("x", "residual", "f"):
                t = torch.randn(tokens, hidden, generator=gen, device=device, dtype=torch.float32)
            elif name == "alpha":
                t = torch.full((1,), cfg.dyt_alpha, device=device)
            elif name == "weight":
                t = 1.0 + 0.1 * torch.randn(hidden, generator=gen, device=device)
            elif name == "lam":
                t = cfg.layerscale_init * (1.0 + 0.1 * torch.randn(hidden, generator=gen, device=device))
            else:  # bias
                t = 0.1 * torch.randn(hidden, generator=gen, device=device)
            out.append(t.to(dtype))
        return out


# ---- layernorm -------------------------------------------------------------
def _ln_ref(x, w, b, *, cfg):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return ((x - mean) / torch.sqrt(var + cfg.eps) * w + b,)


def _ln_eager(x, w, b, *, cfg):
    xf = x.to(_stats_dtype(x))
    mean = xf.mean(-1, keepdim=True)
    var = (xf - mean).pow(2).mean(-1, keepdim=True)
    y = (xf - mean) * torch.rsqrt(var + cfg.eps)
    return ((y * w.to(y.dtype) + b.to(y.dtype)).to(x.dtype),)


def _ln_native(x, w, b, *, cfg):
    return (F.layer_norm(x, (x.shape[-1],), w, b, cfg.eps),)


# ---- rmsnorm ---------------------------------------------------------------
def _rms_ref(x, w, *, cfg):
    return (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + cfg.eps) * w,)


def _rms_eager(x, w, *, cfg):
    xf = x.to(_stats_dtype(x))
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + cfg.eps)
    return (w * y.to(x.dtype),)


def _rms_native(x, w, *, cfg):
    return (F.rms_norm(x, (x.shape[-1],), w, cfg.eps),)


# ---- batchnorm (training statistics over tokens) ----------------------------
def _bn_ref(x, w, b, *, cfg):
    mean = x.mean(0, keepdim=True)
    var = (x - mean).pow(2).mean(0, keepdim=True)
    return ((x - mean) / torch.sqrt(var + cfg.eps) * w + b,)


def _bn_eager(x, w, b, *, cfg):
    xf = x.to(_stats_dtype(x))
    mean = xf.mean(0, keepdim=True)
    var = (xf - mean).pow(2).mean(0, keepdim=True)
    y = (xf - mean) * torch.rsqrt(var + cfg.eps)
    return ((y * w.to(y.dtype) + b.to(y.dtype)).to(x.dtype),)


def _bn_native(x, w, b, *, cfg):
    return (F.batch_norm(x, None, None, w, b, training=True, momentum=0.0, eps=cfg.eps),)


# ---- groupnorm (groups of channels within each token) ------------------------
def _gn_ref(x, w, b, *, cfg):
    t, h = x.shape
    g = x.reshape(t, cfg.groups, h // cfg.groups)
    mean = g.mean(-1, keepdim=True)
    var = (g - mean).pow(2).mean(-1, keepdim=True)
    return (((g - mean) / torch.sqrt(var + cfg.eps)).reshape(t, h) * w + b,)


def _gn_eager(x, w, b, *, cfg):
    t, h = x.shape
    g = x.to(_stats_dtype(x)).reshape(t, cfg.groups, h // cfg.groups)
    mean = g.mean(-1, keepdim=True)
    var = (g - mean).pow(2).mean(-1, keepdim=True)
    y = ((g - mean) * torch.rsqrt(var + cfg.eps)).reshape(t, h)
    return ((y * w.to(y.dtype) + b.to(y.dtype)).to(x.dtype),)


def _gn_native(x, w, b, *, cfg):
    return (F.group_norm(x, cfg.groups, w, b, cfg.eps),)


# ---- DyT: γ·tanh(αx)+β -----------------------------------------------------------
def _dyt_ref(x, alpha, w, b, *, cfg):
    return (torch.tanh(alpha * x) * w + b,)


def _dyt_eager(x, alpha, w, b, *, cfg):
    return (torch.tanh(alpha * x) * w + b,)


# ---- LayerScale: x + λ⊙f -------------------------------------------------------
def _ls_ref(x, f, lam, *, cfg):
    return (x + lam * f,)


def _ls_eager(x, f, lam, *, cfg):
    return (x + lam * f,)


def _ls_native(x, f, lam, *, cfg):
    return (torch.addcmul(x, f, lam),)


# ---- residual add fused with RMSNorm: (rmsnorm(x + r), x + r) ----------------------
def _addrms_ref(x, r, w, *, cfg):
    h = x + r
    return (_rms_ref(h, w, cfg=cfg)[0], h)


def _addrms_eager(x, r, w, *, cfg):
    h = x + r
    return (_rms_eager(h, w, cfg=cfg)[0], h)


def _addrms_native(x, r, w, *, cfg):
    h = x + r
    return (F.rms_norm(h, (h.shape[-1],), w, cfg.eps), h)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "layernorm",
            "LayerNorm: (x-mean)/sqrt(var+eps)·γ+β over hidden",
            ("x", "weight", "bias"),
            ("weight", "bias"),
            1,
            _ln_ref,
            _ln_eager,
            _ln_native,
            "F.layer_norm",
        ),
        Variant(
            "rmsnorm",
            "RMSNorm: x/sqrt(mean(x²)+eps)·γ over hidden",
            ("x", "weight"),
            ("weight",),
            1,
            _rms_ref,
            _rms_eager,
            _rms_native,
            "F.rms_norm",
        ),
        Variant(
            "batchnorm",
            "BatchNorm, training statistics over tokens (the contrast)",
            ("x", "weight", "bias"),
            ("weight", "bias"),
            1,
            _bn_ref,
            _bn_eager,
            _bn_native,
            "F.batch_norm(training=True)",
        ),
        Variant(
            "groupnorm",
            "GroupNorm: statistics over groups of channels in each token",
            ("x", "weight", "bias"),
            ("weight", "bias"),
            1,
            _gn_ref,
            _gn_eager,
            _gn_native,
            "F.group_norm",
        ),
        Variant(
            "dyt",
            "Dynamic Tanh: γ·tanh(αx)+β, no statistics",
            ("x", "alpha", "weight", "bias"),
            ("alpha", "weight", "bias"),
            1,
            _dyt_ref,
            _dyt_eager,
            None,
            "torch has no fused DyT op",
        ),
        Variant(
            "layerscale",
            "LayerScale residual: x + λ⊙f",
            ("x", "f", "lam"),
            ("lam",),
            1,
            _ls_ref,
            _ls_eager,
            _ls_native,
            "torch.addcmul (one kernel)",
        ),
        Variant(
            "add_rmsnorm",
            "Residual add fused with RMSNorm: (rmsnorm(x+r), x+r)",
            ("x", "residual", "weight"),
            ("weight",),
            2,
            _addrms_ref,
            _addrms_eager,
            _addrms_native,
            "torch.add then F.rms_norm (torch has no fused add+RMSNorm op)",
        ),
    )
}


# ---- implementations ---------------------------------------------------------------
@dataclass(frozen=True)
class Impl:
    """How a variant is computed, and what it supports (anything else becomes a skipped point)."""

    name: str
    description: str
    devices: frozenset[str]
    dtypes: frozenset[str] = frozenset({"float32", "bfloat16", "float16"})
    modes: frozenset[str] = frozenset({"fwd", "bwd", "fwdbwd"})


_BOTH = frozenset({"cpu", "cuda"})
IMPLS: dict[str, Impl] = {
    i.name: i
    for i in (
        Impl("eager", "textbook formula in composed torch ops", _BOTH),
        Impl("native", "torch's fused op", _BOTH),
        Impl("compiled", "torch.compile of the eager formula (fullgraph, static shapes)", _BOTH),
        Impl("liger", "liger-kernel Triton kernels", frozenset({"cuda"})),
    )
}

_LIGER_VARIANTS = ("rmsnorm", "layernorm")


def liger_available() -> str | None:
    """None when liger-kernel can be imported, else the reason."""
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install liger-kernel on a CUDA machine)"
    return None


def c_compiler_available() -> str | None:
    if any(shutil.which(c) for c in ("cc", "gcc", "c++", "g++", "clang")):
        return None
    return "torch.compile on CPU needs a C++ compiler: install gcc"


def unsupported_reason(
    variant: str,
    impl: str,
    device_type: str,
    tokens: int,
    hidden: int,
    cfg: Config,
    dtype: str = "float32",
    mode: str = "fwd",
) -> str | None:
    """Why this combination cannot be measured, or None when it can."""
    v = VARIANTS[variant]
    i = IMPLS[impl]
    if device_type not in i.devices:
        return f"{impl} runs only on {', '.join(sorted(i.devices))}"
    if dtype not in i.dtypes:
        return f"{impl} does not support {dtype}"
    if mode not in i.modes:
        return f"{impl} does not support mode {mode}"
    reason = v.unsupported(tokens, hidden, cfg)
    if reason:
        return reason
    if impl == "native" and v.native is None:
        return v.native_note
    if impl == "compiled" and device_type == "cpu":
        return c_compiler_available()
    if impl == "liger":
        if variant not in _LIGER_VARIANTS:
            return f"liger-kernel has no {variant} kernel wired in NormScope"
        return liger_available()
    return None


def _liger_fn(variant: str) -> Fn:
    if variant == "rmsnorm":
        from liger_kernel.ops.rms_norm import LigerRMSNormFunction

        # offset 0, llama casting, in_place=False: in place would overwrite dy and break repeated backward calls
        return lambda x, w, *, cfg: (LigerRMSNormFunction.apply(x, w, cfg.eps, 0.0, "llama", False),)
    from liger_kernel.ops.layer_norm import LigerLayerNormFunction

    return lambda x, w, b, *, cfg: (LigerLayerNormFunction.apply(x, w, b, cfg.eps),)


def build(variant: str, impl: str, cfg: Config, compiler: Callable[[Fn], Fn] | None = None) -> Fn:
    """The callable for one (variant, implementation); compiled needs ``compiler``."""
    v = VARIANTS[variant]
    if impl == "eager":
        return functools.partial(v.eager, cfg=cfg)
    if impl == "native":
        assert v.native is not None, v.native_note
        return functools.partial(v.native, cfg=cfg)
    if impl == "compiled":
        assert compiler is not None
        return compiler(functools.partial(v.eager, cfg=cfg))
    if impl == "liger":
        return functools.partial(_liger_fn(variant), cfg=cfg)
    raise KeyError(impl)


def reference(variant: str, cfg: Config) -> Fn:
    return functools.partial(VARIANTS[variant].reference, cfg=cfg)
