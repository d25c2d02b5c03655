"""What the training-stability lab runs: a declarative grid of small language models that round-trips through JSON.

A TrainingSpec says *what* trains (placements × learning rates × warmups × seeds × depths, a
fine-tuning comparison, a norm-quality comparison, the init gradient-norm profile) and holds no
result. Every field is validated when the spec is built, so a bad flag or file fails before a model
is built or anything is stored. ``cells()`` lists the units of work in a stable order; each has a
key, and a grid that was stopped resumes by skipping the keys already stored.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ... import catalog
from ...spec import JsonSpec, SpecError

PLACEMENTS: tuple[str, ...] = tuple(catalog.PLACEMENTS)
FAMILIES: tuple[str, ...] = tuple(catalog.BLOCK_FAMILIES)
TRAIN_DTYPES = ("float32", "bfloat16")
MAX_DEPTH = 96
VOCAB = 256  # byte-level tokens: any UTF-8 text, no tokenizer to ship


def norm_impl(norm: str) -> str:
    """The block implementation the lab trains with: torch's fused op where one exists, else composed ops."""
    return "native" if catalog.VARIANTS[norm].has_native else "eager"


@dataclass(frozen=True)
class Cell:
    """One unit of work: an init gradient-norm profile, a training run, or a pretrain-then-fine-tune pair."""

    kind: str
    key: str
    placement: str
    norm: str
    depth: int
    seed: int
    lr: float | None = None
    warmup: int | None = None
    groups: tuple[str, ...] = ()  # which experiments use it: grid, quality

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["groups"] = list(self.groups)
        return d


def _lr_text(lr: float) -> str:
    return f"{lr:g}"


def _int(name: str, v: Any, lo: int, hi: int, hint: str = "") -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi):
        raise SpecError(f"{name} must be a whole number in [{lo}, {hi}], got {v!r}" + (f": {hint}" if hint else ""))
    return v


