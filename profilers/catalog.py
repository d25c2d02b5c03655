"""The catalogue: every name NormScope measures, what it supports, and how it is shown.

One torch-free source for variant and implementation names, display names, the
dtypes, modes and devices each implementation supports, the per-dtype
tolerances of the correctness gate, and why a combination cannot be measured.
The measuring registry (``profilers/measure/subjects/variants.py``) holds the formulas
under these names; a test checks that the two agree.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class VariantInfo:
    name: str
    display: str
    description: str
    inputs: tuple[str, ...]  # tensor names in call order; the first is the activation x
    param_inputs: tuple[str, ...]  # which of them are per-channel (or scalar) parameters
    n_outputs: int
    native_note: str  # what "native" means here, or why there is none
    has_native: bool = True

    def param_numel(self, hidden: int) -> int:
        return sum(1 if n == "alpha" else hidden for n in self.param_inputs)

    @property
    def activation_inputs(self) -> tuple[str, ...]:
        return tuple(n for n in self.inputs if n in ("x", "residual", "f"))


@dataclass(frozen=True)
class Config:
    """Hyper-parameters shared by every variant of one sweep."""

    eps: float = 1e-5
    groups: int = 32
    dyt_alpha: float = 0.5
    layerscale_init: float = 0.1

    def unsupported(self, variant: str, tokens: int, hidden: int) -> str | None:
        if variant == "batchnorm" and tokens < 2:
            return "batchnorm needs at least 2 tokens to compute batch statistics"
        if variant == "groupnorm" and hidden % self.groups:
            return f"groupnorm needs hidden divisible by groups={self.groups}: choose another --groups or hidden"
        return None


VARIANTS: dict[str, VariantInfo] = {
    v.name: v
    for v in (
        VariantInfo(
            "layernorm",
            "LayerNorm",
            "LayerNorm: (x-mean)/sqrt(var+eps)·γ+β over hidden",
            ("x", "weight", "bias"),
            ("weight", "bias"),
            1,
            "F.layer_norm",
        ),
        VariantInfo(
            "rmsnorm",
            "RMSNorm",
            "RMSNorm: x/sqrt(mean(x²)+eps)·γ over hidden",
            ("x", "weight"),
            ("weight",),
            1,
            "F.rms_norm",
        ),
        VariantInfo(
            "batchnorm",
            "BatchNorm",
            "BatchNorm, training statistics over tokens (the contrast)",
            ("x", "weight", "bias"),
            ("weight", "bias"),
            1,
            "F.batch_norm(training=True)",
        ),
        VariantInfo(
            "groupnorm",
            "GroupNorm",
            "GroupNorm: statistics over groups of channels in each token",
            ("x", "weight", "bias"),
            ("weight", "bias"),
            1,
            "F.group_norm",
        ),
        VariantInfo(
            "dyt",
            "DyT",
            "Dynamic Tanh: γ·tanh(αx)+β, no statistics",
            ("x", "alpha", "weight", "bias"),
            ("alpha", "weight", "bias"),
            1,
            "torch has no fused DyT op",
            has_native=False,
        ),
        VariantInfo(
            "layerscale",
            "LayerScale",
            "LayerScale residual: x + λ⊙f",
            ("x", "f", "lam"),
            ("lam",),
            1,
            "torch.addcmul (one kernel)",
        ),
        VariantInfo(
            "add_rmsnorm",
            "Add+RMSNorm",
            "Residual add fused with RMSNorm: (rmsnorm(x+r), x+r)",
            ("x", "residual", "weight"),
            ("weight",),
            2,
            "torch.add then F.rms_norm (torch has no fused add+RMSNorm op)",
        ),
    )
}


@dataclass(frozen=True)
class ImplInfo:
    """How a variant is computed, and what it supports (anything else becomes a skipped point)."""

    name: str
    help: str  # one line for people, shown where the name first appears
    devices: frozenset[str]
    dtypes: frozenset[str] = frozenset({"float32", "bfloat16", "float16"})
    modes: frozenset[str] = frozenset({"fwd", "bwd", "fwdbwd"})
    kernel: bool = True  # a kernel sweep can time it alone (the model's own module is a models-lab candidate)


_BOTH = frozenset({"cpu", "cuda"})
IMPLS: dict[str, ImplInfo] = {
    i.name: i
    for i in (
        ImplInfo("eager", "the textbook formula written as separate torch ops (one kernel per op)", _BOTH),
        ImplInfo("native", "torch's own fused operator (e.g. F.layer_norm), where one exists", _BOTH),
        ImplInfo("compiled", "torch.compile of the eager formula (fullgraph, static shapes, compiled fresh)", _BOTH),
        ImplInfo("liger", "liger-kernel's Triton kernels (CUDA only, when installed)", frozenset({"cuda"})),
        ImplInfo("quack", "QuACK's CuTe DSL RMSNorm (Hopper or Blackwell GPUs, when installed)", frozenset({"cuda"})),
        ImplInfo("own", "the model's own norm module, as its transformers definition writes it", _BOTH, kernel=False),
    )
}
KERNEL_IMPLS: dict[str, ImplInfo] = {name: info for name, info in IMPLS.items() if info.kernel}
# When two candidates are equivalent within the margin, the simpler one is recommended: the model's own module
# (nothing to change), torch's fused operator, the formula in plain ops, torch.compile (a compile per shape),
# then third-party kernels (a package to install and keep in step with torch).
SIMPLICITY = ("own", "native", "eager", "compiled", "liger", "quack")
# Margins of practical equivalence (analysis/equivalence.py): a difference inside ±margin is not worth acting on.
KERNEL_MARGIN_PCT = 2.0  # a norm kernel alone
STEP_MARGIN_PCT = 1.0  # a whole block, forward, backward or training step

QUACK_VARIANTS = ("rmsnorm",)
LIGER_VARIANTS = ("rmsnorm", "layernorm")

# point statuses with a time: ok (clean), imprecise (past its dtype's tolerance, right in fp32), unstable
# (its interval stayed too wide, or the machine was busy); skipped and failed points carry no time
POINT_STATUSES = ("ok", "imprecise", "unstable", "skipped", "failed")
TIMED_STATUSES = ("ok", "imprecise", "unstable")

MODES: dict[str, str] = {
    "fwd": "forward only (inference)",
    "bwd": "backward only, through a kept forward graph",
    "fwdbwd": "forward and backward (training)",
}
STEP_MODE = "step"  # a block point only: one training step of a small stack (forward, backward, AdamW update)
DTYPES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}  # name → bytes per element
DTYPE_ALIASES = {
    "fp32": "float32",
    "f32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
}
DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

# Correctness gate. The storage rounding of each dtype is torch.testing.assert_close's default rtol; the
# statistics are accumulated in fp32 (or fp64 for fp32 references), whose rounding grows about with
# log2 of the number of elements summed, so each tolerance adds an allowance for that reduction:
#   max-rel tolerance = 2·rtol(dtype) + 4·rtol(fp32)·log2(n)      (max |out-ref| / max |ref|)
#   rel-L2 tolerance  =   rtol(dtype) +   rtol(fp32)·log2(n)      (‖out-ref‖ / ‖ref‖)
# n is what one output element's statistics sum over (hidden, hidden/groups or tokens; with backward also
# the tokens a parameter gradient sums over). Beyond tolerance but not wrong is *imprecise*: timed, shown
# and flagged, as is an element whose float64 reference lies beyond the dtype's range and that came out as the
# infinity of its sign (the correctly rounded value). *Wrong* (never timed): any other NaN/Inf, rel-L2 >
# WRONG_REL_L2, or the same implementation fails the fp32 tolerance in fp32 (a logic error, not rounding).
RTOL: dict[str, float] = {"float32": 1.3e-6, "bfloat16": 1.6e-2, "float16": 1e-3}
WRONG_REL_L2 = 0.25


def reduced_elements(variant: str, mode: str, tokens: int, hidden: int, cfg: Config) -> int:
    """How many elements one output's statistics (and, with backward, a parameter gradient) sum over."""
    n = {"layernorm": hidden, "rmsnorm": hidden, "add_rmsnorm": hidden, "batchnorm": tokens}.get(variant, 1)
    if variant == "groupnorm":
        n = max(1, hidden // cfg.groups)
    if mode != "fwd" and VARIANTS[variant].param_inputs:
        n = max(n, tokens)
    return max(2, n)


def tolerance(dtype: str, n_reduced: int, roundings: int = 1) -> tuple[float, float]:
    """(max-rel, rel-L2) allowed for ``dtype`` when statistics sum over ``n_reduced`` elements.

    ``roundings``: how many times the result is rounded to the dtype on its way (1 for a norm; a whole
    transformer block rounds its activations at each of about BLOCK_ROUNDINGS sequential ops)."""
    acc = RTOL["float32"] * math.log2(max(2, n_reduced))
    return 2 * RTOL[dtype] * roundings + 4 * acc, RTOL[dtype] * roundings + acc


BLOCK_ROUNDINGS = 8  # q/k/v, attention, output projection, residual, norms, MLP in and out


def label(variant: str, impl: str | None = None) -> str:
    """The display name: 'RMSNorm compiled'."""
    name = VARIANTS[variant].display if variant in VARIANTS else variant
    return f"{name} {impl}" if impl else name


def liger_available() -> str | None:
    """None when liger-kernel can be imported, else the reason."""
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install liger-kernel on a CUDA machine)"
    return None


