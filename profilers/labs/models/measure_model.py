"""A `transformers` model built from its config with random weights, its norm modules found and swapped in place.

``build`` makes the model from the spec's config (``AutoConfig.for_model``, ``from_config``: no download, no
weights file), cut to ``spec.depth`` layers. ``sites`` finds every norm module of the model's own type (by
class: ``LlamaRMSNorm``, ``Qwen2RMSNorm``, ``Gemma2RMSNorm``, ``nn.LayerNorm``, …) with the parent it hangs
from. ``implementation`` makes what one site becomes for a candidate: the model's own module, torch's fused
operator, the model's own formula compiled, Liger-Kernel's or QuACK's module, or another norm type (the
placement kept, since the module is replaced where it sits); each shares the own module's parameters, so one
model serves every implementation of a group and its optimizer updates the same tensors. A candidate that
cannot run here (not installed, not on this device, no such kernel) is refused with the reason
(``Unsupported``), which the sweep stores as a skipped point.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...catalog import Config
from ...measure.instruments import compile as compiling
from ...measure.models.blocks import Norm
from ...runs import first_line
from .spec import Family, ModelSweepSpec

OWN = "own"


class Unsupported(Exception):
    """A candidate that cannot run on this machine, with the reason (stored as a skipped point)."""


@dataclass(frozen=True)
class Site:
    """One norm module of the model: where it hangs, and what it computes."""

    name: str
    parent: nn.Module
    attr: str
    module: nn.Module
    hidden: int
    eps: float


# ---- the model -------------------------------------------------------------------------------------------
def _config(spec: ModelSweepSpec) -> tuple[Any, Any]:
    """The transformers config cut to ``spec.depth`` layers (every per-layer list cut with it: ``layer_types``
    and the like), and the auto class that builds the model."""
    import transformers

    doc = dict(spec.model)
    fam = spec.family
    total = int(doc[fam.layer_key])
    doc[fam.layer_key] = spec.depth
    for key, value in list(doc.items()):
        if isinstance(value, list) and len(value) == total and key != "architectures":
            doc[key] = value[: spec.depth]
    kind = doc.pop("model_type")
    for key in ("architectures", "transformers_version", "torch_dtype", "dtype"):
        doc.pop(key, None)
    transformers.logging.set_verbosity_error()  # a tiny test config's token ids past its vocabulary, etc.
    config = transformers.AutoConfig.for_model(kind, **doc)
    auto = {
        "causal-lm": transformers.AutoModelForCausalLM,
        "masked-lm": transformers.AutoModelForMaskedLM,
        "image": transformers.AutoModelForImageClassification,
    }[fam.head]
    return config, auto


def check(spec: ModelSweepSpec) -> None:
    """Refuse a config transformers cannot build, before any run is stored: the config made and the model laid
    out on the meta device (no memory, no weights); one line naming the config otherwise."""
    from ...spec import SpecError

    try:
        config, auto = _config(spec)
        with torch.device("meta"):
            auto.from_config(config)
    except Exception as e:  # transformers' refusals are ValueError, TypeError, KeyError, ZeroDivisionError, …
        raise SpecError(
            f"model config {spec.config}: transformers cannot build it ({type(e).__name__}: {first_line(e)}); "
            "give a config.json that transformers loads"
        ) from None


def build(spec: ModelSweepSpec, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The spec's model with seeded random weights, ``spec.depth`` layers, in ``dtype`` on ``device``."""
    config, auto = _config(spec)
    torch.manual_seed(spec.seed)
    model = auto.from_config(config)  # attention as transformers picks it for the model (SDPA where supported)
    model = model.to(device=device, dtype=dtype)
    return adapt(model, spec) if spec.lora else model


