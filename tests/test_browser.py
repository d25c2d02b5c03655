"""The served dashboard in a real headless Chromium (Debian's), started the way `make run` starts it."""

import os
import signal
import time

import pytest
from served import browser_fixture, chromium_or_skip, healthy, serve

from profilers import jobs
from profilers.spec import SweepSpec
from profilers.store import Store

CHROMIUM = chromium_or_skip()
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    db = tmp / "results.db"
    with serve(db) as base:
        yield base, db, tmp


browser = pytest.fixture(scope="module")(browser_fixture)


@pytest.mark.slow  # a sweep started, run and charted through the served dashboard
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
    page.get_by_role("link", name="Open it on the Results page").click()
    page.get_by_role("heading", name="Results").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() >= 1
    page.screenshot(path=str(tmp / "results.png"), full_page=True)
    with Store(db) as s:
        (run,) = [r for r in s.list_runs() if r["source"] == "local"]  # beside the shipped reference runs
        assert run["status"] == "completed" and run["points_done"] == 9
    page.close()


@pytest.mark.slow  # a sweep started, its worker killed mid-point, and the page followed in Chromium
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
    assert healthy(base)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/runs")
    page.get_by_role("heading", name="Runs").wait_for(timeout=60_000)
    # the user picks the killed run: whether the shipped reference runs were imported before it (ids below it)
    # or by this first page load (ids above it, so newer) depends on the tests that ran before this one
    page.locator('[data-testid="stSelectbox"]').filter(has_text="run ").first.click()
    page.get_by_role("option").filter(has_text="to be killed").first.click()
    page.get_by_text(f"Run {run['id']} is interrupted", exact=False).first.wait_for(timeout=30_000)
    page.screenshot(path=str(tmp / "runs_interrupted.png"), full_page=True)
    with Store(db) as s:
        assert s.get_run(run["id"])["status"] == "interrupted"
    assert healthy(base)
    page.close()


def test_report_renders_offline(server, browser):
    """The report of a shipped reference run (its own store: what the served one holds depends on the tests
    before this one) opens with no network and draws its figures."""
    _, _, tmp = server
    out = tmp / "report.html"
    from conftest import import_shipped, run_cli

    db = tmp / "report.db"
    with Store(db) as s:
        run_id = import_shipped(s, tmp, "h200-2026-11-27-fp16-fwd.json")
    p = run_cli("report", str(run_id), "-o", str(out), db=db)
    assert p.returncode == 0, p.stderr
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


def test_deep_link_as_first_request_goes_through_the_app_shell(tmp_path, browser):
    """A fresh server's very first request is a deep link: it must get app.py's navigation, not Streamlit's
    file-name pages (the legacy pages/ mode). Verified on the Streamlit range pinned in requirements.txt."""
    with serve(tmp_path / "results.db") as base:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/recommend")
        page.get_by_role("heading", name="Recommend").wait_for(timeout=60_000)
        nav = page.locator('[data-testid="stSidebarNav"]')
        nav.get_by_text("Analyse").wait_for(timeout=30_000)  # app.py's sections and titles
        assert nav.get_by_text("Hardware").count() == 1
        assert nav.get_by_text("app", exact=True).count() == 0  # no file-name entry for the entry point
        page.screenshot(path=str(tmp_path / "deep_link.png"), full_page=True)
        page.close()
