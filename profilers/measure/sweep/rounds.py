"""Interleaved rounds: candidates of one group timed together, so a comparison is paired in time.

A *group* is the set of points that share device, shape, dtype and mode (for
blocks also the block). All candidates are prepared first; then in each round
every candidate is *visited* once in a seeded random order: a short re-warmup
and its share of the point's budget. A visit taken while the machine was
disturbed (``disturbance.py``) is re-queued at the end of the round, at most
``retries`` times, and otherwise kept and flagged.

After ``rounds`` rounds, rounds are added until every paired ratio's interval
(a non-baseline candidate against the baseline) is narrower than
``ci_target_pct`` (half-width, in % of its value) or ``2 × rounds`` are done; a
candidate whose ratio is still wider is *unstable*. An added round visits only
the baseline and the candidates whose interval is still too wide: a candidate
that is precise enough stops there, so candidates hold different rounds, and two
candidates pair over the round numbers they both have (``Visit.round``, stored
with the point as ``rounds_index``). The baseline's own median
has an interval too (stored, shown), but it is judged only when it is the only
candidate: the comparison is what a group decides, and the baseline's absolute
time may move with the machine and its memory placement while every ratio to
it holds.

Nothing here imports torch: the visit itself is a callable given by the runner.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...analysis.noise import bootstrap_median_ci, median, paired_ratio, seed_for
from ..machine.disturbance import VisitWindow


@dataclass
class Visit:
    round: int
    samples_us: tuple[float, ...]
    verdict: VisitWindow
    attempt: int  # 0 for the first try, 1.. for re-queued ones

    @property
    def median_us(self) -> float:
        return median(self.samples_us)


@dataclass
class CandidateRounds:
    """Everything one candidate got from the rounds."""

    key: Any
    visits: list[Visit] = field(default_factory=list)  # the kept visit of each round, in round order
    retried: int = 0

    @property
    def round_medians_us(self) -> list[float]:
        return [v.median_us for v in self.visits]

    @property
    def disturbed(self) -> int:
        return sum(1 for v in self.visits if v.verdict.disturbed)

    def clean_samples_us(self) -> list[float]:
        """Samples of the clean visits (all visits when none was clean)."""
        clean = [s for v in self.visits if not v.verdict.disturbed for s in v.samples_us]
        return clean or [s for v in self.visits for s in v.samples_us]


@dataclass(frozen=True)
class Interval:
    value: float
    lo: float
    hi: float

    @property
    def half_width_pct(self) -> float:
        return 100.0 * (self.hi - self.lo) / (2.0 * self.value) if self.value else float("inf")


@dataclass
class GroupResult:
    candidates: list[CandidateRounds]
    baseline: int  # index into candidates
    rounds: int
    intervals: list[Interval]  # per candidate: ratio to the baseline (the baseline: its own median)
    unstable: list[bool]
    ci_target_pct: float


# (candidate index, round) → (samples, verdict), or None when the candidate failed and leaves the group
VisitFn = Callable[[int, int], tuple[Sequence[float], VisitWindow] | None]


def too_wide(what: str, half_width_pct: float, target_pct: float, after: str = "") -> str:
    """Why a point is unstable: its interval stayed wider than the target (one sentence, everywhere)."""
    return (
        f"the 95% interval of {what} stayed ±{half_width_pct:.1f}%{after} (target ±{target_pct:g}%): too noisy to rank"
    )


def run_rounds(
    n_candidates: int,
    visit: VisitFn,
    baseline: int = 0,
    rounds: int = 7,
    ci_target_pct: float = 3.0,
    seed: int = 0,
    retries: int = 2,
    keys: Sequence[Any] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> GroupResult:
    """Time ``n_candidates`` in interleaved rounds; ``visit(i, r)`` times candidate i once."""
    if n_candidates < 1:
        raise ValueError("a group needs at least one candidate")
    rng = random.Random(seed)
    cands = [CandidateRounds(keys[i] if keys else i) for i in range(n_candidates)]
    dropped: set[int] = set()
    done = 0
    max_rounds = 2 * rounds

    def one_round(r: int, only: set[int] | None = None) -> None:
        order = [i for i in range(n_candidates) if i not in dropped and (only is None or i in only)]
        rng.shuffle(order)
        queue = [(i, 0) for i in order]
        kept: dict[int, Visit] = {}
        while queue:
            i, attempt = queue.pop(0)
            got = visit(i, r)
            if got is None:
                dropped.add(i)
                continue
            samples, verdict = got
            v = Visit(r, tuple(samples), verdict, attempt)
            if verdict.disturbed and attempt < retries:
                cands[i].retried += 1
                queue.append((i, attempt + 1))  # at the end of the round
                continue
            kept[i] = v
        for i, v in kept.items():
            cands[i].visits.append(v)
        for i in dropped:  # a candidate that left mid-round keeps no partial round
            del cands[i].visits[r:]

    def alive_baseline() -> int:
        alive = [i for i in range(n_candidates) if i not in dropped]
        return baseline if baseline in alive or not alive else alive[0]

    while done < rounds and len(dropped) < n_candidates:
        one_round(done)
        done += 1
        if on_round:
            on_round(done)

    def wide(intervals: list[Interval], base: int) -> list[bool]:
        alone = sum(1 for i in range(n_candidates) if i not in dropped) == 1
        return [
            not math.isnan(iv.value) and (i != base or alone) and iv.half_width_pct > ci_target_pct
            for i, iv in enumerate(intervals)
        ]

    base = alive_baseline()
    intervals = _intervals(cands, base, dropped, seed)
    while done < max_rounds and any(wide(intervals, base)):
        one_round(done, {base} | {i for i, w in enumerate(wide(intervals, base)) if w})
        done += 1
        if on_round:
            on_round(done)
        base = alive_baseline()
        intervals = _intervals(cands, base, dropped, seed)
    return GroupResult(cands, base, done, intervals, wide(intervals, base), ci_target_pct)


def _intervals(cands: list[CandidateRounds], baseline: int, dropped: set[int], seed: int) -> list[Interval]:
    nan = float("nan")
    if baseline in dropped or not cands[baseline].visits:
        return [Interval(nan, nan, nan) for _ in cands]
    base = cands[baseline].round_medians_us
    out = []
    for i, c in enumerate(cands):
        if i in dropped:
            out.append(Interval(nan, nan, nan))
        elif i == baseline:
            out.append(Interval(*bootstrap_median_ci(base, seed_for(seed, "baseline"))))
        else:
            by_round = {v.round: v.median_us for v in cands[baseline].visits}
            pairs = [(v.median_us, by_round[v.round]) for v in c.visits if v.round in by_round]
            if not pairs:
                out.append(Interval(nan, nan, nan))
                continue
            r = paired_ratio([o for o, _ in pairs], [b for _, b in pairs], seed_for(seed, i))
            out.append(Interval(r.value, r.lo, r.hi))
    return out
