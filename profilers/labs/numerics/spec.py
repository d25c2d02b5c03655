"""What the numerics lab measures: variant × dtype × eps × input family, as a spec that round-trips through JSON.

The lab asks how a normalization layer behaves when its denominator is stressed
in reduced precision: an eps that rounds to zero in fp16, a variance that
overflows, a constant row whose variance is exactly 0. Every cell is compared
with a float64 reference, so the names here say *what* runs; the numbers live in
the store.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...spec import JsonSpec, SpecError, _check_device

NUMERICS_VARIANTS: tuple[str, ...] = ("layernorm", "rmsnorm", "dyt", "groupnorm", "batchnorm")
# fp8 names are torch's: e4m3 "fn" (finite, no inf) and e5m2
NUMERICS_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16", "float8_e4m3fn", "float8_e5m2")
NUMERICS_DTYPE_ALIASES = {
    "fp32": "float32",
    "f32": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp8_e4m3": "float8_e4m3fn",
    "fp8e4m3": "float8_e4m3fn",
    "e4m3": "float8_e4m3fn",
    "float8_e4m3": "float8_e4m3fn",
    "fp8_e5m2": "float8_e5m2",
    "fp8e5m2": "float8_e5m2",
    "e5m2": "float8_e5m2",
}
DTYPE_SHORT = {
    "float32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "float8_e4m3fn": "fp8 e4m3",
    "float8_e5m2": "fp8 e5m2",
}

# how the layer is computed in a cell; the help text is what people read
NUMERICS_IMPLS: dict[str, str] = {
    "eager": "the formula with every op in the dtype and eps held in the dtype (a hand-written module after "
    ".half(), or a low-precision kernel without upcast)",
    "upcast": "the formula with statistics in fp32 and the output rounded to the dtype (what careful kernels do)",
    "native": "torch's fused operator called on tensors of the dtype (F.layer_norm, F.rms_norm, F.group_norm, "
    "F.batch_norm in eval mode); it may upcast internally",
}

# input families that stress the denominator; the recorded family comes from a model (``recorded``)
INPUTS: dict[str, str] = {
    "typical": "Gaussian rows at unit scale (a healthy activation)",
    "zero": "all-zero rows (padding tokens; the pytorch#41527 case)",
    "constant": "constant rows at 0.1, 1, 3 and -7.5: variance exactly 0",
    "near_constant": "rows of 1 + 0.001·noise: a variance a million times below the mean's square",
    "tiny_1e-2": "Gaussian rows scaled by 1e-2 (variance 1e-4)",
    "tiny_1e-4": "Gaussian rows scaled by 1e-4 (variance 1e-8, below fp16's smallest normal)",
    "tiny_1e-6": "Gaussian rows scaled by 1e-6 (variance 1e-12)",
    "large": "Gaussian rows scaled by 1000: |x| > 256, so x² overflows fp16 (max 65504)",
    "mixed": "a padded batch: typical rows with zero, constant, near-constant and large rows interleaved",
}
RECORDED = "recorded"
RECORDED_HELP = "activations recorded from a real model: the inputs of its normalization layers, through hooks"

# eps 1e-12 … 1e-2 on a log grid, every decade: it holds each library default below
DEFAULT_EPS: tuple[float, ...] = tuple(10.0**-k for k in range(12, 1, -1))
# library defaults, for the page and the report (torch.nn.RMSNorm's default depends on the dtype)
LIBRARY_EPS: dict[str, str] = {
    "torch.nn.LayerNorm / GroupNorm / BatchNorm": "1e-5",
    "torch.nn.RMSNorm": "None → torch.finfo(dtype).eps",
    "Hugging Face BERT (layer_norm_eps)": "1e-12",
    "Hugging Face Llama (rms_norm_eps default)": "1e-6",
    "T5 (layer_norm_epsilon)": "1e-6",
    "flax.linen.LayerNorm": "1e-6",
    "Keras LayerNormalization / BatchNormalization": "1e-3",
}
MAX_ROWS = 4096
MAX_HIDDEN = 8192
DEMO_MODEL = "demo"  # the drift demo's byte-level language model, trained by the training lab on Shakespeare
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_]\w*")


def normalize_numerics_dtype(name: str) -> str:
    key = str(name).strip().lower().removeprefix("torch.")
    key = NUMERICS_DTYPE_ALIASES.get(key, key)
    if key not in NUMERICS_DTYPES:
        raise SpecError(
            f"unknown dtype {name!r}: use one of {', '.join(NUMERICS_DTYPES)} (or fp32, bf16, fp16, e4m3, e5m2)"
        )
    return key


def check_import_path(path: Any, what: str = "--model") -> str:
    """A user's model as ``package.module:function``; never a file to unpickle."""
    if not isinstance(path, str) or not _IMPORT_PATH.fullmatch(path.strip()):
        raise SpecError(
            f"{what} {path!r} is not an import path: write package.module:function (a function that returns "
            "the model and a data iterator)"
        )
    return path.strip()


