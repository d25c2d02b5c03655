"""How much memory a point will take, estimated before anything is allocated (no torch).

A point's resident memory peaks while its correctness gate runs, not while it
is timed: the float64 reference holds copies of every input and output, its
own temporaries and, in training modes, its gradients and saved tensors. The
estimate counts, per element of the activation (tokens × hidden), in bytes:

forward     inputs and outputs in the dtype and in float64     (a + o)·(E + 8)
            eager fp32 temporaries and float64 reference ones  64
training    + upstream gradients (fp32 draw, dtype, float64)   o·(4 + E + 8)
            + input gradients in the dtype and in float64      a·(E + 8)
            + saved tensors and backward temporaries (fp32, f64) 128
compiled    + 40 in forward (inductor's buffers while compiling)

(a activation inputs, o outputs, E bytes per element), plus 64 MiB (256 MiB
for compiled points) for what does not scale with the shape. It is an upper
bound of the resident-set peak measured on the default CPU sweep and the
BERT-base preset (tests/test_footprint.py forks a process per point and
prints estimate ÷ peak: 1.4-2 at the large shapes on the 2-core VM, where
the same point's peak varied up to 2× between processes); glibc keeps freed memory for reuse in the "reuse"
allocator mode, so the resident set, not the live tensors, is what the
kernel's OOM killer sees.
"""

from __future__ import annotations

import os

from ..catalog import DTYPES, VARIANTS

FIXED_BYTES = 64 << 20
FIXED_COMPILED_BYTES = 256 << 20


def bytes_per_element(variant: str, impl: str, mode: str, dtype: str) -> int:
    v = VARIANTS[variant]
    e = DTYPES[dtype]
    a, o = len(v.activation_inputs), v.n_outputs
    per = (a + o) * (e + 8) + 64
    if mode != "fwd":
        per += o * (4 + e + 8) + a * (e + 8) + 128
    elif impl == "compiled":
        per += 40
    return per


def point_bytes(variant: str, impl: str, mode: str, dtype: str, tokens: int, hidden: int) -> int:
    """An upper estimate of a point's resident-memory peak (the module docstring says how)."""
    fixed = FIXED_COMPILED_BYTES if impl == "compiled" else FIXED_BYTES
    return tokens * hidden * bytes_per_element(variant, impl, mode, dtype) + fixed


LIMIT_ENV = "NORMSCOPE_MEMORY_LIMIT_GIB"
HEADROOM = 0.9  # of what is available: the rest is left to the process's own overhead and the system


def cap_available(available: int, what: str) -> tuple[int, str]:
    """Available memory, capped by ``NORMSCOPE_MEMORY_LIMIT_GIB`` (a sweep on a shared machine may use less)."""
    raw = os.environ.get(LIMIT_ENV)
    if raw:
        try:
            limit = int(float(raw) * 2**30)
        except ValueError:
            return available, what
        if 0 < limit < available:
            return limit, f"the {LIMIT_ENV}={raw} limit ({what}: {available / 2**30:.1f} GiB)"
    return available, what


def does_not_fit(need: int, available: int, what: str) -> str | None:
    """The reason a point of ``need`` bytes cannot run now, or None."""
    if need <= available * HEADROOM:
        return None
    return (
        f"does not fit: needs about {need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB is {what}; "
        "use fewer tokens, a smaller hidden size or a narrower dtype"
    )


def shape_fit(
    spec_points: list[tuple[str, str, str, str, int, int]], available: int, what: str
) -> dict[tuple[int, int], tuple[int, str | None]]:
    """Per shape: the largest need over its points and the reason it does not fit (None when it fits)."""
    out: dict[tuple[int, int], tuple[int, str | None]] = {}
    for variant, impl, mode, dtype, tokens, hidden in spec_points:
        need = point_bytes(variant, impl, mode, dtype, tokens, hidden)
        prev = out.get((tokens, hidden), (0, None))[0]
        if need > prev:
            out[(tokens, hidden)] = (need, does_not_fit(need, available, what))
    return out
