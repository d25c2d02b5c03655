"""The dimensioning experiment of this machine: the calibration sweep in K fresh processes spread in time.

Its stored record (run kind ``calibration``) holds, per working-set level, the between-run spread of
log ratios that later runs on this machine add to their intervals (``analysis/rerun.py``). The processes
are the runs over processes' own (``processes.py``): each a fresh ``python -m profilers run``. Beside it,
``calibration_runs`` keeps what each process measured that the calibration reads, so it can be refitted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from ...analysis import rerun
from ...analysis.rerun import calibrate
from ...runs import Outcome, stored_run
from ...spec import CalibrationSpec
from ...store import Store
from ..machine import provenance
from .processes import ProcessFailed, progress_recorder, run_processes
from .runner import preflight

ARTIFACT = "calibration"
RUNS_ARTIFACT = "calibration_runs"  # what the calibration was computed from, to refit or check it


def run_calibration(spec: CalibrationSpec, store: Store, say: Callable[[str], None] | None = None) -> Outcome:
    """Run the calibration and store it; refused (SpecError) before the store is touched."""
    sweep = spec.sweep()
    preflight(sweep)
    per_run = len(sweep.points())
    run_id = store.create_run(
        spec, provenance.machine(spec.device), provenance.versions(), spec.runs * per_run, label=spec.label,
        kind="calibration",
    )  # fmt: skip

    progress = progress_recorder(store, run_id, spec.runs, per_run)

    with stored_run(store, outcome := Outcome(run_id), reraise=False):
        try:
            docs = run_processes(sweep, spec.runs, say=say or (lambda line: None), on_progress=progress)
        except ProcessFailed as e:
            outcome.status, outcome.error = "failed", str(e)
        else:
            when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            cal = calibrate(docs, f"calibration run {run_id} ({when})", spec.rounds, rerun.method_of(sweep.to_dict()))
            store.put_artifact(run_id, RUNS_ARTIFACT, rerun.calibration_inputs(docs))
            store.put_artifact(run_id, ARTIFACT, cal)
    return outcome
