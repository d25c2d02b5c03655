"""Cold start of the dashboard: server start to the first rendered Run page in headless Chromium.

Starts `streamlit run app.py` on a free port with an empty store, opens the root
URL in Debian's Chromium (driven by Playwright, no browser download) and waits
for the Run page's heading. Repeats a few times; prints each and the median.

    .venv/bin/python benchmarks/dashboard_cold_start.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from served import serve  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def once(browser, tmp: Path) -> float:
    """Seconds from starting the server to the rendered Run heading in the browser."""
    t0 = time.perf_counter()
    with serve(tmp / "results.db") as base:
        page = browser.new_page()
        page.goto(base)
        page.get_by_role("heading", name="Run a sweep").wait_for(timeout=120_000)
        rendered = time.perf_counter() - t0
        page.close()
    return rendered


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, tempfile.TemporaryDirectory() as d:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        rows = []
        for i in range(a.repeats):
            tmp = Path(d) / str(i)
            tmp.mkdir()
            rows.append(once(browser, tmp))
            print(f"start {i + 1}: Run page rendered {rows[-1]:.2f} s after the server was started")
        browser.close()
    print(f"median over {a.repeats}: first Run page {statistics.median(rows):.2f} s")


if __name__ == "__main__":
    main()
