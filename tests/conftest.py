import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, db: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run `python -m profilers …` as a user would; returns the CompletedProcess."""
    e = dict(os.environ)
    e.pop("NORMSCOPE_DB", None)
    if db is not None:
        e["NORMSCOPE_DB"] = str(db)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "profilers", *args],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sweep(shapes: str, variants: str, impls: str, *extra: str, budget_ms: str = "5") -> list[str]:
    """Arguments of a small, quick `run`."""
    return [
        "run",
        "--shapes",
        shapes,
        "--variants",
        variants,
        "--impls",
        impls,
        "--budget-ms",
        budget_ms,
        "--warmup-ms",
        "2",
        *extra,
    ]


def run_json(*args: str, db: Path, timeout: float = 300) -> dict:
    p = run_cli(*args, "--json", db=db, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.db"
