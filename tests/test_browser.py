"""The served dashboard in a real headless Chromium (Debian's), started the way `make run` starts it."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

from profilers import jobs
from profilers.spec import SweepSpec
from profilers.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("NORMSCOPE_REQUIRE_BROWSER") == "1"

pytestmark = pytest.mark.browser
if not Path(CHROMIUM).exists():
    if REQUIRED:
        raise RuntimeError(
            "NORMSCOPE_REQUIRE_BROWSER=1 but Debian's chromium is not installed (apt-get install chromium)"
        )
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
STREAMLIT = Path(sys.executable).parent / "streamlit"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    db = tmp / "results.db"
    port = _free_port()
    env = dict(os.environ, NORMSCOPE_DB=str(db), STREAMLIT_SERVER_PORT=str(port))
    proc = subprocess.Popen(
        [str(STREAMLIT), "run", "app.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise AssertionError(f"the dashboard did not start: {proc.stdout.read()[-2000:]}")
    yield base, db, tmp
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _healthy(base: str) -> bool:
    return urllib.request.urlopen(f"{base}/_stcore/health", timeout=5).read() == b"ok"


def test_tiny_sweep_from_the_run_page_to_results_charts(server, browser):
    base, db, tmp = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(base)
    page.get_by_role("heading", name="Run a sweep").wait_for(timeout=60_000)
    page.get_by_text("custom shapes").click()
    shapes = page.get_by_label("Shapes (tokens×hidden, comma separated)")
    shapes.fill("64x256")
    shapes.press("Enter")
    budget = page.get_by_label("Budget ms / point")
    budget.fill("10")
    budget.press("Enter")
    page.get_by_text("9 points", exact=False).wait_for(timeout=30_000)
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_text("points", exact=False).first.wait_for(timeout=30_000)
    page.get_by_text("completed:", exact=False).wait_for(timeout=240_000)
    page.screenshot(path=str(tmp / "run_done.png"), full_page=True)
    page.get_by_role("link", name="Open the results").click()
    page.get_by_role("heading", name="Results").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() >= 1
    page.screenshot(path=str(tmp / "results.png"), full_page=True)
    with Store(db) as s:
        (run,) = s.list_runs()
        assert run["status"] == "completed" and run["points_done"] == 9
    page.close()


def test_killed_worker_leaves_dashboard_serving_and_run_interrupted(server, browser):
    base, db, tmp = server
    spec = SweepSpec(
        variants=("layernorm", "rmsnorm", "dyt"),
        impls=("eager", "native"),
        shapes=((64, 256), (128, 256), (256, 256), (512, 256)),
        modes=("fwd", "fwdbwd"),
        budget_ms=200,
        label="to be killed",
    )
    job = jobs.start(spec, db)
    deadline = time.monotonic() + 120
    run = None
    while time.monotonic() < deadline:
        with Store(db) as s:
            run = jobs.run_of(s, job.pid)
        if run and run["points_done"] >= 2:
            break
        time.sleep(0.2)
    assert run and run["points_done"] >= 2, jobs.log_tail(job.log_path)
    os.kill(job.pid, signal.SIGKILL)
    time.sleep(0.5)
    assert _healthy(base)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/runs")
    page.get_by_role("heading", name="Runs").wait_for(timeout=60_000)
    page.get_by_text("interrupted", exact=False).first.wait_for(timeout=30_000)
    page.screenshot(path=str(tmp / "runs_interrupted.png"), full_page=True)
    with Store(db) as s:
        assert s.get_run(run["id"])["status"] == "interrupted"
    assert _healthy(base)
    page.close()


def test_report_renders_offline(server, browser):
    _, db, tmp = server
    out = tmp / "report.html"
    from conftest import run_cli

    with Store(db) as s:
        run_id = s.list_runs()[-1]["id"]
    assert run_cli("report", str(run_id), "-o", str(out), db=db).returncode == 0
    ctx = browser.new_context(offline=True, viewport={"width": 1200, "height": 1400})
    page = ctx.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() >= 4
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
    page.screenshot(path=str(tmp / "report.png"))
    ctx.close()
