"""Sensors: readings with units in their names, or None with the reason.

``nvml`` is the only module that touches pynvml; ``host`` reads psutil and RAPL;
``sampler`` polls both in a background thread while a point runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Reading(Generic[T]):
    """A sensor value, or None and why it is missing. Never 0 for "unknown"."""

    value: T | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def missing(reason: str) -> Reading:
    return Reading(None, reason)
