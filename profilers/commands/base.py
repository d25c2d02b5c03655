"""What every command shares: the one-line usage error, list flags, the method flags of a timed sweep."""

from __future__ import annotations

from typing import Any

from ..spec import ROUND_PRESETS

EXIT_USAGE = 2
PROG = "normscope"


class UsageError(Exception):
    """A flag or argument the user can fix; printed as one line, exit code 2."""


def split_list(text: str) -> list[str]:
    """A comma list flag's items, blanks dropped."""
    return [t.strip() for t in text.split(",") if t.strip()]


def rounds_fields(value: str | None) -> dict[str, Any]:
    """The spec fields a --rounds flag sets: a number of rounds, or a preset (rounds and CI target)."""
    if value is None:
        return {}
    if value in ROUND_PRESETS:
        rounds, target = ROUND_PRESETS[value]
        return {"rounds": rounds, "ci_target_pct": target}
    if value.isdigit():
        return {"rounds": int(value)}
    raise UsageError(f"--rounds must be a number or one of {', '.join(ROUND_PRESETS)}, got {value!r}")
