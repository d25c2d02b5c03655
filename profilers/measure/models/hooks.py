"""A model's normalization layers, found and hooked: what the drift and numerics labs record.

Which modules count as normalization layers: torch's LayerNorm, RMSNorm,
GroupNorm, BatchNorm (1d/2d/3d, SyncBatchNorm) and InstanceNorm, NormScope's own
block norms (``blocks.Norm``), DyT, and any other module whose class name ends in
``Norm`` (for example Hugging Face's ``LlamaRMSNorm``) that takes the activation
as its first argument. A channel-first norm (BatchNorm, GroupNorm, InstanceNorm)
has its input rearranged so that a row is one position's channel vector. A
user's model is loaded only through a Python import path they give
(``package.module:function`` returning ``(model, data iterator)``): their own
code runs, and no file is ever unpickled.
"""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ...spec import SpecError

_CHANNEL_FIRST = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_LAST_DIM = (nn.LayerNorm, nn.RMSNorm)
_NAMED = ("DyT", "DynamicTanh")


def norm_kind(module: nn.Module) -> str | None:
    """The kind of normalization layer ``module`` is ('layernorm', 'batchnorm2d', …), or None when it is not one."""
    own = getattr(module, "variant", None)
    if type(module).__name__ == "Norm" and isinstance(own, str):
        return own  # NormScope's block norm: its registry variant
    if isinstance(module, (*_CHANNEL_FIRST, *_LAST_DIM)):
        return type(module).__name__.lower()
    name = type(module).__name__
    if name in _NAMED or name.endswith("Norm"):
        return name.lower()
    return None


def norm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every normalization layer of ``model`` by qualified name, outermost first; nested norms are skipped."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if norm_kind(m) is None or any(name.startswith(f"{outer}.") for outer, _ in found):
            continue
        found.append((name or type(m).__name__, m))
    return found


def rows_of(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The norm's input as rows × channels in float32: one row per normalized vector (per position for
    channel-first norms)."""
    x = x.detach()
    if isinstance(module, _CHANNEL_FIRST) and x.dim() >= 2:
        x = x.movedim(1, -1)
    elif isinstance(module, nn.LayerNorm | nn.RMSNorm):
        shape = module.normalized_shape
        n = int(np.prod(shape)) if shape else x.shape[-1]
        return x.reshape(-1, n).float()
    return x.reshape(-1, x.shape[-1]).float()


@contextmanager
def on_norm_inputs(model: nn.Module, fn: Callable[[str, str, torch.Tensor], None]) -> Iterator[None]:
    """Inside the block, every call of a norm layer hands ``fn(name, kind, rows)`` its input as rows (``rows_of``)."""
    handles = []
    for name, module in norm_layers(model):
        kind = norm_kind(module) or "norm"

        def hook(mod: nn.Module, args: tuple[Any, ...], _name: str = name, _kind: str = kind) -> None:
            if args and isinstance(args[0], torch.Tensor) and args[0].numel():
                fn(_name, _kind, rows_of(mod, args[0]))

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def feed(model: nn.Module, batch: Any) -> None:
    """Run one batch: a tensor, a dict of keyword arguments, or a tuple whose first element is the input.
    An error inside the user's model becomes one line (SpecError) naming it."""
    try:
        if isinstance(batch, Mapping):
            model(**batch)
        elif isinstance(batch, (tuple, list)):
            model(batch[0])
        else:
            model(batch)
    except Exception as e:  # the user's forward may raise anything
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise SpecError(
            f"the model raised {type(e).__name__} on a batch ({first}): a batch is the model's input, a dict of "
            "keyword arguments, or a tuple whose first element is the input"
        ) from None


def take(it: Iterator[Any], n: int) -> list[Any]:
    """The next ``n`` batches of the user's data iterator; its errors become one line."""
    try:
        return list(itertools.islice(it, n))
    except Exception as e:  # the user's iterator may raise anything
        raise SpecError(f"the data iterator raised {type(e).__name__}: {str(e)[:300]}") from None


@torch.no_grad()
def record_rows(model: nn.Module, batches: Iterable[Any], max_batches: int) -> dict[str, torch.Tensor]:
    """The raw input rows of every norm layer over up to ``max_batches`` batches (for the numerics lab)."""
    model.eval()
    rows: dict[str, list[torch.Tensor]] = {}

    def keep(name: str, kind: str, x: torch.Tensor) -> None:
        rows.setdefault(name, []).append(x.cpu())

    with on_norm_inputs(model, keep):
        for batch in take(iter(batches), max_batches):
            feed(model, batch)
    if not rows:
        raise SpecError("the model has no normalization layer NormScope can hook (LayerNorm, RMSNorm, …)")
    return {name: torch.cat(parts) for name, parts in rows.items()}


# -- a user's model: an import path, never a pickle -----------------------------------------------------
def load_model(path: str, args: Mapping[str, str] | None = None) -> tuple[nn.Module, Iterable[Any]]:
    """Call ``package.module:function(**args)``; it must return ``(torch.nn.Module, iterable of batches)``.

    The working directory is importable, so a file ``mymodels.py`` beside the command is ``mymodels:build``.
    """
    module_name, _, func_name = path.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module may raise anything while importing
        raise SpecError(f"cannot import {module_name!r} ({type(e).__name__}: {e}): check the import path") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SpecError(f"{module_name} has no function {func_name!r}: write package.module:function")
    try:
        got = func(**dict(args or {}))
    except Exception as e:
        raise SpecError(f"{path} raised {type(e).__name__}: {e}") from None
    if not isinstance(got, tuple) or len(got) != 2 or not isinstance(got[0], nn.Module):
        raise SpecError(f"{path} must return (model, data iterator): a torch.nn.Module and an iterable of batches")
    model, data = got
    try:
        iter(data)
    except TypeError:
        raise SpecError(f"{path} returned data that is not iterable: return an iterable of batches") from None
    return model, data
