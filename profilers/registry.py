"""The labs' registry: every kind of stored run, with its spec, CLI command, report section and page.

A lab is one folder under ``labs/`` (``spec.py``, ``measure.py``, ``analysis.py``, ``plots.py``, ``section.py``,
``cli.py``) and one line in ``LABS``; the kernel sweep, the core every lab builds on, is registered the same
way with its parts where the engine keeps them. Parts are named by module path and loaded when used, so
reading the registry loads no lab and no torch: the store checks run kinds against it, the CLI adds each
lab's command, the report finds each run's section and the dashboard each lab's page. A lab's
``__init__.py`` stays empty, so importing its analysis never loads its measuring code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lab:
    """One kind of run. ``kind`` names the run kind, the lab's folder and (but for kernels) its CLI command."""

    kind: str
    title: str  # the page's title in the navigation
    spec: str  # "module:Class"; Class.from_dict(doc) validates a stored or imported spec (raises SpecError)
    cli: str  # a module with register(subparsers)
    section: str  # a module with section(store, run, figs) -> list of HTML parts
    page: str  # the dashboard page, a path from the project's root
    icon: str
    nav: str  # the navigation section the page is listed in
    noun: str  # what one run is called: "kernel sweep", "training grid"
    counts: str = ""  # what its progress counts: "points" (stored as they finish), "cells", or "" (no count)
    command: str = ""  # its CLI command where that is not its kind (the kernel sweep's is "run")

    @property
    def cli_command(self) -> str:
        return self.command or self.kind

    def part(self, name: str) -> Any:
        """The object a part names ("module:attr"), or the module."""
        module, _, attr = getattr(self, name).partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attr) if attr else loaded

    def parse_spec(self, doc: Any) -> Any:
        return self.part("spec").from_dict(doc)


LABS: tuple[Lab, ...] = (
    Lab("kernels", "Results", "profilers.spec:SweepSpec", "profilers.commands.run", "profilers.report.kernels",
        "pages/results.py", ":material/monitoring:", "Analyse", "kernel sweep", "points", command="run"),
    Lab("blocks", "Blocks", "profilers.labs.blocks.spec:BlockSweepSpec", "profilers.labs.blocks.cli",
        "profilers.labs.blocks.section", "pages/blocks.py", ":material/view_in_ar:", "Architecture", "block sweep",
        "points"),
    Lab("models", "Models", "profilers.labs.models.spec:ModelSweepSpec", "profilers.labs.models.cli",
        "profilers.labs.models.section", "pages/models.py", ":material/model_training:", "Architecture",
        "model sweep", "points", command="model"),
    Lab("training", "Training", "profilers.labs.training.spec:TrainingSpec", "profilers.labs.training.cli",
        "profilers.labs.training.section", "pages/training.py", ":material/ssid_chart:", "Architecture",
        "training grid", "cells"),
    Lab("numerics", "Numerics", "profilers.labs.numerics.spec:NumericsSpec", "profilers.labs.numerics.cli",
        "profilers.labs.numerics.section", "pages/numerics.py", ":material/calculate:", "Deployment",
        "numerics run"),
    Lab("drift", "Drift", "profilers.labs.drift.spec:DriftSpec", "profilers.labs.drift.cli",
        "profilers.labs.drift.section", "pages/drift.py", ":material/insights:", "Deployment", "drift run"),
    # the machine's own dimensioning experiment, shown on the Hardware page (a core page)
    Lab("calibration", "Hardware", "profilers.spec:CalibrationSpec", "profilers.commands.calibrate",
        "profilers.report.calibration", "pages/hardware.py", ":material/memory:", "Measure", "calibration",
        "points", command="calibrate"),
)  # fmt: skip


def kinds() -> tuple[str, ...]:
    return tuple(lab.kind for lab in LABS)


def find(kind: str | None) -> Lab | None:
    """The lab of a run kind, or None for a kind this version does not know (a store shared with a newer one)."""
    try:
        return get(kind)
    except KeyError:
        return None


def get(kind: str | None) -> Lab:
    """The lab of a run kind (a run stored before kinds existed is a kernel sweep); KeyError if unknown."""
    for lab in LABS:
        if lab.kind == (kind or "kernels"):
            return lab
    raise KeyError(kind)
