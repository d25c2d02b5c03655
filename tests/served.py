"""Start the dashboard the way `make run` does, on a free port, for browser tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
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