def quack_available() -> str | None:
    """None when quack-kernels can be imported, else the reason (its kernels also need compute capability 9.0+,
    which the measuring side checks)."""
    if importlib.util.find_spec("quack") is None:
        return "quack-kernels is not installed (pip install quack-kernels on a Hopper or Blackwell machine)"
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
    if not i.kernel:
        return f"{impl} is {i.help}: a candidate of the models lab, not a kernel"
    if device_type not in i.devices:
        return f"{impl} runs only on {', '.join(sorted(i.devices))}"
    if dtype not in i.dtypes:
        return f"{impl} does not support {dtype}"
    if mode not in i.modes:
        return f"{impl} does not support mode {mode}"
    reason = cfg.unsupported(variant, tokens, hidden)
    if reason:
        return reason
    if impl == "native" and not v.has_native:
        return v.native_note
    if impl == "compiled" and device_type == "cpu":
        return c_compiler_available()
    if impl == "liger":
        if variant not in LIGER_VARIANTS:
            return f"liger-kernel has no {variant} kernel wired in NormScope"
        return liger_available()
    if impl == "quack":
        if variant not in QUACK_VARIANTS:
            return f"QuACK has no {variant} kernel with autograd wired in NormScope"
        return quack_available()
    return None


# ---- transformer blocks: placements, families, which norms fit --------------------------------
# The profiler ranges a block is broken down into (torch.profiler record_function names).
BLOCK_COMPONENTS: tuple[str, ...] = ("attention", "mlp", "norm", "residual")


