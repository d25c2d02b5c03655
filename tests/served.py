"""Start the dashboard the way `make run` does, on a free port, for browser tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STREAMLIT = Path(sys.executable).parent / "streamlit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(base: str) -> bool:
    try:
        return urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def serve(db: Path, timeout_s: float = 90, env: dict | None = None) -> Iterator[str]:
    """`streamlit run app.py` with its store at ``db``; yields the base URL once the server answers."""
    port = free_port()
    full_env = dict(os.environ, NORMSCOPE_DB=str(db), STREAMLIT_SERVER_PORT=str(port), **(env or {}))
    proc = subprocess.Popen(
        [str(STREAMLIT), "run", "app.py"],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while not healthy(base):
        if time.monotonic() > deadline or proc.poll() is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"the dashboard did not start: {proc.stdout.read()[-2000:]}")
        time.sleep(0.05)
    try:
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> str:
    """Debian's Chromium, or a skip (an error when NORMSCOPE_REQUIRE_BROWSER=1, as in CI)."""
    import pytest

    if not Path(CHROMIUM).exists():
        if os.environ.get("NORMSCOPE_REQUIRE_BROWSER") == "1":
            raise RuntimeError("NORMSCOPE_REQUIRE_BROWSER=1 but Debian's chromium is not installed")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
    return CHROMIUM


def browser_fixture():
    """Module-scoped Debian Chromium through Playwright: ``browser = pytest.fixture(scope="module")(
    browser_fixture)`` in a test module (after ``chromium_or_skip()``)."""
    import pytest

    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_or_skip(), args=CHROMIUM_FLAGS)
        yield b
        b.close()
