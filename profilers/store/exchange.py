"""Moving runs between machines: JSON export, validated import, and the file helpers they share.

Exports are plain JSON validated field by field on import; nothing is
unpickled. A file that fails validation changes nothing in the store.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import catalog, registry
from ..catalog import POINT_STATUSES, STEP_MODE
from ..spec import DTYPES, MAX_HIDDEN, MAX_TOKENS, MODES, TIMING_METHODS, VARIANTS, SpecError
from .db import Store, StoreError, now_iso
from .schema import POINT_COLUMNS, REQUIRED_POINT, RUN_RECORD_VERSION, RUN_STATUSES, SCHEMA_VERSION

EXPORT_FORMAT = "normscope-run"
EXPORT_RUN_FIELDS = (
    "uid",
    "status",
    "label",
    "created_at",
    "finished_at",
    "spec",
    "machine",
    "versions",
    "copy_gbps",
    "idle_power_w",
    "points_planned",
    "error",
    "series",
    "sensors",
    "kind",
    "extra",
)
SQLITE_INT_MAX = 2**63 - 1


def export_run(store: Store, run_id: int) -> dict[str, Any]:
    run = store.get_run(run_id)
    exported = {k: run.get(k) for k in EXPORT_RUN_FIELDS}
    points = [{k: p[k] for k in ("seq", *POINT_COLUMNS, "extra")} for p in store.points(run_id)]
    return {
        "format": EXPORT_FORMAT,
        "schema_version": RUN_RECORD_VERSION,
        "exported_at": now_iso(),
        "run": exported,
        "points": points,
        "artifacts": store.artifacts(run_id),
    }


def import_run(store: Store, doc: Any, source: str = "import") -> int:
    """Validate an exported run field by field, then insert it in one transaction."""
    run, points = validate_export(doc)
    existing = store.run_id_of_uid(run["uid"])
    if existing is not None:
        raise StoreError(f"run {run['uid']} is already in this store as run {existing}")
    return store.insert_imported(run, points, source, doc.get("artifacts") or {})


# -- validation of exported files ------------------------------------------------------
_ENUMS = {
    "variant": VARIANTS,
    "impl": tuple(catalog.IMPLS),  # a kernel's, or a models-lab candidate's (the model's own module)
    "mode": (*MODES, STEP_MODE),
    "dtype": DTYPES,
    "status": POINT_STATUSES,
    "timing_method": TIMING_METHODS,
}


def _check_type(where: str, value: Any, typ: type, optional: bool) -> None:
    if value is None:
        if optional:
            return
        raise StoreError(f"{where} is missing or null: the file is not a complete NormScope export")
    if typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is bool:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, typ)
    if ok and typ in (int, float) and isinstance(value, int) and abs(value) > SQLITE_INT_MAX:
        raise StoreError(f"{where} = {value} is beyond a 64-bit integer: the file is not a valid export")
    if not ok:
        raise StoreError(
            f"{where} should be {typ.__name__}, got {type(value).__name__}: the file is not a valid export"
        )


def _validate_run(run: Any) -> None:
    if not isinstance(run, dict):
        raise StoreError('export lacks a "run" object')
    unknown = set(run) - set(EXPORT_RUN_FIELDS)
    if unknown:
        raise StoreError(f"run has unknown field(s) {', '.join(sorted(unknown))}")
    for name, typ, optional in (
        ("uid", str, False),
        ("status", str, False),
        ("label", str, True),
        ("created_at", str, False),
        ("finished_at", str, True),
        ("spec", dict, False),
        ("machine", dict, False),
        ("versions", dict, False),
        ("copy_gbps", float, True),
        ("idle_power_w", float, True),
        ("points_planned", int, True),
        ("error", str, True),
        ("series", dict, True),
        ("sensors", dict, True),
        ("kind", str, True),
        ("extra", dict, True),
    ):
        _check_type(f"run.{name}", run.get(name), typ, optional)
    if run["status"] not in RUN_STATUSES:
        raise StoreError(f"run.status {run['status']!r} is not one of {', '.join(RUN_STATUSES)}")
    kind = run.get("kind") or "kernels"
    if kind not in registry.kinds():
        raise StoreError(f"run.kind {kind!r} is not one of {', '.join(registry.kinds())}")
    for name in ("copy_gbps", "idle_power_w", "points_planned"):
        if run.get(name) is not None and run[name] < 0:
            raise StoreError(f"run.{name} is negative ({run[name]}): the file is not a valid export")
    try:
        registry.get(kind).parse_spec(run["spec"])
    except (SpecError, TypeError, ValueError) as e:
        raise StoreError(f"run.spec is invalid: {e}") from None


def _validate_point(i: int, p: Any) -> None:
    where = f"points[{i}]"
    if not isinstance(p, dict):
        raise StoreError(f"{where} is not an object")
    unknown = set(p) - {"seq", "extra", *POINT_COLUMNS}
    if unknown:
        raise StoreError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")
    _check_type(f"{where}.seq", p.get("seq"), int, False)
    for name, typ in POINT_COLUMNS.items():
        _check_type(f"{where}.{name}", p.get(name), typ, name not in REQUIRED_POINT)
    for name, allowed_values in _ENUMS.items():
        if p.get(name) is not None and p[name] not in allowed_values:
            raise StoreError(f"{where}.{name} {p[name]!r} is not one of {', '.join(allowed_values)}")
    if p.get("extra") is not None and not isinstance(p["extra"], dict):
        raise StoreError(f"{where}.extra should be an object")
    _validate_values(where, p)


_NON_NEGATIVE = (
    "p20_us",
    "p50_us",
    "p80_us",
    "mean_us",
    "iqr_us",
    "n_samples",
    "calls_per_sample",
    "bytes_moved",
    "gbps",
    "roofline_pct",
    "peak_bytes",
    "saved_bytes",
    "max_abs_err",
    "max_rel_err",
    "rel_l2_err",
    "compile_s",
    "energy_window_s",
    "energy_repeats",
    "energy_mj_per_call",
    "energy_j_per_mtok",
    "energy_mean_power_w",
    "energy_spread_pct",
    "kernels_per_call",
    "kernel_us_per_call",
    "threads",
    "working_set_bytes",
    "ceiling_gbps",
    "rounds",
    "visits",
    "visits_disturbed",
    "ratio",
    "ratio_lo",
    "ratio_hi",
    "energy_loop_us",
    "memops_per_call",
    "error_multiple",
)


def _validate_values(where: str, p: dict[str, Any]) -> None:
    """Values a measurement can take: shapes in range, times non-negative and ordered, intervals ordered."""
    if p["tokens"] < 1 or p["hidden"] < 1:
        raise StoreError(f"{where} has a non-positive shape {p['tokens']}x{p['hidden']}")
    if p["tokens"] > MAX_TOKENS or p["hidden"] > MAX_HIDDEN:
        raise StoreError(
            f"{where} has shape {p['tokens']}x{p['hidden']} out of range (tokens ≤ {MAX_TOKENS}, "
            f"hidden ≤ {MAX_HIDDEN}): the file is not a valid export"
        )
    for name in _NON_NEGATIVE:
        if p.get(name) is not None and p[name] < 0:
            raise StoreError(f"{where}.{name} is negative ({p[name]}): the file is not a valid export")
    for lo, hi in (("p20_us", "p50_us"), ("p50_us", "p80_us"), ("ratio_lo", "ratio"), ("ratio", "ratio_hi")):
        if p.get(lo) is not None and p.get(hi) is not None and p[lo] > p[hi]:
            raise StoreError(f"{where} has {lo} {p[lo]} > {hi} {p[hi]}: the file is not a valid export")


def validate_export(doc: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise StoreError(f'not a NormScope run export (expected "format": "{EXPORT_FORMAT}")')
    version = doc.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError("export has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"export has schema v{version}, newer than this NormScope's v{SCHEMA_VERSION}: upgrade NormScope"
        )
    run, points = doc.get("run"), doc.get("points")
    if not isinstance(points, list):
        raise StoreError('export lacks a "points" list')
    _validate_run(run)
    for i, p in enumerate(points):
        _validate_point(i, p)
    artifacts = doc.get("artifacts")
    if artifacts is not None and (not isinstance(artifacts, dict) or not all(isinstance(k, str) for k in artifacts)):
        raise StoreError('export\'s "artifacts" should be an object of named documents')
    return run, points


# -- files ------------------------------------------------------------------------------
def load_export_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"no such file {path}: check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read {path}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(
            f"{path} is not JSON ({e.msg} at line {e.lineno}): export a run with `python -m profilers export`"
        ) from None


def output_path(path: str | os.PathLike[str], hint: str) -> Path:
    """A file path the user asked us to write, refused with the fix when it cannot be."""
    out = Path(path)
    if out.is_dir():
        raise StoreError(f"{out} is a folder: give a file name, e.g. -o {hint}")
    if not out.parent.exists():
        raise StoreError(f"folder {out.parent} does not exist: create it or choose another path")
    return out


def atomic_write(out: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".normscope-", suffix=out.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