def adapt(model: nn.Module, spec: ModelSweepSpec) -> nn.Module:
    """LoRA adapters of ``spec.lora``'s rank on the attention and MLP projections (peft's defaults otherwise:
    alpha 2r here, no dropout, adapters in float32 beside a bfloat16 model); every other weight frozen, norms
    included. B is drawn at random rather than zero so that the gate's gradients of A are not all zero."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=spec.lora, lora_alpha=2 * spec.lora, target_modules=spec.family.lora_targets, bias="none")
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; nothing for the user
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        model = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(spec.seed + 2)
    with torch.no_grad():
        for name, q in model.named_parameters():
            if "lora_B" in name:
                q.copy_(torch.randn(q.shape, generator=gen) * 0.02)
    return model


def batch(spec: ModelSweepSpec, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """A seeded batch with labels: token ids (the labels are the ids: the model shifts them for a causal LM),
    or images and class labels."""
    gen = torch.Generator().manual_seed(spec.seed + 1)
    cfg = model.config
    if spec.family.head == "image":
        side = cfg.image_size
        pixels = torch.randn(spec.batch, cfg.num_channels, side, side, generator=gen)
        labels = torch.randint(0, cfg.num_labels, (spec.batch,), generator=gen)
        dtype = next(model.parameters()).dtype
        return {"pixel_values": pixels.to(device=device, dtype=dtype), "labels": labels.to(device)}
    ids = torch.randint(0, cfg.vocab_size, (spec.batch, spec.seq_len), generator=gen).to(device)
    return {"input_ids": ids, "labels": ids}


def logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits


def loss(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs).loss


def is_own_norm(module: nn.Module, fam: Family) -> bool:
    if fam.norm == "layernorm":
        return isinstance(module, nn.LayerNorm)
    return type(module).__name__.endswith("RMSNorm") and isinstance(getattr(module, "weight", None), nn.Parameter)


def sites(model: nn.Module, fam: Family) -> list[Site]:
    """Every norm module of the model's own type, by qualified name."""
    out = []
    for name, module in model.named_modules():
        if not name or not is_own_norm(module, fam):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        eps = getattr(module, "eps", None)
        eps = getattr(module, "variance_epsilon", eps)
        out.append(Site(name, parent, attr, module, int(module.weight.shape[-1]), float(eps)))
    return out


# ---- the implementations -------------------------------------------------------------------------------
class Swapped(nn.Module):
    """A site computed by another function, over the own module's parameters (the same tensors)."""

    def __init__(self, own: nn.Module, fn: Callable[..., torch.Tensor], what: str) -> None:
        super().__init__()
        self.weight = own.weight
        self.bias = getattr(own, "bias", None)
        self.fn, self.what = fn, what

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return self.what


def _rms_own_formula(fam: Family, eps: float, exact: bool = False) -> Callable[..., torch.Tensor]:
    """The model's own RMSNorm as transformers writes it, as a function of (x, weight, bias): the statistics in
    float32; Llama-style casts back before the weight, Gemma-style scales by (1 + w) in float32 first.

    ``exact``: the statistics in float64 when x is float64 (the reference run), where the module itself would
    round them to float32 and the reference would be no more precise than a float32 candidate."""

    def up(v: torch.Tensor) -> torch.Tensor:
        return v if exact and v.dtype == torch.float64 else v.float()

    if fam.offset:

        def gemma(x: torch.Tensor, w: torch.Tensor, b: Any) -> torch.Tensor:
            xf = up(x)
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
            return (y * (fam.offset + up(w))).type_as(x)

        return gemma

    def llama(x: torch.Tensor, w: torch.Tensor, b: Any) -> torch.Tensor:
        xf = up(x)
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        return w * y.to(x.dtype)

    return llama


def reference_installation(sites: list[Site], fam: Family) -> Installation:
    """The model's own norms as the float64 reference computes them: its RMSNorm's formula with float64
    statistics (the module would round them to float32); nn.LayerNorm computes in its input's dtype already.
    Rotary embeddings stay as transformers computes them (float32 tables, the same in every run)."""
    if fam.norm == "layernorm":
        return Installation(sites, [s.module for s in sites])
    modules: list[nn.Module] = [
        Swapped(s.module, _rms_own_formula(fam, s.eps, exact=True), "the model's formula in float64") for s in sites
    ]
    return Installation(sites, modules)


def _ln_formula(eps: float) -> Callable[..., torch.Tensor]:
    """LayerNorm as separate torch ops (the catalogue's eager formula), in the input's dtype."""

    def eager(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + eps) * w
        return y + b if b is not None else y

    return eager


def _rms_eager(fam: Family, eps: float) -> Callable[..., torch.Tensor]:
    """RMSNorm as separate torch ops in the input's dtype (the catalogue's eager formula, no float32 upcast)."""

    def eager(x: torch.Tensor, w: torch.Tensor, b: Any) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (w + fam.offset if fam.offset else w)

    return eager


def _native(fam: Family, site: Site) -> Callable[..., torch.Tensor]:
    h, eps = (site.hidden,), site.eps
    if fam.norm == "layernorm":
        return lambda x, w, b: F.layer_norm(x, h, w, b, eps)
    if fam.offset:
        return lambda x, w, b: F.rms_norm(x, h, w + fam.offset, eps)
    return lambda x, w, b: F.rms_norm(x, h, w, eps)


