"""What to measure in a block sweep: the norm choice inside a real transformer block and a training step.

A BlockSweepSpec names a model preset (its block family, hidden size, heads, KV
heads, FFN size and sequence length), the norms, placements and implementations
to compare, the token counts (tokens = batch × sequence length), dtypes and
modes, and the same method fields as a kernel sweep (budget, rounds, cache
state, allocator). With ``step_depth`` it also times one AdamW training step of
a small stack of such blocks (embedding, N blocks, LM head) per norm.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

from ... import catalog
from ...catalog import STEP_MODE
from ...spec import (
    MAX_TOKENS,
    PRESETS,
    JsonSpec,
    LabMethod,
    SpecError,
    _check_choices,
    _check_device,
    check_fields,
    check_lab_method,
    normalize_dtype,
)

BLOCK_IMPLS = ("eager", "native", "compiled")  # compiled: the whole block under torch.compile (eager norms)
BLOCK_MODES = ("fwd", "fwdbwd")
BLOCK_NORMS = ("layernorm", "rmsnorm", "dyt", "add_rmsnorm", "groupnorm", "batchnorm")


@dataclass(frozen=True)
class BlockPoint:
    """One block (or training-step) measurement: the unit the block runner executes."""

    norm: str
    placement: str
    impl: str
    dtype: str
    tokens: int
    mode: str  # fwd | fwdbwd | step

    @property
    def key(self) -> str:
        return f"{self.placement} {self.norm} {self.impl}"

    def describe(self) -> str:
        return f"{self.placement:<17} {self.norm:<11} {self.impl:<8} {self.dtype:<8} {self.tokens:>7} {self.mode}"


@dataclass(frozen=True)
class BlockSweepSpec(LabMethod, JsonSpec):
    _what: ClassVar[str] = "block spec"
    _noun: ClassVar[str] = "block"

    preset: str
    norms: tuple[str, ...] = ("layernorm", "rmsnorm")
    placements: tuple[str, ...] = ("pre_ln",)
    impls: tuple[str, ...] = ("native",)
    tokens: tuple[int, ...] = (2048,)
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = ("fwd", "fwdbwd")
    device: str = "cpu"
    seq_len: int | None = None  # None: the preset's
    step_depth: int | None = None  # time a training step of a stack this deep (None: no step points)
    threads: int | None = None
    warmup_ms: float = 50.0
    budget_ms: float = 1000.0
    rounds: int = 7
    ci_target_pct: float = 3.0
    cache_state: str | None = None
    cpu_allocator: str = "reuse"
    cpu_pages: str = "huge"
    cpu_placement: str = "round"
    baseline: str = "pre_ln layernorm native"
    energy: bool = False
    energy_window_s: float = 1.0
    energy_repeats: int = 3
    seed: int = 0
    label: str | None = None
    sample_ms: float | None = 100.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        p = PRESETS.get(self.preset)
        if p is None or p.family is None:
            blocky = ", ".join(k for k, v in PRESETS.items() if v.family)
            raise SpecError(f"unknown model preset {self.preset!r} for blocks: use one of {blocky}")
        fam = catalog.BLOCK_FAMILIES[p.family]
        set_(self, "norms", _check_choices("norm", self.norms, tuple(n for n in BLOCK_NORMS if n in fam.norms)))
        set_(self, "placements", _check_choices("placement", self.placements, tuple(catalog.PLACEMENTS)))
        set_(self, "impls", _check_choices("implementation", self.impls, BLOCK_IMPLS))
        set_(self, "modes", _check_choices("mode", self.modes, (*BLOCK_MODES, STEP_MODE)))
        if not isinstance(self.dtypes, (list, tuple)) or not self.dtypes:
            raise SpecError("dtypes must be a non-empty list")
        set_(self, "dtypes", tuple(dict.fromkeys(normalize_dtype(str(d)) for d in self.dtypes)))
        set_(self, "device", _check_device(self.device))
        seq = self.seq_len or p.seq_len or 512
        if not isinstance(seq, int) or seq < 1:
            raise SpecError(f"seq_len must be a whole number ≥ 1, got {self.seq_len!r}")
        set_(self, "seq_len", seq)
        toks = self.tokens
        if not isinstance(toks, (list, tuple)) or not toks:
            raise SpecError("tokens must be a non-empty list of token counts (batch × sequence length)")
        for t in toks:
            if isinstance(t, bool) or not isinstance(t, int) or not (1 <= t <= MAX_TOKENS):
                raise SpecError(f"token count {t!r} must be a whole number in 1..{MAX_TOKENS}")
            if t % seq:
                raise SpecError(f"tokens {t} is not a whole number of {seq}-token sequences: use a multiple of {seq}")
        set_(self, "tokens", tuple(dict.fromkeys(toks)))
        if STEP_MODE in self.modes and not self.step_depth:
            raise SpecError("mode 'step' needs step_depth (the depth of the small stack): e.g. --step-depth 2")
        if self.step_depth is not None and (
            isinstance(self.step_depth, bool) or not isinstance(self.step_depth, int) or not 1 <= self.step_depth <= 96
        ):
            raise SpecError(f"step_depth must be 1-96 blocks, got {self.step_depth!r}")
        check_lab_method(self)
        parts = self.baseline.split() if isinstance(self.baseline, str) else []
        if len(parts) != 3:
            raise SpecError(
                f"baseline must be 'PLACEMENT NORM IMPL', e.g. 'pre_ln layernorm native', got {self.baseline!r}"
            )

    # -- what the runner and the store read, as from a kernel sweep -----------------------------
    @property
    def family(self) -> str:
        return PRESETS[self.preset].family or "decoder"

    @property
    def hidden(self) -> int:
        return PRESETS[self.preset].hidden

    def points(self) -> list[BlockPoint]:
        """Block points, token-count-major (one group per tokens × dtype × mode), then the step points."""
        out = [
            BlockPoint(n, pl, i, d, t, m)
            for t, d, m, pl, n, i in itertools.product(
                self.tokens,
                self.dtypes,
                [m for m in self.modes if m != STEP_MODE],
                self.placements,
                self.norms,
                self.impls,
            )
        ]
        if STEP_MODE in self.modes:
            out += [
                BlockPoint(n, pl, i, d, t, STEP_MODE)
                for t, d, pl, n, i in itertools.product(
                    self.tokens, self.dtypes, self.placements, self.norms, self.impls
                )
            ]
        return out

    @classmethod
    def from_dict(cls, d: Any) -> BlockSweepSpec:
        check_fields(cls, d, cls._what)
        if "preset" not in d:
            raise SpecError("a block sweep needs a preset (bert-base, vit-b, llama-3-8b, llama-3-70b)")
        return cls(**d)


def default_block_spec(device: str = "cpu", **overrides: Any) -> BlockSweepSpec:
    """The quick block sweep: BERT-base blocks, LayerNorm vs RMSNorm, Pre-LN and Post-LN, fwd and training."""
    kw: dict[str, Any] = dict(
        preset="bert-base" if device == "cpu" else "llama-3-8b",
        norms=("layernorm", "rmsnorm"),
        placements=("pre_ln", "post_ln"),
        impls=("native",),
        tokens=(2048,) if device == "cpu" else (8192,),
        dtypes=("float32",) if device == "cpu" else ("bfloat16",),
        modes=("fwd", "fwdbwd"),
        device=device,
        budget_ms=1000.0 if device == "cpu" else 200.0,
        warmup_ms=50.0 if device == "cpu" else 25.0,
    )
    kw.update(overrides)
    return BlockSweepSpec(**kw)