def check_args(args: Any) -> dict[str, str]:
    if not isinstance(args, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in args.items()):
        raise SpecError("model arguments must be text KEY=VALUE pairs, e.g. --arg split=val")
    for k in args:
        if not k.isidentifier():
            raise SpecError(f"model argument name {k!r} is not a Python identifier: write KEY=VALUE")
    return dict(sorted(args.items()))


def _choices(kind: str, values: Any, allowed: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
        raise SpecError(f"{kind}s must be a non-empty list: choose from {', '.join(allowed)}")
    out: list[str] = []
    for v in values:
        if v not in allowed:
            raise SpecError(f"unknown {kind} {v!r}: use one of {', '.join(allowed)}")
        if v not in out:
            out.append(v)
    return tuple(out)


def _whole(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SpecError(f"{name} must be a whole number in [{lo}, {hi}], got {v!r}")
    return v


@dataclass(frozen=True)
class NumericsSpec(JsonSpec):
    """A numerics run: every (variant, dtype, eps, input family, implementation) cell against float64."""

    _what: ClassVar[str] = "numerics spec"

    variants: tuple[str, ...] = NUMERICS_VARIANTS
    dtypes: tuple[str, ...] = NUMERICS_DTYPES
    eps: tuple[float, ...] = DEFAULT_EPS
    inputs: tuple[str, ...] = tuple(INPUTS)
    impls: tuple[str, ...] = tuple(NUMERICS_IMPLS)
    rows: int = 64
    hidden: int = 256
    groups: int = 8
    recorded: str | None = None  # "demo", or a user's package.module:function
    recorded_args: dict[str, str] = field(default_factory=dict)
    recorded_rows: int = 256
    device: str = "cpu"
    seed: int = 0
    label: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "variants", _choices("variant", self.variants, NUMERICS_VARIANTS))
        if isinstance(self.dtypes, str) or not isinstance(self.dtypes, (list, tuple)) or not self.dtypes:
            raise SpecError(f"dtypes must be a non-empty list: choose from {', '.join(NUMERICS_DTYPES)}")
        set_(self, "dtypes", tuple(dict.fromkeys(normalize_numerics_dtype(d) for d in self.dtypes)))
        set_(self, "eps", _check_eps(self.eps))
        set_(self, "inputs", _choices("input family", self.inputs, tuple(INPUTS)))
        set_(self, "impls", _choices("implementation", self.impls, tuple(NUMERICS_IMPLS)))
        _whole("rows", self.rows, 2, MAX_ROWS)
        _whole("hidden", self.hidden, 2, MAX_HIDDEN)
        _whole("groups", self.groups, 1, MAX_HIDDEN)
        if "groupnorm" in self.variants and self.hidden % self.groups:
            raise SpecError(f"groupnorm needs hidden divisible by groups: {self.hidden} % {self.groups} ≠ 0")
        if self.recorded is not None and self.recorded != DEMO_MODEL:
            set_(self, "recorded", check_import_path(self.recorded, "recorded model"))
        set_(self, "recorded_args", check_args(self.recorded_args))
        _whole("recorded_rows", self.recorded_rows, 2, MAX_ROWS)
        set_(self, "device", _check_device(self.device))
        _whole("seed", self.seed, 0, 2**31 - 1)
        if self.label is not None and (not isinstance(self.label, str) or len(self.label) > 200):
            raise SpecError("label must be text of at most 200 characters")

    @property
    def families(self) -> tuple[str, ...]:
        """The input families measured: the synthetic ones, then the recorded one when a model is given."""
        return (*self.inputs, RECORDED) if self.recorded else self.inputs

    def cells(self) -> int:
        """How many cells the run measures (DyT has no eps, so it has one eps column)."""
        per_eps = sum(len(self.eps) if v != "dyt" else 1 for v in self.variants)
        return per_eps * len(self.dtypes) * len(self.families) * len(self.impls)


def _check_eps(values: Any) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise SpecError("eps must be a non-empty list of numbers, e.g. --eps 1e-12,1e-6,1e-5")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v < 1:
            raise SpecError(f"eps {v!r} is out of range: each eps is a number in (0, 1), e.g. 1e-5")
        out.append(float(v))
    return tuple(sorted(set(out)))


def parse_eps(text: str) -> tuple[float, ...]:
    """``1e-12,1e-6`` or ``decades`` (1e-12 … 1e-2, every decade)."""
    if text.strip() == "decades":
        return DEFAULT_EPS
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise SpecError(f"--eps {text!r} is not a list of numbers: write e.g. 1e-12,1e-6,1e-5 or decades") from None
    return _check_eps(values)
