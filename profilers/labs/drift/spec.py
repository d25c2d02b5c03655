"""What the drift monitor does: profile a model's norm inputs, check new data against a profile, or run the demo.

One spec for the three actions, validated on construction and round-tripping through
JSON like every other run kind. A user's model is named by an import path
(``package.module:function`` returning the model and a data iterator), never by a
file to unpickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...spec import JsonSpec, SpecError, _check_device
from ..numerics.spec import DEMO_MODEL, check_args, check_import_path

ACTIONS: dict[str, str] = {
    "profile": "record the statistics of every norm layer's input on reference data and calibrate thresholds",
    "check": "score new data against a profile: per-layer shift scores, alarms, the layers that moved most",
    "demo": "a language model on Shakespeare: calibrated false alarms on held-out text, detection on shifted sets",
}
DEMO_SETS: dict[str, str] = {
    "heldout": "held-out Shakespeare (in distribution: alarms here are false alarms)",
    "prose": "modern English prose: this project's own README and documentation",
    "code": "Python source code from this project",
    "corrupt": "held-out Shakespeare with each character replaced at random with probability p",
}
DEFAULT_LEVELS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def _whole(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SpecError(f"{name} must be a whole number in [{lo}, {hi}], got {v!r}")
    return v


@dataclass(frozen=True)
class DriftSpec(JsonSpec):
    """A drift run. ``profile`` is the profile file: written by action profile, read by action check."""

    _what: ClassVar[str] = "drift spec"

    action: str = "demo"
    model: str | None = None  # "demo" or package.module:function
    args: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    reference_windows: int = 20
    calibration_windows: int = 200
    window_batches: int = 1
    windows: int | None = None  # check: at most this many windows of new data (None: all)
    alpha: float = 0.05
    sample_rows: int = 2000
    steps: int = 800  # demo: training steps of the demo language model
    levels: tuple[float, ...] = DEFAULT_LEVELS  # demo: corruption probabilities
    test_windows: int = 100  # demo: windows scored per shifted set (4× as many held-out windows for false alarms)
    device: str = "cpu"
    seed: int = 0
    label: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.action not in ACTIONS:
            raise SpecError(f"unknown drift action {self.action!r}: use one of {', '.join(ACTIONS)}")
        if self.model is not None and self.model != DEMO_MODEL:
            set_(self, "model", check_import_path(self.model))
        if self.action in ("profile", "check") and self.model is None:
            raise SpecError(f"drift {self.action} needs --model package.module:function (or --model demo)")
        set_(self, "args", check_args(self.args))
        if self.action in ("profile", "check"):
            if not isinstance(self.profile, str) or not self.profile.strip():
                what = "-o PROFILE.json to write" if self.action == "profile" else "the PROFILE.json to check against"
                raise SpecError(f"drift {self.action} needs {what}")
        elif self.profile is not None and not isinstance(self.profile, str):
            raise SpecError("profile must be a file path")
        _whole("reference_windows", self.reference_windows, 1, 100_000)
        _whole("calibration_windows", self.calibration_windows, 2, 100_000)
        _whole("window_batches", self.window_batches, 1, 100_000)
        if self.windows is not None:
            _whole("windows", self.windows, 1, 1_000_000)
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 0.5:
            raise SpecError(f"alpha (the false-alarm rate) must be in (0, 0.5), got {a!r}: e.g. --alpha 0.05")
        set_(self, "alpha", float(a))
        need = math.ceil((1 - self.alpha) / self.alpha - 1e-9)
        if self.action != "check" and self.calibration_windows < need:
            raise SpecError(
                f"{self.calibration_windows} calibration windows cannot calibrate a {self.alpha:g} false-alarm "
                f"rate: use --calibration-windows {need} or more, or a larger --alpha"
            )
        _whole("sample_rows", self.sample_rows, 10, 1_000_000)
        _whole("steps", self.steps, 1, 1_000_000)
        if isinstance(self.levels, str) or not isinstance(self.levels, (list, tuple)):
            raise SpecError("levels must be a list of corruption probabilities, e.g. --levels 0.01,0.05,0.2")
        levels = []
        for v in self.levels:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise SpecError(f"corruption level {v!r} must be a probability in (0, 1], e.g. 0.05")
            levels.append(float(v))
        set_(self, "levels", tuple(sorted(set(levels))))
        _whole("test_windows", self.test_windows, 1, 100_000)
        set_(self, "device", _check_device(self.device))
        _whole("seed", self.seed, 0, 2**31 - 1)
        if self.label is not None and (not isinstance(self.label, str) or len(self.label) > 200):
            raise SpecError("label must be text of at most 200 characters")


def parse_levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise SpecError(f"--levels {text!r} is not a list of numbers: write e.g. 0.01,0.05,0.2") from None


def parse_args(pairs: list[str] | None) -> dict[str, str]:
    """``--arg KEY=VALUE`` pairs as keyword arguments (text) for the model function."""
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--arg {p!r} is not KEY=VALUE: write e.g. --arg split=val")
        out[key.strip()] = value
    return check_args(out)
