"""Reference runs shipped with NormScope (data/reference/*.json), shown read-only beside the user's runs.

They are exports measured on real GPUs, so a CPU-only user sees what a GPU does
from the first minute. ``sync`` imports any that the store lacks (matched by the
run's uid, so it is idempotent) and marks them ``reference:FILE``; the dashboard
never relabels or deletes them. A file that fails validation is skipped and
reported, never half-imported.
"""

from __future__ import annotations

import os
from pathlib import Path

from .db import Store, StoreError
from .exchange import import_run, load_export_file

REFERENCE_DIR = Path(__file__).resolve().parent.parent.parent / "data" / "reference"
PREFIX = "reference:"


def reference_dir() -> Path:
    env = os.environ.get("NORMSCOPE_REFERENCE_DIR")
    return Path(env) if env else REFERENCE_DIR


def is_reference(run: dict) -> bool:
    return str(run.get("source", "")).startswith(PREFIX)


def sync(store: Store, folder: Path | None = None) -> tuple[list[int], list[str]]:
    """Import reference files the store lacks; returns (new run ids, problems)."""
    folder = folder or reference_dir()
    new, problems = [], []
    if store.readonly or not folder.is_dir():
        return new, problems
    known = {r["uid"] for r in store.list_runs()}
    for path in sorted(folder.glob("*.json")):
        try:
            doc = load_export_file(path)
            uid = (doc.get("run") or {}).get("uid") if isinstance(doc, dict) else None
            if uid in known:
                continue
            new.append(import_run(store, doc, source=f"{PREFIX}{path.name}"))
        except StoreError as e:
            problems.append(f"{path.name}: {e}")
    return new, problems
