"""torch.profiler, the one module that drives it.

kineto writes start/stop lines straight to file descriptor 2; ``quiet_profile``
silences that descriptor for the profiled region only, so the CLI's progress on
stderr stays readable.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from torch.profiler import ProfilerActivity, profile


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def quiet_profile(cuda: bool = False, **kwargs: Any) -> Iterator[profile]:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _quiet_fd2():
        prof = profile(activities=activities, **kwargs)
        prof.__enter__()
    try:
        yield prof
    finally:
        with _quiet_fd2():
            prof.__exit__(None, None, None)
