"""The torch device a spec names, or a one-line refusal naming what this machine lacks."""

from __future__ import annotations

import torch

from ...spec import SpecError


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device; SpecError when torch sees no such GPU."""
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SpecError(f"device {name} is not available: torch {torch.__version__} sees no CUDA GPU; use --device cpu")
    index = int(name.split(":")[1]) if ":" in name else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise SpecError(f"device {name} does not exist: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index)
