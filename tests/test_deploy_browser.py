"""The Numerics and Drift pages served as `make run` serves them, in Debian's headless Chromium."""

import pytest
from served import browser_fixture, chromium_or_skip, serve
from test_deploy_pages import seed_store

CHROMIUM = chromium_or_skip()
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    db = seed_store(tmp_path_factory.getbasetemp() / "deploy-seed")
    with serve(db, env={"NORMSCOPE_REFERENCE_DIR": str(db.parent / "no-reference-runs")}) as base:
        yield base, db.parent


browser = pytest.fixture(scope="module")(browser_fixture)


def test_numerics_page_in_chromium(served, browser):
    base, tmp = served
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{base}/numerics")
    page.get_by_role("heading", name="Numerics").first.wait_for(timeout=90_000)
    page.get_by_text("pytorch#41527", exact=False).first.wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.get_by_text("NaN/Inf risk", exact=False).count() >= 1
    assert page.locator('[data-testid="stSidebarNav"]').get_by_text("Deployment").count() == 1
    page.get_by_text("Risk map: eager").first.wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot").count() >= 3
    page.screenshot(path=str(tmp / "numerics.png"))
    page.close()


def test_drift_page_in_chromium(served, browser):
    base, tmp = served
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{base}/drift")
    page.get_by_role("heading", name="Drift").first.wait_for(timeout=90_000)
    page.get_by_text("false alarms (held-out)").first.wait_for(timeout=60_000)
    page.get_by_text("Detection rate vs corruption level").first.wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == 4
    page.screenshot(path=str(tmp / "drift.png"))
    page.close()
