"""A new memory placement for every round of a CPU group, so rounds sample placements instead of one.

Where a CPU tensor lands (its offset against the 2 MiB huge-page boundaries, the
cache sets it maps to, its distance from the other operands) changes a kernel's
time, and a process that reuses freed memory keeps one placement for its life:
its rounds then agree with each other and not with the next process. At the
start of each round the group's inputs are copied to new memory and a spacer of
a seeded random number of 4 KiB pages (1 to 1023) is held through the round, so
the operands and every buffer the calls allocate land somewhere new. The
median over rounds is then a median over placements, and the rounds' interval
includes the placement's share of the variation.

Measured (``benchmarks/cpu_process_spread.py``: ten fresh processes per
setting, LayerNorm and RMSNorm native fp32, huge pages, the 2-core VM), share of
the other processes' RMS/LN inside a process's 95% interval, fixed → per round:
1024×768 22/90 → 38/90 (process ratios spread 22% → 12%), 2048×1024 26/90 →
37/90 (6% → 10%; pairs within 5% 42/45 → 35/45); the intervals widen (±0.9% →
±1.9% at 2048×1024), so more rounds are needed to reach a target. It does not
reach what is per process and not placement (between two processes a whole
group's ratios once moved together by 7-21%); ``fixed`` (``--cpu-placement``)
keeps the inputs where they were first allocated.

Inputs that an autograd graph already holds (the ``bwd`` mode's saved forward)
stay where they are; the spacer still moves everything the calls allocate. A
move holds the old and the new copy of one tensor for a moment; the old one is
freed as soon as its list entry is replaced (nothing else may keep it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

PAGE = 4096
SPACER_PAGES = (1, 1023)
DESCRIPTION = (
    "inputs and upstream gradients copied to new memory, except those a bwd point's saved graph holds, and a "
    "random 4 KiB-4 MiB spacer held, each round"
)
SPACER_ONLY = "a random 4 KiB-4 MiB spacer held each round; the inputs, held by the timed code, stay"


FIXED = "inputs allocated once: every round sees the process's one placement"


def recorded(mode: str, kernels: bool = True) -> dict[str, str]:
    """The run's record of its placement mode (round | fixed), as method fields read it."""
    if mode == "fixed":
        return {"mode": "one per process", "method": FIXED}
    return {"mode": "per round", "method": DESCRIPTION if kernels else SPACER_ONLY}


def _moved(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(t.requires_grad)


class Placement:
    """Per-round re-placement for one group: ``new_round`` before the first visit of each round."""

    def __init__(
        self, device: torch.device, seed: int, input_lists: Sequence[list[Any] | None], mode: str = "round"
    ) -> None:
        self.enabled = device.type == "cpu" and mode == "round"
        self._rng = random.Random(seed)
        # each distinct list once: candidates of one variant share their input set
        self._lists = list({id(x): x for x in input_lists if x is not None}.values())
        self._spacer: torch.Tensor | None = None
        self.round: int | None = None
        self.spacer_pages: list[int] = []

    def new_round(self, r: int) -> None:
        if not self.enabled or r == self.round:
            return
        self.round = r
        self._spacer = None  # the old spacer's memory returns to the allocator first
        pages = self._rng.randint(*SPACER_PAGES)
        self._spacer = torch.empty(pages * PAGE, dtype=torch.uint8)
        self._spacer.fill_(0)  # touched, so its pages are really taken
        self.spacer_pages.append(pages)
        for inputs in self._lists:
            for j, t in enumerate(inputs):
                if isinstance(t, torch.Tensor):
                    inputs[j] = _moved(t)

    def close(self) -> None:
        self._spacer = None

    def describe(self) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        return {"method": DESCRIPTION if self._lists else SPACER_ONLY, "spacer_pages": self.spacer_pages}
