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


def add_margin_flag(p: Any, default_pct: float | None, what: str) -> None:
    """``--margin-pct``: the margin of practical equivalence a command's verdicts are taken at."""
    default = f"default {default_pct:g}" if default_pct is not None else "default: 2 for a kernel, 1 for a step"
    p.add_argument(
        "--margin-pct",
        type=float,
        help=f"equivalence margin, ± %% of {what} ({default}): inside it two candidates are equivalent",
    )


def margin_of(a: Any, default_pct: float) -> float:
    """The ``--margin-pct`` a command was given, checked (a one-line usage error), or its default."""
    from ..analysis.equivalence import check_margin

    if getattr(a, "margin_pct", None) is None:
        return default_pct
    try:
        return check_margin(a.margin_pct)
    except ValueError as e:
        raise UsageError(f"--margin-pct: {e}") from None


def run_lab_sweep(
    spec: Any, kind: Any, db: str | None, label: str | None, as_json: bool, banner: str | None = None
) -> int:
    """A lab's sweep from the CLI (blocks, models), once it is validated and its pages requested: preflight,
    ``banner`` then progress on stderr (one rewritten line on a terminal), the run under its device lease, the
    tally, and the points as JSON on stdout when asked."""
    import json
    import sys

    from ..jobs import device_lock
    from ..measure.sweep.runner import preflight, run_sweep
    from ..report.text import block_progress_line
    from ..store import Store

    preflight(spec, kind)
    if banner:  # what is about to run, once the sweep is known to start
        print(banner, file=sys.stderr)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int, p: Any, res: Any) -> None:
        if res is None and not tty:
            return
        line = block_progress_line(done if res else done + 1, total, p, res)
        sys.stderr.write(("\r\033[K" if tty else "") + line + ("" if tty and res is None else "\n"))
        sys.stderr.flush()

    with Store(db) as store, device_lock(store, spec.device):
        outcome = run_sweep(spec, store, progress=progress, label=label, kind=kind)
        run = store.get_run(outcome.run_id)
    print(
        f"run {outcome.run_id} {outcome.status}: {run['points_ok']} ok, {run['points_flagged']} imprecise or "
        f"unstable, {run['points_failed']} failed, {run['points_skipped']} skipped; store {store.where}",
        file=sys.stderr,
    )
    if as_json:
        doc = {"run_id": outcome.run_id, "status": outcome.status, "points": [r.to_dict() for r in outcome.results]}
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    return outcome.exit_code


def add_lab_run_flags(r: Any) -> None:
    """The flags every lab's ``run`` shares (blocks, models): where and how long to measure, the spec file,
    the label, the store and JSON output."""
    r.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    r.add_argument("--threads", type=int, help="CPU threads (default: all usable)")
    r.add_argument("--budget-ms", type=float, help="measurement budget per point in ms")
    r.add_argument("--warmup-ms", type=float, help="warmup budget per point in ms")
    r.add_argument("--rounds", help="a number, or quick|default|accurate")
    r.add_argument("--energy", action="store_true", help="measure energy per call")
    r.add_argument("--spec", help="read the sweep from a JSON spec file (flags override it)")
    r.add_argument("--label", help="a label stored with the run")
    r.add_argument("--db", help="store path (default data/results.db or $NORMSCOPE_DB)")
    r.add_argument("--json", action="store_true", help="print the run's points as JSON on stdout")
