"""What to measure in a model sweep: the norm choice inside a `transformers` model built from its config.

A ModelSweepSpec names a model config (one shipped under ``data/models/``, or a ``config.json`` from any model
directory), an optional depth cut (``layers``: a 2-layer slice of an 8B model fits a CPU), the norm
implementations to swap in (the model's own module is the baseline), other norm types to try in its place
(architecture exploration, placement kept), the batch and sequence length, dtypes and modes: forward,
forward+backward, and a whole fine-tuning step (AdamW), of every weight or of LoRA adapters (``lora``: their
rank, via peft). The method fields are a block sweep's.

Torch-free: the config is read as JSON and checked against the model types NormScope knows how to drive;
``transformers`` builds the model in ``measure_model.py``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ... import catalog
from ...catalog import STEP_MODE
from ...spec import (
    JsonSpec,
    LabMethod,
    SpecError,
    _check_choices,
    _check_device,
    check_lab_method,
    normalize_dtype,
)

CONFIG_DIR = Path(__file__).resolve().parents[3] / "data" / "models"
MODEL_IMPLS = ("eager", "native", "compiled", "liger", "quack")  # swapped in for the model's own module
DEFAULT_IMPLS = ("native", "compiled", "liger", "quack")  # eager: the textbook formula, rarely a real choice
MODEL_MODES = ("fwd", "fwdbwd", STEP_MODE)
SWAP_NORMS = ("layernorm", "rmsnorm", "dyt")  # norm types swapped in for architecture exploration
MAX_LAYERS = 512


@dataclass(frozen=True)
class Family:
    """How NormScope drives one ``model_type``: its norm, where the norm sits, and what the model eats."""

    norm: str  # rmsnorm | layernorm: the type of the model's own norm modules
    own_impl: str  # the catalogue's name for the model's own module: eager (a torch-op formula) or native
    placement: str  # pre_ln | post_ln | sandwich (pre and post around each sublayer)
    head: str  # causal-lm | masked-lm | image
    offset: float = 0.0  # RMSNorm weight offset: Gemma scales by (1 + w)
    layer_key: str = "num_hidden_layers"
    lora_targets: str = ""  # the projections LoRA adapts (a peft regex over module names), set per head below


DECODER_LORA = r".*\.layers\.\d+\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"  # attention + MLP
ENCODER_LORA = r".*\.encoder\.layer\.\d+\..*\.(query|key|value|dense)"  # the layers' own, not the head's

FAMILIES: dict[str, Family] = {
    "llama": Family("rmsnorm", "eager", "pre_ln", "causal-lm", lora_targets=DECODER_LORA),
    "mistral": Family("rmsnorm", "eager", "pre_ln", "causal-lm", lora_targets=DECODER_LORA),
    "qwen2": Family("rmsnorm", "eager", "pre_ln", "causal-lm", lora_targets=DECODER_LORA),
    "qwen3": Family("rmsnorm", "eager", "pre_ln", "causal-lm", lora_targets=DECODER_LORA),
    "gemma": Family("rmsnorm", "eager", "pre_ln", "causal-lm", offset=1.0, lora_targets=DECODER_LORA),
    "gemma2": Family("rmsnorm", "eager", "sandwich", "causal-lm", offset=1.0, lora_targets=DECODER_LORA),
    "bert": Family("layernorm", "native", "post_ln", "masked-lm", lora_targets=ENCODER_LORA),
    "roberta": Family("layernorm", "native", "post_ln", "masked-lm", lora_targets=ENCODER_LORA),
    "vit": Family("layernorm", "native", "pre_ln", "image", lora_targets=ENCODER_LORA),
}
MAX_LORA_RANK = 1024
REQUIRED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads")


def shipped() -> dict[str, Path]:
    """The configs shipped with NormScope, by name (the file's stem)."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.json"))}


def read_config(ref: str) -> tuple[dict[str, Any], str]:
    """A config as JSON and where it came from: a shipped name, or a path to a config.json (or a model
    directory holding one); one line (SpecError) naming the problem and the fix otherwise."""
    names = shipped()
    if ref in names:
        path = names[ref]
    else:
        path = Path(ref).expanduser()
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            hub = "/" in ref and not Path(ref).parent.exists()
            why = "a hub name: nothing is downloaded" if hub else "no such file"
            raise SpecError(
                f"model config {ref!r}: {why}; give a config.json path (any model directory has one) or a shipped "
                f"config: {', '.join(names)}"
            )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"model config {path}: cannot read it ({e}): give a readable config.json") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"model config {path} is not JSON ({e.msg}, line {e.lineno}): give a config.json") from None
    check_config(doc, str(path))
    return doc, (f"shipped:{ref}" if ref in names else str(path.resolve()))


