"""What to measure: declarative specs that round-trip through JSON, one per kind of run.

``sweep.py`` is the kernel (and block) sweep; each lab adds its spec module here
and registers its parser in ``PARSERS`` so the store can validate an imported
run of that kind.
"""

from collections.abc import Callable
from typing import Any

from .blocks import BlockSweepSpec
from .drift import DriftSpec
from .numerics import NumericsSpec
from .sweep import (
    CACHE_STATES,
    CPU_ALLOCATORS,
    CPU_PAGES,
    CPU_PLACEMENTS,
    CUDA_LAUNCHES,
    DTYPE_ALIASES,
    DTYPES,
    ENERGY_WINDOWS_S,
    FLUSH_METHODS,
    IMPLS,
    MAX_HIDDEN,
    MAX_TOKENS,
    MODES,
    PRESETS,
    ROUND_PRESETS,
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
from .training import TrainingSpec

# run kind → the parser of its spec dict (raises SpecError); the store validates imports with it
PARSERS: dict[str, Callable[[Any], Any]] = {
    "kernels": SweepSpec.from_dict,
    "blocks": BlockSweepSpec.from_dict,
    "numerics": NumericsSpec.from_dict,
    "drift": DriftSpec.from_dict,
    "training": TrainingSpec.from_dict,
}

__all__ = [
    "CACHE_STATES",
    "CPU_ALLOCATORS",
    "CPU_PAGES",
    "CPU_PLACEMENTS",
    "CUDA_LAUNCHES",
    "DTYPES",
    "DTYPE_ALIASES",
    "ENERGY_WINDOWS_S",
    "FLUSH_METHODS",
    "IMPLS",
    "MAX_HIDDEN",
    "MAX_TOKENS",
    "MODES",
    "PARSERS",
    "PRESETS",
    "ROUND_PRESETS",
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