@dataclass(frozen=True)
class PlacementInfo:
    """Where the norms sit around each sublayer f (attention, MLP) of a residual block."""

    name: str
    display: str
    help: str  # one line: the formula
    final_norm: bool  # the stack ends with a norm before the LM head (the residual stream is not normalized)
    source: str


PLACEMENTS: dict[str, PlacementInfo] = {
    p.name: p
    for p in (
        PlacementInfo(
            "post_ln",
            "Post-LN",
            "x ← N(x + f(x)): the original Transformer",
            False,
            "Vaswani et al. 2017",
        ),
        PlacementInfo(
            "pre_ln",
            "Pre-LN",
            "x ← x + f(N(x)), one norm after the last block",
            True,
            "Xiong et al. 2020",
        ),
        PlacementInfo(
            "pre_ln_layerscale",
            "Pre-LN + LayerScale",
            "x ← x + λ⊙f(N(x)), λ initialised by depth as in CaiT",
            True,
            "Touvron et al. 2021 (CaiT)",
        ),
        PlacementInfo(
            "deepnorm",
            "DeepNorm",
            "x ← N(α·x + f(x)), f's value/output/FFN weights initialised ×β; α, β from the depth",
            False,
            "Wang et al. 2022 (DeepNet)",
        ),
        PlacementInfo(
            "peri_ln",
            "Peri-LN",
            "x ← x + N_out(f(N_in(x))): a norm on both sides of each sublayer (sandwich)",
            True,
            "Ding et al. 2021 (CogView sandwich); Kim et al. 2025 (Peri-LN)",
        ),
    )
}


