"""The dashboard's dead ends, closed, in a real headless Chromium against the served app.

OOM guard and a killed worker's reason; a refused sweep's one line surviving a reload; Results filters
following newly chosen runs; Recommend accounting for every considered candidate; failed points drawn.
"""

import os
import signal
import time

import pytest
from conftest import seed_store
from served import browser_fixture, chromium_or_skip, serve

from profilers import jobs
from profilers.spec import Point
from profilers.store import Store
from profilers.store.records import PointResult

CHROMIUM = chromium_or_skip()
pytestmark = pytest.mark.browser


browser = pytest.fixture(scope="module")(browser_fixture)


def _open(browser, url: str, heading: str):
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    return page


def _custom_sweep(page, shapes: str, budget: str) -> None:
    page.get_by_text("custom shapes").click()
    box = page.get_by_label("Shapes (tokens×hidden, comma separated)")
    box.fill(shapes)
    box.press("Enter")
    b = page.get_by_label("Budget ms / point")
    b.fill(budget)
    b.press("Enter")


def _wait(predicate, timeout_s: float = 120, what: str = "condition"):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_oom_guard_skips_what_does_not_fit_and_a_killed_worker_says_why(tmp_path, browser):
    db = tmp_path / "results.db"
    with serve(
        db, env={"NORMSCOPE_MEMORY_LIMIT_GIB": "0.5", "NORMSCOPE_REFERENCE_DIR": str(tmp_path / "none")}
    ) as base:
        page = _open(browser, base, "Run a sweep")
        _custom_sweep(page, "64x256, 8192x4096", "10")
        page.get_by_text("1 shape(s) do not fit and will be skipped", exact=False).wait_for(timeout=30_000)
        page.get_by_role("button", name="Start", exact=True).click()
        page.get_by_text("completed:", exact=False).wait_for(timeout=240_000)
        with Store(db) as s:
            run = s.list_runs()[0]
            big = [p for p in s.points(run["id"]) if p["tokens"] == 8192]
        assert big and all(p["status"] == "skipped" and "does not fit" in p["error"] for p in big)

        # a long sweep, its worker killed by SIGKILL (as the OOM killer does): the reason reaches the pages
        _custom_sweep(page, "64x256, 128x256, 256x256", "400")
        page.get_by_role("button", name="Start", exact=True).click()
        run = _wait(
            lambda: next((r for r in Store(db).list_runs() if r["status"] == "running" and r["points_done"]), None),
            what="the second sweep's first point",
        )
        os.kill(run["pid"], signal.SIGKILL)
        page.get_by_text("killed by SIGKILL", exact=False).first.wait_for(timeout=60_000)
        page.reload()
        page.get_by_text("killed by SIGKILL", exact=False).first.wait_for(timeout=60_000)  # survives a reload
        page.screenshot(path=str(tmp_path / "run_killed.png"), full_page=True)
        runs_page = _open(browser, f"{base}/runs", "Runs")
        runs_page.get_by_text("killed by SIGKILL", exact=False).first.wait_for(timeout=30_000)
        with Store(db) as s:
            assert "SIGKILL" in s.get_run(run["id"])["error"] and s.get_run(run["id"])["status"] == "interrupted"


@pytest.mark.slow  # a served dashboard of its own, reloaded in Chromium
def test_a_refused_sweep_shows_one_line_that_survives_a_reload(tmp_path, browser):
    db = tmp_path / "results.db"
    with (
        serve(db, env={"NORMSCOPE_REFERENCE_DIR": str(tmp_path / "none")}) as base,
        Store(db) as holder,
        jobs.device_lock(holder, "cpu"),
    ):
        page = _open(browser, base, "Run a sweep")
        _custom_sweep(page, "64x256", "10")
        page.get_by_role("button", name="Start", exact=True).click()
        alert = page.locator('[data-testid="stAlertContentError"]').filter(has_text="was refused")
        alert.first.wait_for(timeout=90_000)
        text = alert.first.inner_text()
        assert "device cpu is busy" in text and "\n" not in text.strip()
        page.reload()
        page.locator('[data-testid="stAlertContentError"]').filter(has_text="was refused").first.wait_for(
            timeout=60_000
        )
        page.get_by_role("button", name="Dismiss").first.click()
        # gone once the rerun the click starts has ended (not after a fixed pause that assumes an idle machine)
        refused = page.locator('[data-testid="stAlertContentError"]').filter(has_text="was refused")
        refused.first.wait_for(state="detached", timeout=30_000)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two real tiny CPU runs with different variants, plus one planted failed point and no DyT at all."""
    db = tmp_path_factory.mktemp("two") / "results.db"
    a = seed_store(db, variants=("layernorm",), impls=("eager", "native"), shapes=((64, 256), (256, 256)))
    seed_store(db, variants=("rmsnorm",), impls=("native",), shapes=((64, 256),))
    with Store(db) as s:
        failed = PointResult.for_point(
            Point("rmsnorm", "eager", "float32", 256, 256, "fwd"), "cpu", "failed", "correctness: planted failure"
        )
        s.add_point(a, 99, failed)
    return db


def test_results_filters_follow_newly_chosen_runs(two_runs, browser):
    from playwright.sync_api import expect

    with serve(two_runs, env={"NORMSCOPE_REFERENCE_DIR": str(two_runs.parent / "none")}) as base:
        page = _open(browser, f"{base}/results", "Results")
        metric = page.locator('[data-testid="stMetric"]').filter(has_text="points").first
        before = int(metric.locator('[data-testid="stMetricValue"]').inner_text())
        runs_box = page.locator('[data-testid="stMultiSelect"]').first
        runs_box.click()
        page.get_by_role("option").first.click()  # add the other run
        page.keyboard.press("Escape")
        with Store(two_runs) as s:
            total = sum(len(s.points(r["id"])) for r in s.list_runs())
        assert total > before
        value = page.locator('[data-testid="stMetric"]').filter(has_text="points").first
        # the count once the rerun has drawn it (a wrong count fails after the wait, with the value it showed)
        expect(value.locator('[data-testid="stMetricValue"]')).to_have_text(str(total), timeout=30_000)


def test_failed_points_are_drawn_on_a_not_timed_strip(two_runs, browser):
    with serve(two_runs, env={"NORMSCOPE_REFERENCE_DIR": str(two_runs.parent / "none")}) as base:
        page = _open(browser, f"{base}/results", "Results")
        page.get_by_role("tab", name="Latency").click()
        page.locator(".js-plotly-plot text").filter(has_text="not timed").first.wait_for(timeout=30_000)
        names = page.evaluate(
            "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".flatMap(g => (g.data || []).filter(t => t.visible !== false).map(t => t.name))"
        )
        assert "failed (not timed)" in names
        assert page.locator(".js-plotly-plot text").filter(has_text="not timed").count() >= 1


def test_recommend_lists_a_failed_and_an_unmeasured_candidate_with_reasons(two_runs, browser):
    with serve(two_runs, env={"NORMSCOPE_REFERENCE_DIR": str(two_runs.parent / "none")}) as base:
        page = _open(browser, f"{base}/recommend", "Recommend")
        page.get_by_text("Considered, not ranked").wait_for(timeout=30_000)
        page.screenshot(path=str(two_runs.parent / "recommend.png"), full_page=True)
        text = page.locator('[data-testid="stMain"]').inner_text()
        failed = next(line for line in text.splitlines() if line.startswith("RMSNorm eager"))
        assert "failed" in failed and "planted failure" in failed
        unmeasured = next(line for line in text.splitlines() if line.startswith("DyT eager"))
        assert "not measured" in unmeasured
