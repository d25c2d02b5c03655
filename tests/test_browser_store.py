"""A team's shared store in a real headless Chromium: the served dashboard on a PostgreSQL database, as a writer
and as a viewer whose role may only read; the password never reaches the page."""

import pytest
from conftest import run_cli, sweep
from served import browser_fixture, chromium_or_skip, serve

CHROMIUM = chromium_or_skip()
pytestmark = pytest.mark.browser

browser = pytest.fixture(scope="module")(browser_fixture)


@pytest.mark.slow
def test_the_dashboard_on_postgresql_as_writer_and_viewer(browser, pg_cluster, pg_url, tmp_path):
    from sqlalchemy import make_url

    assert run_cli("store", "migrate", pg_url).returncode == 0
    p = run_cli(*sweep("8x64,64x256", "rmsnorm,layernorm", "native,eager"), db=pg_url)
    assert p.returncode == 0, p.stderr
    db = make_url(pg_url).database
    viewer = pg_cluster.viewer(db)
    env = {"NORMSCOPE_REFERENCE_DIR": str(tmp_path / "none")}
    for who, url in (("writer", pg_url), ("viewer", viewer)):
        with serve(url, env=env) as base:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{base}/results")
            page.get_by_role("heading", name="Results").first.wait_for(timeout=60_000)
            page.get_by_text("Store: postgresql://", exact=False).first.wait_for(timeout=30_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / f"results-{who}.png"), full_page=True)
            page.goto(f"{base}/runs")
            page.get_by_role("heading", name="Runs").first.wait_for(timeout=60_000)
            if who == "viewer":
                page.get_by_text("This store is read-only here", exact=False).first.wait_for(timeout=30_000)
                assert page.get_by_role("button", name="Delete run").is_disabled()
            else:
                assert page.get_by_text("This store is read-only here", exact=False).count() == 0
            page.screenshot(path=str(tmp_path / f"runs-{who}.png"), full_page=True)
            html = page.content()
            assert "view-only-pw" not in html and make_url(pg_url).password not in html
            assert "normscope:***@" in html or "viewer:***@" in html
            page.close()
