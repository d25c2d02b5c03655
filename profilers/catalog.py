"""The catalogue: every name NormScope measures, what it supports, and how it is shown.

One torch-free source for variant and implementation names, display names, the
dtypes, modes and devices each implementation supports, the per-dtype
tolerances of the correctness gate, and why a combination cannot be measured.
The measuring registry (``profilers/measure/variants.py``) holds the formulas
under these names; a test checks that the two agree.
"""

from __future__ import annotations

import importlib.util
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


_BOTH = frozenset({"cpu", "cuda"})
IMPLS: dict[str, ImplInfo] = {
    i.name: i
    for i in (
        ImplInfo("eager", "the textbook formula written as separate torch ops (one kernel per op)", _BOTH),
        ImplInfo("native", "torch's own fused operator (e.g. F.layer_norm), where one exists", _BOTH),
        ImplInfo("compiled", "torch.compile of the eager formula (fullgraph, static shapes, compiled fresh)", _BOTH),
        ImplInfo("liger", "liger-kernel's Triton kernels (CUDA only, when installed)", frozenset({"cuda"})),
    )
}
LIGER_VARIANTS = ("rmsnorm", "layernorm")

MODES: dict[str, str] = {
    "fwd": "forward only (inference)",
    "bwd": "backward only, through a kept forward graph",
    "fwdbwd": "forward and backward (training)",
}
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

# Correctness gate: (max |out-ref| / max |ref|, ‖out-ref‖ / ‖ref‖) allowed per dtype.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-5),
    "bfloat16": (3e-2, 1.5e-2),
    "float16": (4e-3, 2e-3),
}


def label(variant: str, impl: str | None = None) -> str:
    """The display name: 'RMSNorm compiled'."""
    name = VARIANTS[variant].display if variant in VARIANTS else variant
    return f"{name} {impl}" if impl else name


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
    return None
