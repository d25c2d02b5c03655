"""The Models page served as `make run` serves it, in Debian's headless Chromium: a stored model run read as a
user reads it, then a user's own config.json uploaded into the new-sweep form (and a broken one refused)."""

import json

import pytest
from served import browser_fixture, chromium_or_skip, serve
from test_models import tiny_config, tiny_spec

from profilers.labs.models import measure as MM
from profilers.measure.machine.disturbance import NullProbe
from profilers.measure.sweep.runner import run_sweep
from profilers.store import Store

CHROMIUM = chromium_or_skip()
pytestmark = pytest.mark.browser

browser = pytest.fixture(scope="module")(browser_fixture)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models-browser")
    db = tmp / "m.db"
    spec = tiny_spec(tmp, "qwen2.5-0.5b", impls=("native",), modes=("fwd", "step"), label="tiny qwen")
    with Store(db) as store:
        run_sweep(spec, store, probe=NullProbe("test"), kind=MM.ModelKind())
    with serve(db, env={"NORMSCOPE_REFERENCE_DIR": str(tmp / "no-reference-runs")}) as base:
        yield base, tmp


def test_models_page_shows_a_run_and_takes_an_uploaded_config(served, browser):
    base, tmp = served
    page = browser.new_page(viewport={"width": 1400, "height": 2600})
    page.goto(f"{base}/models")
    page.get_by_role("heading", name="Models").first.wait_for(timeout=90_000)
    page.get_by_text("the model's own RMSNorm → RMSNorm native", exact=False).first.wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.get_by_text("The fine-tuning claim").count() == 1
    assert page.get_by_text("a step trains every weight", exact=False).count() >= 1
    page.screenshot(path=str(tmp / "models-run.png"), full_page=True)

    page.get_by_text("my config.json").first.click()
    uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    uploader.wait_for(state="attached", timeout=30_000)
    mine = tiny_config(tmp / "upload", "gemma-2-2b")
    uploader.set_input_files(str(mine))
    page.get_by_text("Layers (of 2)").first.wait_for(timeout=60_000)
    page.get_by_text("gemma2-64,", exact=False).first.wait_for(timeout=60_000)  # the sweep, named from the file
    assert page.get_by_text("None", exact=True).count() == 0  # missing readings read N/A
    page.screenshot(path=str(tmp / "models-upload.png"), full_page=True)

    broken = tmp / "broken" / "config.json"
    broken.parent.mkdir()
    broken.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    uploader.set_input_files(str(broken))
    page.get_by_text("lacks positive whole-number", exact=False).first.wait_for(timeout=60_000)
    # nothing to start: the button of the previous upload stays drawn until the page's rerun ends (Streamlit
    # removes a stale element only then), so the test waits for it to go rather than reading it mid-rerun
    page.get_by_role("button", name="Start the model sweep").wait_for(state="detached", timeout=30_000)
    page.close()
