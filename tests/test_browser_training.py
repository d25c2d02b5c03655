"""The Training page served as `make run` serves it, in Debian's headless Chromium."""

import pytest
from served import browser_fixture, chromium_or_skip, serve
from training_seed import tiny_spec, write_corpus

from profilers.labs.training.measure import run_grid
from profilers.store import Store

CHROMIUM = chromium_or_skip()
pytestmark = pytest.mark.browser

browser = pytest.fixture(scope="module")(browser_fixture)


def test_training_page_draws_a_real_grid(tmp_path, browser):
    db = tmp_path / "results.db"
    with Store(db) as store:
        run_grid(tiny_spec(write_corpus(tmp_path / "corpus")), store)
    with serve(db, env={"NORMSCOPE_REFERENCE_DIR": str(tmp_path / "none")}) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/training")
        page.get_by_role("heading", name="Training stability").wait_for(timeout=60_000)
        page.get_by_text("Published claims, checked here").wait_for(timeout=60_000)
        page.locator(".js-plotly-plot .main-svg").nth(3).wait_for(timeout=60_000)
        nav = page.locator('[data-testid="stSidebarNav"]')
        assert nav.get_by_text("Architecture").count() >= 1 and nav.get_by_text("Training", exact=True).count() == 1
        assert page.locator(".js-plotly-plot").count() >= 4
        page.screenshot(path=str(tmp_path / "training.png"), full_page=True)
        page.close()