def check_config(doc: Any, where: str) -> Family:
    """The family a config belongs to; SpecError when NormScope cannot drive it."""
    if not isinstance(doc, dict):
        raise SpecError(f"model config {where} must be a JSON object (a transformers config.json)")
    kind = doc.get("model_type")
    if not isinstance(kind, str):
        raise SpecError(f"model config {where} has no model_type: a transformers config.json names one (e.g. llama)")
    if kind not in FAMILIES:
        raise SpecError(
            f"model config {where}: model_type {kind!r} is not one NormScope drives; use one of {', '.join(FAMILIES)}"
        )
    missing = [
        k for k in REQUIRED_KEYS if not isinstance(doc.get(k), int) or isinstance(doc.get(k), bool) or doc[k] < 1
    ]
    if missing:
        raise SpecError(
            f"model config {where} lacks positive whole-number {', '.join(missing)}: give a complete config.json"
        )
    if doc["hidden_size"] % doc["num_attention_heads"] and "head_dim" not in doc:
        raise SpecError(f"model config {where}: hidden_size is not divisible by num_attention_heads")
    return FAMILIES[kind]


@dataclass(frozen=True)
class ModelPoint:
    """One measurement: a norm (type and implementation) inside the model, at one dtype, token count and mode."""

    norm: str
    impl: str
    dtype: str
    tokens: int
    mode: str
    hidden: int

    @property
    def key(self) -> str:
        return f"{self.norm} {self.impl}"

    def describe(self) -> str:
        return f"{self.norm:<10} {self.impl:<9} {self.dtype:<8} {self.tokens:>7} {self.mode}"


