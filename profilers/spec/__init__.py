"""What to measure: declarative specs that round-trip through JSON, one per kind of run.

``sweep.py`` is the kernel (and block) sweep; each lab adds its spec module here
and registers its parser in ``PARSERS`` so the store can validate an imported
run of that kind.
"""

from collections.abc import Callable
from typing import Any

from .sweep import (
    DTYPE_ALIASES,
    DTYPES,
    ENERGY_WINDOWS_S,
    IMPLS,
    MAX_HIDDEN,
    MAX_TOKENS,
    MODES,
    PRESETS,
    TIMING_METHODS,
    VARIANTS,
    ModelPreset,
    Point,
    SpecError,
    SweepSpec,
    default_cpu_spec,
    default_gpu_spec,
    default_spec,
    normalize_dtype,
    parse_shape,
)

# run kind → the parser of its spec dict (raises SpecError); the store validates imports with it
PARSERS: dict[str, Callable[[Any], Any]] = {
    "kernels": SweepSpec.from_dict,
    "blocks": SweepSpec.from_dict,
}

__all__ = [
    "DTYPES",
    "DTYPE_ALIASES",
    "ENERGY_WINDOWS_S",
    "IMPLS",
    "MAX_HIDDEN",
    "MAX_TOKENS",
    "MODES",
    "PARSERS",
    "PRESETS",
    "TIMING_METHODS",
    "VARIANTS",
    "ModelPreset",
    "Point",
    "SpecError",
    "SweepSpec",
    "default_cpu_spec",
    "default_gpu_spec",
    "default_spec",
    "normalize_dtype",
    "parse_shape",
]
