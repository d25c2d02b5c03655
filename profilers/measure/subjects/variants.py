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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...catalog import VARIANTS as CATALOG
from ...catalog import Config, VariantInfo

Tensor = torch.Tensor
Fn = Callable[..., tuple[Tensor, ...]]


def _stats_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


@dataclass(frozen=True)
class Formulas:
    """A variant's three faces; its names and shape facts come from the catalogue."""

    info: VariantInfo
    reference: Fn
    eager: Fn
    native: Fn | None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.info.inputs

    @property
    def n_outputs(self) -> int:
        return self.info.n_outputs

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


_FORMULAS: dict[str, tuple[Fn, Fn, Fn | None]] = {
    "layernorm": (_ln_ref, _ln_eager, _ln_native),
    "rmsnorm": (_rms_ref, _rms_eager, _rms_native),
    "batchnorm": (_bn_ref, _bn_eager, _bn_native),
    "groupnorm": (_gn_ref, _gn_eager, _gn_native),
    "dyt": (_dyt_ref, _dyt_eager, None),
    "layerscale": (_ls_ref, _ls_eager, _ls_native),
    "add_rmsnorm": (_addrms_ref, _addrms_eager, _addrms_native),
}
VARIANTS: dict[str, Formulas] = {name: Formulas(CATALOG[name], *f) for name, f in _FORMULAS.items()}


# ---- implementations ---------------------------------------------------------------
def _liger_fn(variant: str) -> Fn:
    if variant == "rmsnorm":
        from liger_kernel.ops.rms_norm import LigerRMSNormFunction

        # offset 0, llama casting, in_place=False: in place would overwrite dy and break repeated backward calls
        return lambda x, w, *, cfg: (LigerRMSNormFunction.apply(x, w, cfg.eps, 0.0, "llama", False),)
    from liger_kernel.ops.layer_norm import LigerLayerNormFunction

    return lambda x, w, b, *, cfg: (LigerLayerNormFunction.apply(x, w, b, cfg.eps),)


def _quack_fn(variant: str) -> Fn:
    import quack

    assert variant == "rmsnorm", variant
    return lambda x, w, *, cfg: (quack.rmsnorm(x, w, eps=cfg.eps),)


def build(variant: str, impl: str, cfg: Config, compiler: Callable[[Fn], Fn] | None = None) -> Fn:
    """The callable for one (variant, implementation); compiled needs ``compiler``."""
    v = VARIANTS[variant]
    if impl == "eager":
        return functools.partial(v.eager, cfg=cfg)
    if impl == "native":
        assert v.native is not None, v.info.native_note
        return functools.partial(v.native, cfg=cfg)
    if impl == "compiled":
        assert compiler is not None
        return compiler(functools.partial(v.eager, cfg=cfg))
    if impl == "liger":
        return functools.partial(_liger_fn(variant), cfg=cfg)
    if impl == "quack":
        return functools.partial(_quack_fn(variant), cfg=cfg)
    raise KeyError(impl)


def reference(variant: str, cfg: Config) -> Fn:
    return functools.partial(VARIANTS[variant].reference, cfg=cfg)