def liger_missing(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "Liger-Kernel's kernels are Triton kernels for CUDA: not on the CPU"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install liger-kernel on a CUDA machine)"
    return None


def quack_missing(device: torch.device, fam: Family) -> str | None:
    if fam.norm != "rmsnorm":
        return "QuACK ships RMSNorm with autograd; its LayerNorm has no backward: not a model's choice"
    if device.type != "cuda":
        return "QuACK's kernels are CuTe DSL kernels for NVIDIA GPUs: not on the CPU"
    if torch.cuda.get_device_capability(device)[0] < 9:
        name = torch.cuda.get_device_name(device)
        return f"QuACK's kernels need a Hopper or Blackwell GPU (compute capability 9.0+), not {name}"
    if importlib.util.find_spec("quack") is None:
        return "quack-kernels is not installed (pip install quack-kernels on a Hopper or Blackwell machine)"
    return None


def _liger(fam: Family, site: Site) -> nn.Module:
    if fam.norm == "layernorm":
        from liger_kernel.transformers.layer_norm import LigerLayerNorm

        m = LigerLayerNorm(site.hidden, eps=site.eps, bias=site.module.bias is not None)
        m.bias = site.module.bias
    else:
        from liger_kernel.transformers.rms_norm import LigerRMSNorm

        casting = "gemma" if fam.offset else "llama"
        # in place writes dX over dY: Liger's own Gemma 2 module turns it off, since a sandwich's residual
        # still reads dY (LigerRMSNormForGemma2)
        in_place = fam.placement != "sandwich"
        m = LigerRMSNorm(site.hidden, eps=site.eps, offset=fam.offset, casting_mode=casting, in_place=in_place)
    m.weight = site.module.weight
    return m


def _quack(fam: Family, site: Site) -> Callable[..., torch.Tensor]:
    import quack

    eps, offset = site.eps, fam.offset
    return lambda x, w, b: quack.rmsnorm(x, w, eps=eps, weight_offset=offset)


def implementation(
    site: Site, norm: str, impl: str, fam: Family, device: torch.device, compiled: dict[str, Any]
) -> nn.Module:
    """What ``site`` becomes for the candidate (norm, impl); raises Unsupported with the reason.

    ``compiled`` holds the candidate's compiled formula (one per model: every site of one shape runs the same
    graph, so dynamo compiles it once rather than once per module, which would reach its recompile limit)."""
    if norm != fam.norm:  # another norm type in the same place: fresh parameters, the registry's formula
        cfg = Config(eps=site.eps)
        own = site.module.weight
        m = Norm(norm, site.hidden, impl, cfg).to(device=own.device, dtype=own.dtype)
        return m.requires_grad_(own.requires_grad)  # trained, or frozen (LoRA), as the module it replaces
    if impl == OWN:
        return site.module
    if impl == "native":
        if fam.norm == "layernorm":
            raise Unsupported("the model's own module is nn.LayerNorm, torch's fused operator: the same as native")
        return Swapped(site.module, _native(fam, site), "F.rms_norm")
    if impl == "eager":
        fn = _ln_formula(site.eps) if fam.norm == "layernorm" else _rms_eager(fam, site.eps)
        return Swapped(site.module, fn, "separate torch ops")
    if impl == "compiled":
        key = f"{site.hidden}/{site.eps}"
        if key not in compiled:
            own = _ln_formula(site.eps) if fam.norm == "layernorm" else _rms_own_formula(fam, site.eps)
            compiled[key] = compiling.compile_fresh(own)
        return Swapped(site.module, compiled[key], "torch.compile of the model's formula")
    if impl == "liger":
        why = liger_missing(device)
        if why:
            raise Unsupported(why)
        return _liger(fam, site)
    if impl == "quack":
        why = quack_missing(device, fam)
        if why:
            raise Unsupported(why)
        return Swapped(site.module, _quack(fam, site), "quack.rmsnorm")
    raise Unsupported(f"unknown implementation {impl!r}")


@dataclass
class Installation:
    """One candidate's modules at every site; ``install`` hangs them in the model (the own ones to undo)."""

    sites: list[Site]
    modules: list[nn.Module]

    def install(self) -> None:
        for site, module in zip(self.sites, self.modules, strict=True):
            if getattr(site.parent, site.attr) is not module:
                setattr(site.parent, site.attr, module)

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The model's parameters with this candidate installed (a swapped-in type brings its own)."""
        self.install()
        return [p for p in model.parameters() if p.requires_grad]


@contextmanager
def installed(installation: Installation, own: Installation) -> Iterator[None]:
    installation.install()
    try:
        yield
    finally:
        own.install()
