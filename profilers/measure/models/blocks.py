"""Transformer blocks from torch primitives: the norm choice inside a real block, and a small LM around it.

Two families (``catalog.BLOCK_FAMILIES``): a Llama-style decoder (norm → causal SDPA attention with
RoPE and grouped KV heads → residual → norm → SwiGLU MLP → residual) and a BERT/ViT-style encoder
(GELU MLP, biases, bidirectional attention). Five placements (``catalog.PLACEMENTS``): Post-LN,
Pre-LN, Pre-LN + LayerScale, DeepNorm and Peri-LN. Every norm is computed by the registry's own
formula (``variants.py``), so a block's norm is the same math the kernel sweeps time:

- ``eager``: the norm as composed torch ops; ``native``: torch's fused op (F.layer_norm, F.rms_norm);
- ``reference``: the float64 formula, used only by ``float64_copy`` for the correctness check;
- compiled: the caller compiles the whole block or stack (``compile.compile_fresh(block)``).

Attention, MLP, norms and residual arithmetic run inside ``torch.profiler.record_function`` ranges
named by ``catalog.BLOCK_COMPONENTS``, so a profiler trace breaks a block's time down by component.
With ``add_rmsnorm`` the residual add fused into the norm is counted as norm.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ...catalog import (
    BLOCK_FAMILIES,
    VARIANTS,
    BlockFamilyInfo,
    Config,
    block_unsupported,
    deepnorm_constants,
    layerscale_init,
)
from ..subjects import variants
from ..subjects.gate import Errors, errors_vs_reference

Tensor = torch.Tensor


class BlockError(ValueError):
    """A block that cannot be built as asked; the message names the fix."""


@dataclass(frozen=True)
class BlockConfig:
    """One block's shape and choices. ``n_layers`` is the depth of the model the block sits in: DeepNorm's
    α/β and LayerScale's initial λ depend on it even when a single block is timed."""

    family: str = "decoder"
    norm: str = "rmsnorm"
    placement: str = "pre_ln"
    impl: str = "native"
    hidden: int = 256
    heads: int = 4
    kv_heads: int | None = None  # None: as many as heads
    ffn: int | None = None  # None: 4·hidden (encoder) or the Llama rule 8/3·hidden rounded up to 64 (decoder)
    n_layers: int = 1
    causal: bool | None = None  # None: the family's default
    eps: float = 1e-5
    groups: int = 32  # groupnorm
    dyt_alpha: float = 0.5
    rope_base: float = 10000.0
    ranges: bool = True  # record_function ranges per component

    @property
    def info(self) -> BlockFamilyInfo:
        return BLOCK_FAMILIES[self.family]

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def ffn_size(self) -> int:
        if self.ffn:
            return self.ffn
        if self.info.mlp == "gelu":
            return 4 * self.hidden
        return 64 * math.ceil(8 * self.hidden / 3 / 64)

    @property
    def is_causal(self) -> bool:
        return self.info.causal if self.causal is None else self.causal

    def norm_config(self) -> Config:
        return Config(eps=self.eps, groups=self.groups, dyt_alpha=self.dyt_alpha)

    def check(self) -> None:
        """Raise BlockError naming the fix when this block cannot be built."""
        reason = block_unsupported(self.family, self.norm, self.placement, self.impl, self.hidden, self.norm_config())
        if reason:
            raise BlockError(reason)
        if self.hidden % self.heads:
            raise BlockError(f"hidden {self.hidden} is not divisible by heads {self.heads}: choose matching sizes")
        if self.heads % self.n_kv_heads:
            raise BlockError(f"heads {self.heads} is not a multiple of KV heads {self.n_kv_heads}")
        if self.info.rope and (self.hidden // self.heads) % 2:
            raise BlockError(f"RoPE needs an even head size, got {self.hidden // self.heads}")
        if self.n_layers < 1:
            raise BlockError(f"n_layers must be at least 1, got {self.n_layers}")


def block_config_from_preset(preset: str, **choices: object) -> BlockConfig:
    """A BlockConfig with a model preset's hidden, heads, KV heads, FFN size, depth and family."""
    from ...spec import PRESETS

    p = PRESETS.get(preset)
    if p is None or p.heads is None:
        raise BlockError(f"unknown model preset {preset!r}: use one of {', '.join(PRESETS)}")
    base = BlockConfig(
        family=p.family or "decoder",
        hidden=p.hidden,
        heads=p.heads,
        kv_heads=p.kv_heads,
        ffn=p.ffn,
        n_layers=p.layers or 1,
    )
    return replace(base, **choices)  # type: ignore[arg-type]


# ---- ranges ------------------------------------------------------------------------------------
def component_range(on: bool, name: str) -> contextlib.AbstractContextManager:
    return torch.profiler.record_function(name) if on else contextlib.nullcontext()


# ---- norm ----------------------------------------------------------------------------------------
class Norm(nn.Module):
    """One norm computed by the registry's formula; ``impl`` is eager, native or reference (float64 copy)."""

    def __init__(self, variant: str, hidden: int, impl: str, cfg: Config) -> None:
        super().__init__()
        self.variant, self.impl, self.cfg = variant, impl, cfg
        info = VARIANTS[variant]
        self.param_names = tuple(n for n in info.inputs if n in info.param_inputs)
        for name in self.param_names:
            if name == "alpha":
                value = torch.full((1,), cfg.dyt_alpha)
            elif name == "weight":
                value = torch.ones(hidden)
            else:
                value = torch.zeros(hidden)
            setattr(self, name, nn.Parameter(value))

    def _formula(self, variant: str):
        v = variants.VARIANTS[variant]
        if self.impl == "reference":
            return v.reference
        if self.impl == "native" and v.native is not None:
            return v.native
        return v.eager

    def _params(self) -> list[Tensor]:
        return [getattr(self, n) for n in self.param_names]

    def forward(self, x: Tensor) -> Tensor:
        """The norm of ``x`` over its last dimension (add_rmsnorm without a residual is RMSNorm)."""
        variant = "rmsnorm" if self.variant == "add_rmsnorm" else self.variant
        flat = x.reshape(-1, x.shape[-1])
        (y,) = self._formula(variant)(flat, *self._params(), cfg=self.cfg)
        return y.reshape(x.shape)

    @property
    def fuses_add(self) -> bool:
        return self.variant == "add_rmsnorm"

    def add(self, f: Tensor, residual: Tensor) -> tuple[Tensor, Tensor]:
        """(norm(f + residual), f + residual) in one call: the fused residual add + RMSNorm."""
        shape = f.shape
        y, h = self._formula("add_rmsnorm")(
            f.reshape(-1, shape[-1]), residual.reshape(-1, shape[-1]), *self._params(), cfg=self.cfg
        )
        return y.reshape(shape), h.reshape(shape)


# ---- attention -------------------------------------------------------------------------------------
def _rotate_half(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rope(q: Tensor, k: Tensor, base: float) -> tuple[Tensor, Tensor]:
    """Rotary position embedding (Llama's rotate-half form) on [batch, heads, seq, head_dim] tensors.
    Angles are computed in float32 (float64 for a float64 block), then cast to the activations' dtype."""
    seq, dim = q.shape[-2], q.shape[-1]
    adt = torch.float64 if q.dtype == torch.float64 else torch.float32
    inv_freq = base ** (-torch.arange(0, dim, 2, device=q.device, dtype=adt) / dim)
    angles = torch.outer(torch.arange(seq, device=q.device, dtype=adt), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


class Attention(nn.Module):
    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        h, hd = cfg.hidden, cfg.hidden // cfg.heads
        bias = cfg.info.bias
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.n_kv_heads, hd
        self.q = nn.Linear(h, cfg.heads * hd, bias=bias)
        # no key bias even where the family has biases: it adds the same q·b to every score of a query, which
        # softmax ignores, so it changes nothing and its gradient is exactly zero
        self.k = nn.Linear(h, cfg.n_kv_heads * hd, bias=False)
        self.v = nn.Linear(h, cfg.n_kv_heads * hd, bias=bias)
        self.o = nn.Linear(cfg.heads * hd, h, bias=bias)
        self.rope = cfg.info.rope
        self.rope_base = cfg.rope_base
        self.causal = cfg.is_causal

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.rope:
            q, k = rope(q, k, self.rope_base)
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.o(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.gate = nn.Linear(hidden, ffn, bias=False)
        self.up = nn.Linear(hidden, ffn, bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)

    @property
    def out_proj(self) -> nn.Linear:
        return self.down

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class GeluMLP(nn.Module):
    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, ffn)
        self.fc2 = nn.Linear(ffn, hidden)

    @property
    def out_proj(self) -> nn.Linear:
        return self.fc2

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


# ---- the block -----------------------------------------------------------------------------------------
class Block(nn.Module):
    """One residual block: attention then MLP, norms placed by ``cfg.placement``."""

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        cfg.check()
        self.cfg = cfg
        ncfg = cfg.norm_config()
        self.placement = cfg.placement
        self.ranges = cfg.ranges
        self.attn = Attention(cfg)
        self.mlp: SwiGLU | GeluMLP = (
            SwiGLU(cfg.hidden, cfg.ffn_size) if cfg.info.mlp == "swiglu" else GeluMLP(cfg.hidden, cfg.ffn_size)
        )
        self.norm1 = Norm(cfg.norm, cfg.hidden, cfg.impl, ncfg)
        self.norm2 = Norm(cfg.norm, cfg.hidden, cfg.impl, ncfg)
        if cfg.placement == "peri_ln":
            self.norm1_out = Norm(cfg.norm, cfg.hidden, cfg.impl, ncfg)
            self.norm2_out = Norm(cfg.norm, cfg.hidden, cfg.impl, ncfg)
        if cfg.placement == "pre_ln_layerscale":
            lam = layerscale_init(cfg.n_layers)
            self.scale1 = nn.Parameter(torch.full((cfg.hidden,), lam))
            self.scale2 = nn.Parameter(torch.full((cfg.hidden,), lam))
        self.alpha = deepnorm_constants(cfg.n_layers)[0] if cfg.placement == "deepnorm" else 1.0
        init_weights(self, cfg)

    @property
    def attn_out_proj(self) -> nn.Linear:
        return self.attn.o

    @property
    def ffn_out_proj(self) -> nn.Linear:
        return self.mlp.out_proj

    def _r(self, name: str) -> contextlib.AbstractContextManager:
        return component_range(self.ranges, name)

    def _norm(self, norm: Norm, x: Tensor) -> Tensor:
        with self._r("norm"):
            return norm(x)

    def _add_norm(self, norm: Norm, f: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """(norm(r + f), r + f): fused when the norm is add_rmsnorm."""
        if norm.fuses_add:
            with self._r("norm"):
                return norm.add(f, r)
        with self._r("residual"):
            s = r + f
        return self._norm(norm, s), s

    def _post(self, x: Tensor, sub: nn.Module, name: str, norm: Norm) -> Tensor:
        with self._r(name):
            f = sub(x)
        if self.alpha != 1.0:
            with self._r("residual"):
                x = x * self.alpha
        return self._add_norm(norm, f, x)[0]

    def _out(self, f: Tensor, i: int) -> Tensor:
        """What a pre-style sublayer adds to the residual: f, λ⊙f (LayerScale) or N_out(f) (Peri-LN)."""
        if self.placement == "peri_ln":
            return self._norm(self.norm1_out if i == 0 else self.norm2_out, f)
        if self.placement == "pre_ln_layerscale":
            with self._r("residual"):
                return f * (self.scale1 if i == 0 else self.scale2)
        return f

    def forward(self, x: Tensor) -> Tensor:
        if self.placement in ("post_ln", "deepnorm"):
            x = self._post(x, self.attn, "attention", self.norm1)
            return self._post(x, self.mlp, "mlp", self.norm2)
        h = self._norm(self.norm1, x)
        with self._r("attention"):
            f = self.attn(h)
        h, x = self._add_norm(self.norm2, self._out(f, 0), x)
        with self._r("mlp"):
            f = self.mlp(h)
        f = self._out(f, 1)
        with self._r("residual"):
            return x + f


def init_weights(block: Block, cfg: BlockConfig) -> None:
    """Xavier-normal linear weights and zero biases (the setting of Xiong et al. 2020 and DeepNet);
    DeepNorm scales the value, output and FFN weights by β (query and key keep gain 1)."""
    beta = deepnorm_constants(cfg.n_layers)[1] if cfg.placement == "deepnorm" else 1.0
    scaled = {block.attn.v, block.attn.o, *block.mlp.children()}
    for m in block.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, gain=beta if m in scaled else 1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_block(
    cfg: BlockConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> Block:
    """A block with seeded weights on ``device`` in ``dtype`` (raises BlockError naming the fix)."""
    cfg.check()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = Block(cfg)
    return block.to(device=device, dtype=dtype)


def block_input(
    cfg: BlockConfig,
    batch: int,
    seq: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Tensor:
    """A seeded activation [batch, seq, hidden] (tokens = batch × seq), unit scale like a normalized stream."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(batch, seq, cfg.hidden, generator=gen, device=device).to(dtype)


# ---- float64 copy and the correctness check ----------------------------------------------------------
def float64_copy(module: nn.Module) -> nn.Module:
    """The same block (or stack) with the same weights in float64, norms through their float64 reference
    formulas: the ground truth a block's output and gradients are checked against before timing."""
    ref = copy.deepcopy(module).to(torch.float64)
    for m in ref.modules():
        if isinstance(m, Norm):
            m.impl = "reference"
    return ref


@dataclass(frozen=True)
class BlockCheck:
    """Errors of a module's output and of its gradients (input and every parameter) against float64."""

    output: Errors
    grads: Errors | None


def _named_grads(module: nn.Module, x: Tensor | None) -> tuple[list[Tensor], list[str]]:
    grads, names = [], []
    if x is not None and x.grad is not None:
        grads.append(x.grad)
        names.append("dx")
    for name, p in module.named_parameters():
        if p.grad is not None:
            grads.append(p.grad)
            names.append(f"d{name}")
    return grads, names


def check_against_float64(module: nn.Module, x: Tensor, backward: bool = True, seed: int = 0) -> BlockCheck:
    """Run ``module`` on ``x`` and its float64 copy on the same values; compare outputs and (with
    ``backward``) gradients under the same seeded upstream gradient. Judge with ``gate.gate``."""
    ref = float64_copy(module)
    floating = x.is_floating_point()
    xa = x.detach().clone().requires_grad_(backward and floating)
    xr = (x.detach().double() if floating else x.detach().clone()).requires_grad_(backward and floating)
    module.zero_grad(set_to_none=True)
    y = module(xa)
    y_ref = ref(xr)
    out = errors_vs_reference([y], [y_ref], ["output"])
    if not backward:
        return BlockCheck(out, None)
    gen = torch.Generator(device=y.device).manual_seed(seed)
    dy = torch.randn(y.shape, generator=gen, device=y.device, dtype=torch.float32)
    y.backward(dy.to(y.dtype))
    y_ref.backward(dy.double())
    grads, names = _named_grads(module, xa if floating else None)
    grads_ref, _ = _named_grads(ref, xr if floating else None)
    module.zero_grad(set_to_none=True)
    return BlockCheck(out, grad_errors(grads, grads_ref, names))


def grad_errors(actual: list[Tensor], expected: list[Tensor], names: list[str]) -> Errors:
    """Errors of every gradient; one the math makes exactly zero (a bias right before a BatchNorm, which
    subtracts it again) is judged on the scale of the largest gradient, since its own scale is rounding."""
    top = max((e.abs().max().item() for e in expected), default=0.0)
    live = [i for i, e in enumerate(expected) if e.abs().max().item() > 1e-12 * top]
    errs = errors_vs_reference([actual[i] for i in live], [expected[i] for i in live], [names[i] for i in live])
    max_abs, max_rel, worst = errs.max_abs, errs.max_rel, errs.worst
    for i in sorted(set(range(len(expected))) - set(live)):
        d = (actual[i].detach().double() - expected[i]).abs().max().item()
        if not math.isfinite(d):
            return Errors(math.inf, math.inf, math.inf, names[i])
        max_abs = max(max_abs, d)
        if d / max(top, 1e-30) > max_rel:
            max_rel, worst = d / max(top, 1e-30), names[i]
    return Errors(max_abs, max_rel, errs.rel_l2, worst, errs.overflow)