@dataclass(frozen=True)
class BlockFamilyInfo:
    name: str
    display: str
    help: str
    mlp: str  # "swiglu" or "gelu"
    rope: bool  # rotary position embedding inside attention (else learned absolute positions in the stack)
    causal: bool  # causal attention by default
    bias: bool  # linear layers carry biases
    norms: tuple[str, ...]  # registry variants that fit this block


BLOCK_FAMILIES: dict[str, BlockFamilyInfo] = {
    f.name: f
    for f in (
        BlockFamilyInfo(
            "decoder",
            "Llama-style decoder",
            "norm → causal SDPA attention with RoPE (grouped KV heads) → residual → norm → SwiGLU MLP → residual",
            "swiglu",
            True,
            True,
            False,
            ("layernorm", "rmsnorm", "dyt", "add_rmsnorm", "groupnorm"),
        ),
        BlockFamilyInfo(
            "encoder",
            "BERT/ViT-style encoder",
            "norm → bidirectional SDPA attention → residual → norm → GELU MLP → residual (biases, absolute positions)",
            "gelu",
            False,
            False,
            True,
            ("layernorm", "rmsnorm", "dyt", "add_rmsnorm", "groupnorm", "batchnorm"),
        ),
    )
}
BLOCK_IMPLS: tuple[str, ...] = ("eager", "native")  # a whole block is compiled by the caller (torch.compile)


def block_unsupported(family: str, norm: str, placement: str, impl: str, hidden: int, cfg: Config) -> str | None:
    """Why this block cannot be built, or None when it can."""
    if family not in BLOCK_FAMILIES:
        return f"unknown block family {family!r}: use one of {', '.join(BLOCK_FAMILIES)}"
    if placement not in PLACEMENTS:
        return f"unknown placement {placement!r}: use one of {', '.join(PLACEMENTS)}"
    if norm == "layerscale":
        return "layerscale is a residual scale, not a norm: use placement pre_ln_layerscale"
    if norm == "batchnorm" and family == "decoder":
        return "batchnorm mixes statistics across positions, so a causal decoder would see the future: use encoder"
    if norm not in BLOCK_FAMILIES[family].norms:
        return f"norm {norm!r} does not fit a {family} block: use one of {', '.join(BLOCK_FAMILIES[family].norms)}"
    if impl not in BLOCK_IMPLS:
        return f"blocks are built {' or '.join(BLOCK_IMPLS)}; compile the whole block with torch.compile instead"
    if impl == "native" and not VARIANTS[norm].has_native:
        return f"{VARIANTS[norm].native_note}: build it eager (and compile the block)"
    return cfg.unsupported(norm, 2, hidden)


def deepnorm_constants(n_layers: int) -> tuple[float, float]:
    """DeepNorm's (α, β) for a decoder-only (or encoder-only) stack of ``n_layers`` blocks.

    α = (2N)^(1/4) scales the residual inside the norm, x ← LN(α·x + f(x)); β = (8N)^(-1/4) is the
    Xavier-normal gain of each sublayer's value, output and FFN weights (query and key keep gain 1).
    Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers", arXiv:2203.00555, Fig. 2
    (the encoder-decoder case uses other constants and is not built here).
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    return (2 * n_layers) ** 0.25, (8 * n_layers) ** -0.25


def layerscale_init(depth: int) -> float:
    """LayerScale's initial λ by model depth, as in CaiT (Touvron et al. 2021, "Going deeper with Image
    Transformers", §3): 0.1 up to depth 18, 1e-5 up to 24, 1e-6 for deeper models."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if depth <= 18:
        return 0.1
    if depth <= 24:
        return 1e-5
    return 1e-6