def _float(name: str, v: Any, lo: float, hi: float, lo_open: bool = True) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or not ((lo < v) if lo_open else (lo <= v)) or v > hi:
        raise SpecError(f"{name} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def _tuple(name: str, values: Any, allow_empty: bool = False) -> tuple[Any, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or (not values and not allow_empty):
        raise SpecError(f"{name} must be a {'' if allow_empty else 'non-empty '}list")
    return tuple(dict.fromkeys(values))


def _choices(name: str, values: Any, allowed: tuple[str, ...], allow_empty: bool = False) -> tuple[str, ...]:
    out = _tuple(name, values, allow_empty)
    one = name.removesuffix("s")
    for v in out:
        if v not in allowed:
            raise SpecError(f"unknown {one} {v!r}: use one of {', '.join(allowed)}")
    return out


def _ints(name: str, values: Any, lo: int, hi: int, allow_empty: bool = False, hint: str = "") -> tuple[int, ...]:
    return tuple(_int(name, v, lo, hi, hint) for v in _tuple(name, values, allow_empty))


def _floats(name: str, values: Any, lo: float, hi: float) -> tuple[float, ...]:
    return tuple(_float(name, v, lo, hi) for v in _tuple(name, values))


@dataclass(frozen=True)
class TrainingSpec(JsonSpec):
    """A training-stability grid. Learning rates are peak rates reached after ``warmup`` linear steps."""

    _what: ClassVar[str] = "training spec"

    # the grid: placement × depth × learning rate × warmup × seed, with one norm
    placements: tuple[str, ...] = ("post_ln", "pre_ln", "pre_ln_layerscale", "deepnorm", "peri_ln")
    norm: str = "layernorm"
    depths: tuple[int, ...] = (6,)
    lrs: tuple[float, ...] = (1e-3, 3e-3)
    warmups: tuple[int, ...] = (0, 50)
    seeds: tuple[int, ...] = (0, 1)
    # the model: a stack of blocks of one family, byte-level tokens
    family: str = "decoder"
    hidden: int = 64
    heads: int = 4
    kv_heads: int | None = None
    ffn: int | None = None
    # data and schedule
    seq_len: int = 64
    batch: int = 16
    steps: int = 300
    eval_every: int = 50
    eval_batches: int = 8
    log_every: int = 10
    # AdamW, clipping, and what counts as divergence
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    clip_norm: float | None = None  # None: clipping off
    divergence_margin: float = 1.0  # diverged when a loss is NaN/Inf or above the initial loss + this (nats)
    learned_margin: float = 0.1  # trained when the final validation loss is this far below the unigram baseline
    # gradient norms by layer at initialisation (Xiong et al. 2020, Fig. 3), averaged over seeds
    init_depths: tuple[int, ...] = (6, 12)
    init_seeds: tuple[int, ...] = (0, 1, 2, 3)
    # pretrain on the corpus without one document, then fine-tune on that document alone
    finetune_document: str | None = "hamlet"
    finetune_placements: tuple[str, ...] = ("post_ln", "pre_ln")
    pretrain_steps: int = 200
    pretrain_lr: float = 1e-3
    pretrain_warmup: int = 50
    finetune_steps: int = 100
    finetune_lrs: tuple[float, ...] = (1e-3, 3e-3)
    finetune_warmup: int = 0
    # norm quality: the same placement trained with each norm
    quality_norms: tuple[str, ...] = ("layernorm", "rmsnorm")
    quality_placement: str = "pre_ln"
    quality_lr: float | None = None  # None: the grid's first learning rate
    quality_warmup: int | None = None  # None: the grid's last warmup
    quality_seeds: tuple[int, ...] = (0, 1, 2)
    quality_margin_pct: float = 1.0  # "equal quality": the difference's 95% CI within ± this % of the loss
    # corpus: user text files, or Shakespeare (empty)
    corpus: tuple[str, ...] = ()
    val_fraction: float = 0.1
    # where
    device: str = "cpu"
    threads: int | None = None
    workers: int = 1  # CPU only: training runs trained side by side in this many processes
    ray: str | None = None  # a Ray cluster to train the cells on: auto, local or an address; None: this machine
    dtype: str = "float32"
    label: str | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        seed_max = 2**31 - 1
        set_(self, "placements", _choices("placements", self.placements, PLACEMENTS))
        if self.family not in FAMILIES:
            raise SpecError(f"unknown block family {self.family!r}: use one of {', '.join(FAMILIES)}")
        set_(self, "depths", _ints("depths", self.depths, 1, MAX_DEPTH))
        set_(self, "lrs", _floats("learning rates", self.lrs, 0, 100))
        set_(self, "seeds", _ints("seeds", self.seeds, 0, seed_max))
        for name in ("hidden", "heads", "seq_len", "batch"):
            _int(name, getattr(self, name), 1, 1 << 16)
        _int("steps", self.steps, 1, 10_000_000)
        set_(self, "warmups", _ints("warmups", self.warmups, 0, self.steps, hint="a warmup is at most the steps"))
        if self.kv_heads is not None:
            _int("kv_heads", self.kv_heads, 1, self.heads)
        if self.ffn is not None:
            _int("ffn", self.ffn, 1, 1 << 20)
        for name in ("eval_every", "log_every"):
            _int(name, getattr(self, name), 1, 10_000_000)
        _int("eval_batches", self.eval_batches, 1, 10_000)
        _float("weight_decay", self.weight_decay, 0, 10, lo_open=False)
        _float("beta1", self.beta1, 0, 0.999999, lo_open=False)
        _float("beta2", self.beta2, 0, 0.999999, lo_open=False)
        if self.clip_norm is not None:
            _float("clip_norm", self.clip_norm, 0, 1e6)
        _float("divergence_margin", self.divergence_margin, 0, 1e3)
        _float("learned_margin", self.learned_margin, 0, 100, lo_open=False)
        set_(self, "init_depths", _ints("init_depths", self.init_depths, 1, MAX_DEPTH, allow_empty=True))
        set_(self, "init_seeds", _ints("init_seeds", self.init_seeds, 0, seed_max))
        doc = self.finetune_document
        if doc is not None and (not isinstance(doc, str) or not doc.strip()):
            raise SpecError("finetune_document must be a document name (a file's stem, e.g. hamlet) or null")
        set_(self, "finetune_placements", _choices("finetune_placements", self.finetune_placements, PLACEMENTS, True))
        _int("pretrain_steps", self.pretrain_steps, 1, 10_000_000)
        _int("finetune_steps", self.finetune_steps, 1, 10_000_000)
        _float("pretrain_lr", self.pretrain_lr, 0, 100)
        _int("pretrain_warmup", self.pretrain_warmup, 0, self.pretrain_steps, "at most pretrain_steps")
        _int("finetune_warmup", self.finetune_warmup, 0, self.finetune_steps, "at most finetune_steps")
        set_(self, "finetune_lrs", _floats("finetune_lrs", self.finetune_lrs, 0, 100))
        set_(self, "quality_norms", _tuple("quality_norms", self.quality_norms, allow_empty=True))
        fits = catalog.BLOCK_FAMILIES[self.family].norms
        for n in (self.norm, *self.quality_norms):
            if not isinstance(n, str) or n not in catalog.VARIANTS:
                raise SpecError(f"unknown norm {n!r}: use one of {', '.join(fits)}")
        if self.quality_placement not in PLACEMENTS:
            raise SpecError(f"unknown quality placement {self.quality_placement!r}: use one of {', '.join(PLACEMENTS)}")
        if self.quality_lr is not None:
            _float("quality_lr", self.quality_lr, 0, 100)
        if self.quality_warmup is not None:
            _int("quality_warmup", self.quality_warmup, 0, self.steps, "at most steps")
        set_(self, "quality_seeds", _ints("quality_seeds", self.quality_seeds, 0, seed_max))
        _float("quality_margin_pct", self.quality_margin_pct, 0, 100)
        if not isinstance(self.corpus, (list, tuple)) or not all(isinstance(c, str) and c for c in self.corpus):
            raise SpecError("corpus must be a list of text file paths (empty: the Shakespeare corpus)")
        set_(self, "corpus", tuple(self.corpus))
        _float("val_fraction", self.val_fraction, 0, 0.5)
        if not isinstance(self.device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise SpecError(f"unknown device {self.device!r}: use cpu, cuda or cuda:N")
        if self.device == "cuda":
            set_(self, "device", "cuda:0")
        if self.threads is not None:
            _int("threads", self.threads, 1, 4096)
        _int("workers", self.workers, 1, 64)
        if self.workers > 1 and self.device != "cpu":
            raise SpecError("parallel workers are for CPU grids: use workers 1 on a GPU")
        self._check_ray()
        if self.dtype not in TRAIN_DTYPES:
            raise SpecError(f"unknown training dtype {self.dtype!r}: use one of {', '.join(TRAIN_DTYPES)}")
        if self.label is not None and (not isinstance(self.label, str) or len(self.label) > 200):
            raise SpecError("label must be text of at most 200 characters")
        if self.preset is not None and self.preset not in PRESETS:
            raise SpecError(f"unknown training preset {self.preset!r}: use one of {', '.join(PRESETS)}")
        self._check_blocks()

    def _check_ray(self) -> None:
        r = self.ray
        if r is None:
            return
        if not isinstance(r, str) or not r.strip() or len(r) > 200 or any(c.isspace() for c in r):
            raise SpecError(f"--ray takes auto, local or a cluster address (host:port, ray://host:port), got {r!r}")
        if self.device not in ("cpu", "cuda:0"):
            raise SpecError(f"with --ray give --device cpu or cuda, not {self.device}: Ray gives each cell its GPU")
        if self.workers > 1:
            raise SpecError("--workers with --ray: the cluster trains the cells side by side; drop --workers")

    def same_grid(self, other: TrainingSpec) -> bool:
        """Whether ``other`` trains the very cells of this grid: where they train (this machine's processes or
        a Ray cluster) is not part of it, so a grid stopped here can be finished on a cluster and back."""
        where = ("ray", "workers")
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: v for k, v in mine.items() if k not in where} == {k: v for k, v in theirs.items() if k not in where}

    def _check_blocks(self) -> None:
        """Every block the grid builds must exist: refuse before anything trains."""
        if self.hidden % self.heads:
            raise SpecError(f"hidden {self.hidden} is not divisible by heads {self.heads}: choose matching sizes")
        if self.heads % (self.kv_heads or self.heads):
            raise SpecError(f"heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")
        if catalog.BLOCK_FAMILIES[self.family].rope and (self.hidden // self.heads) % 2:
            raise SpecError(f"RoPE needs an even head size: hidden/heads = {self.hidden // self.heads}")
        cfg = catalog.Config()
        for c in self.cells():
            why = catalog.block_unsupported(self.family, c.norm, c.placement, norm_impl(c.norm), self.hidden, cfg)
            if why:
                raise SpecError(why)

    # -- the work --------------------------------------------------------------------------------
    @property
    def quality_depth(self) -> int:
        return self.depths[0]

    @property
    def q_lr(self) -> float:
        """The quality comparison's learning rate."""
        return self.quality_lr if self.quality_lr is not None else self.lrs[0]

    @property
    def q_warmup(self) -> int:
        """The quality comparison's warmup."""
        return self.quality_warmup if self.quality_warmup is not None else self.warmups[-1]

    def cells(self) -> list[Cell]:
        """Every unit of work in a stable order: init profiles (cheap) first, then training runs, then
        fine-tuning. Training runs shared by the grid and the quality comparison appear once."""
        out: list[Cell] = []
        init_placements = list(dict.fromkeys([*self.placements, *self.finetune_placements]))
        for pl, depth in itertools.product(init_placements, self.init_depths):
            out.append(Cell("init", f"init/{self.norm}/{pl}/L{depth}", pl, self.norm, depth, self.init_seeds[0]))
        train: dict[str, Cell] = {}

        def add(pl: str, norm: str, depth: int, lr: float, warmup: int, seed: int, group: str) -> None:
            key = f"train/{norm}/{pl}/L{depth}/lr{_lr_text(lr)}/w{warmup}/s{seed}"
            old = train.get(key)
            groups = (*old.groups, group) if old else (group,)
            train[key] = Cell("train", key, pl, norm, depth, seed, lr, warmup, groups)

        for pl, depth, lr, warmup, seed in itertools.product(
            self.placements, self.depths, self.lrs, self.warmups, self.seeds
        ):
            add(pl, self.norm, depth, lr, warmup, seed, "grid")
        for norm, seed in itertools.product(self.quality_norms, self.quality_seeds):
            add(self.quality_placement, norm, self.quality_depth, self.q_lr, self.q_warmup, seed, "quality")
        out += train.values()
        if self.finetune_document is not None:
            for pl, seed in itertools.product(self.finetune_placements, self.seeds):
                key = f"finetune/{self.norm}/{pl}/L{self.quality_depth}/s{seed}"
                out.append(Cell("finetune", key, pl, self.norm, self.quality_depth, seed, self.pretrain_lr))
        return out

    def train_steps_planned(self) -> int:
        """Optimizer steps over the whole grid (for the time estimate), weighted by depth."""
        total = 0
        for c in self.cells():
            if c.kind == "train":
                total += self.steps * c.depth
            elif c.kind == "finetune":
                total += (self.pretrain_steps + len(self.finetune_lrs) * self.finetune_steps) * c.depth
        return total

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]


# Seconds per (optimizer step × layer) at a reference size, measured: on the 2-core VM with one thread at the
# quick preset's size (hidden 64, 1,024 tokens per step) 37-57 ms per 6-layer step; on one H200 at the standard
# preset's size (hidden 256, 8,192 tokens per step) 19-20 ms per 6-layer and 34-38 ms per 12-layer step
# (benchmarks/training_gpu.py). Larger models scale with tokens per step × hidden²; smaller GPU models are
# launch-bound and cost about the reference. Only for the estimate shown before a grid starts.
_CPU_REFERENCE = (0.0075, 1024, 64)  # (s per layer-step, tokens per step, hidden)
_CUDA_REFERENCE = (0.0032, 8192, 256)


def estimate_seconds(spec: TrainingSpec) -> float:
    """A rough estimate of a grid's wall time, shown before it starts (not a measurement)."""
    per, tokens, hidden = _CPU_REFERENCE if spec.device_type == "cpu" else _CUDA_REFERENCE
    scale = max(1.0, (spec.batch * spec.seq_len / tokens) * (spec.hidden / hidden) ** 2)
    evals = len([c for c in spec.cells() if c.kind == "train"]) * (spec.steps // spec.eval_every + 1)
    return 5.0 + spec.train_steps_planned() * per * scale * 1.15 + evals * spec.eval_batches * per * scale


PRESETS: dict[str, str] = {
    "quick": "tiny widths, a few hundred steps, 2 seeds: ≤ 15 minutes on 2 CPU cores",
    "standard": "a GPU grid: 256 wide, 6 and 12 layers, every placement, 3 seeds (about 2 hours on one H200)",
}


def preset_spec(name: str, **overrides: Any) -> TrainingSpec:
    """The named preset with ``overrides`` (validated)."""
    if name not in PRESETS:
        raise SpecError(f"unknown training preset {name!r}: use one of {', '.join(PRESETS)}")
    kw: dict[str, Any] = dict(QUICK if name == "quick" else STANDARD)
    kw["preset"] = name
    kw.update(overrides)
    return TrainingSpec.from_dict(kw)


# Chosen by measurement on the 2-core VM (Shakespeare, hidden 64, 250 steps, seed 0): at 6 layers Post-LN
# trained at lr 1e-3 and 3e-3, stalled at the unigram loss at 1e-2 without warmup but trained with 100 warmup
# steps, and stalled at 3e-2 with or without warmup; Pre-LN trained at every one of these rates. At 12 layers
# Post-LN stalled already at 1e-3 but each run costs twice as much, so the quick grid trains 6 layers over the
# rates where the contrast appears and profiles the gradient norms at init at both 6 and 12 layers. Two worker
# processes of one thread each: at this width a second OpenMP thread in one process gained little, and on a
# shared 2-core machine made steps 5-30x slower, while two runs side by side use both cores.
QUICK: dict[str, Any] = {
    "placements": ["post_ln", "pre_ln", "pre_ln_layerscale", "deepnorm"],
    "depths": [6],
    "lrs": [3e-3, 1e-2, 3e-2],
    "warmups": [0, 100],
    "seeds": [0, 1],
    "hidden": 64,
    "heads": 4,
    "seq_len": 64,
    "batch": 16,
    "steps": 250,
    "eval_every": 50,
    "eval_batches": 8,
    "log_every": 10,
    "init_depths": [6, 12],
    "init_seeds": [0, 1, 2, 3],
    "pretrain_steps": 200,
    "pretrain_lr": 3e-3,
    "pretrain_warmup": 100,
    "finetune_steps": 100,
    "finetune_lrs": [3e-3, 1e-2],
    "quality_seeds": [0, 1, 2],
    "threads": 1,
    "workers": 2,
    "device": "cpu",
}
STANDARD: dict[str, Any] = {
    "placements": list(PLACEMENTS),
    "depths": [6, 12],
    "lrs": [1e-3, 3e-3, 1e-2],
    "warmups": [0, 200],
    "seeds": [0, 1, 2],
    "hidden": 256,
    "heads": 8,
    "seq_len": 256,
    "batch": 32,
    "steps": 1000,
    "eval_every": 100,
    "eval_batches": 16,
    "log_every": 20,
    "init_depths": [6, 12, 24],
    "init_seeds": [0, 1, 2, 3],
    "pretrain_steps": 1000,
    "pretrain_lr": 1e-3,
    "pretrain_warmup": 200,
    "finetune_steps": 300,
    "finetune_lrs": [1e-3, 3e-3],
    "quality_seeds": [0, 1, 2, 3],
    "device": "cuda",
}