@dataclass(frozen=True)
class ModelSweepSpec(LabMethod, JsonSpec):
    _what: ClassVar[str] = "model spec"
    _noun: ClassVar[str] = "model"

    config: str = "qwen2.5-0.5b"  # as given: a shipped name or a config.json path (default: the smallest LM shipped)
    model_config: dict[str, Any] | None = None  # the config itself, read once and stored with the run
    layers: int | None = None  # keep the first N layers (None: the config's depth)
    impls: tuple[str, ...] = DEFAULT_IMPLS
    norms: tuple[str, ...] = ()  # other norm types swapped in, each timed with its native (or eager) kernel
    batch: int = 1
    seq_len: int = 512  # text models; an image model's tokens are its patches (+ the class token)
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = ("fwd", "fwdbwd", STEP_MODE)
    lora: int = 0  # LoRA rank on the attention and MLP projections (peft); 0: a full fine-tune
    device: str = "cpu"
    threads: int | None = None
    warmup_ms: float = 50.0
    budget_ms: float = 1000.0
    rounds: int = 7
    ci_target_pct: float = 3.0
    cache_state: str | None = None
    cpu_allocator: str = "reuse"
    cpu_pages: str = "huge"
    cpu_placement: str = "round"
    baseline: str = ""  # "": the model's own norm module
    energy: bool = False
    energy_window_s: float = 1.0
    energy_repeats: int = 3
    seed: int = 0
    label: str | None = None
    sample_ms: float | None = 100.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.config, str) or not self.config.strip():
            raise SpecError("a model sweep needs a config: a shipped name or a config.json path")
        if self.model_config is None:
            set_(self, "model_config", read_config(self.config)[0])
        doc = self.model_config
        fam = check_config(doc, self.config)
        depth = doc[fam.layer_key]
        if self.layers is not None and (
            isinstance(self.layers, bool) or not isinstance(self.layers, int) or not 1 <= self.layers <= MAX_LAYERS
        ):
            raise SpecError(f"layers must be a whole number 1..{MAX_LAYERS}, got {self.layers!r}")
        if self.layers is not None and self.layers > depth:
            raise SpecError(f"layers {self.layers}: the model has {depth}; give --layers {depth} or fewer")
        set_(self, "impls", _check_choices("implementation", self.impls, MODEL_IMPLS))
        if isinstance(self.norms, str) or not isinstance(self.norms, (list, tuple)):
            raise SpecError(f"norms must be a list of norm types to swap in: {', '.join(SWAP_NORMS)}")
        norms = _check_choices("norm", self.norms, SWAP_NORMS) if self.norms else ()
        if fam.norm in norms:
            raise SpecError(
                f"norm {fam.norm!r} is the model's own type: its implementations are --impls; --norms swaps in "
                f"another type ({', '.join(n for n in SWAP_NORMS if n != fam.norm)})"
            )
        set_(self, "norms", norms)
        set_(self, "modes", _check_choices("mode", self.modes, MODEL_MODES))
        if not isinstance(self.dtypes, (list, tuple)) or not self.dtypes:
            raise SpecError("dtypes must be a non-empty list")
        set_(self, "dtypes", tuple(dict.fromkeys(normalize_dtype(str(d)) for d in self.dtypes)))
        set_(self, "device", _check_device(self.device))
        for name, hi in (("batch", 4096), ("seq_len", 1 << 20)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise SpecError(f"{name} must be a whole number 1..{hi}, got {v!r}")
        if isinstance(self.lora, bool) or not isinstance(self.lora, int) or not 0 <= self.lora <= MAX_LORA_RANK:
            raise SpecError(f"lora must be a rank 0..{MAX_LORA_RANK} (0: a full fine-tune), got {self.lora!r}")
        if self.lora and self.lora > self.hidden:
            raise SpecError(f"lora rank {self.lora} exceeds the hidden size {self.hidden}: give --lora 8 to 64")
        most = doc.get("max_position_embeddings")
        if fam.head != "image" and isinstance(most, int) and self.seq_len > most:
            raise SpecError(f"seq_len {self.seq_len} is beyond the model's {most} positions: give --seq-len {most}")
        check_lab_method(self)
        own = f"{fam.norm} own"
        baseline = self.baseline or own
        if baseline not in {f"{n} {i}" for n, i in self.candidates()}:
            raise SpecError(f"baseline {baseline!r} is not a candidate of this sweep: e.g. {own!r}")
        set_(self, "baseline", baseline)

    # -- the model, as the runner and the pages read it ---------------------------------------------
    @property
    def model(self) -> dict[str, Any]:
        assert self.model_config is not None  # set by __post_init__
        return self.model_config

    @property
    def family(self) -> Family:
        return FAMILIES[self.model["model_type"]]

    @property
    def hidden(self) -> int:
        return int(self.model["hidden_size"])

    @property
    def depth(self) -> int:
        return self.layers or int(self.model[self.family.layer_key])

    @property
    def name(self) -> str:
        """The model as results name it: its config (a shipped name, the model directory of a config.json, or
        the config's own name for an uploaded config.json) and, when cut, the layers kept."""
        path = Path(self.config)
        if self.config in shipped():
            stem = self.config
        elif path.stem == "config":
            own = str(self.model.get("_name_or_path") or "").rstrip("/").rpartition("/")[2]
            stem = path.parent.name or own or f"{self.model['model_type']}-{self.hidden}"
        else:
            stem = path.stem
        total = int(self.model[self.family.layer_key])
        notes = ([f"{self.depth} of {total} layers"] if self.depth != total else []) + (
            [f"LoRA r={self.lora}"] if self.lora else []
        )
        return stem + (f" ({', '.join(notes)})" if notes else "")

    @property
    def tuning(self) -> str:
        """What a training step trains, for people."""
        return f"LoRA r={self.lora} on the attention and MLP projections" if self.lora else "every weight"

    @property
    def tokens(self) -> int:
        """Tokens per call: batch × sequence, or for an image model batch × (patches + class token)."""
        m = self.model
        if self.family.head == "image":
            return self.batch * ((m.get("image_size", 224) // m.get("patch_size", 16)) ** 2 + 1)
        return self.batch * self.seq_len

    def candidates(self) -> list[tuple[str, str]]:
        """(norm, impl) pairs: the model's own module first, then the implementations, then other types."""
        fam = self.family
        out = [(fam.norm, "own")]
        out += [(fam.norm, i) for i in self.impls]
        out += [(n, swap_impl(n)) for n in self.norms]
        return out

    def points(self) -> list[ModelPoint]:
        """One group per dtype × mode: every candidate at the sweep's one token count."""
        return [
            ModelPoint(n, i, d, self.tokens, m, self.hidden)
            for d, m in itertools.product(self.dtypes, self.modes)
            for n, i in self.candidates()
        ]


def swap_impl(norm: str) -> str:
    """The kernel a swapped-in norm type runs: torch's fused operator where there is one, else its formula."""
    return "native" if catalog.VARIANTS[norm].has_native else "eager"


def describe_impl(norm: str, impl: str, fam: Family) -> str:
    """What a candidate is, for people: 'own' is the model's module as transformers writes it."""
    if impl == "own":
        kind = "its torch-op formula" if fam.own_impl == "eager" else "nn.LayerNorm (torch's fused operator)"
        return f"the model's own {catalog.label(norm)} module ({kind})"
    if norm != fam.norm:
        return f"{catalog.label(norm)} in place of the model's {catalog.label(fam.norm)} (placement kept)"
    if impl == "compiled":
        return "torch.compile of the model's own formula (one graph for every norm module of one shape)"
    return catalog.IMPLS[impl].help
