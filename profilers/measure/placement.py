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

Measured (``benchmarks/cpu_process_spread.py`` and a 5-process probe, LayerNorm
and RMSNorm native fp32, huge pages on, 2-core VM): at 1024×768 the process
medians of RMS/LN ranged 2.36-3.06 with a fixed placement and 2.56-2.79 with a
new one each round; at 4096×4096, 2.16-2.27 and 2.11-2.19.

Inputs that an autograd graph already holds (the ``bwd`` mode's saved forward)
stay where they are; the spacer still moves everything the calls allocate.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

PAGE = 4096
SPACER_PAGES = (1, 1023)
DESCRIPTION = "inputs copied to new memory and a random 4 KiB-4 MiB spacer held, each round"
SPACER_ONLY = "a random 4 KiB-4 MiB spacer held each round (the inputs, held by the timed code, stay)"


def _moved(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(t.requires_grad)


class Placement:
    """Per-round re-placement for one group: ``new_round`` before the first visit of each round."""

    def __init__(self, device: torch.device, seed: int, input_lists: Sequence[list[Any] | None]) -> None:
        self.enabled = device.type == "cpu"
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
