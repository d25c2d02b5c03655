"""The Training page through Streamlit's AppTest, on a store seeded by a real tiny training grid."""

from pathlib import Path

import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest
from training_seed import tiny_spec, write_corpus

from profilers.labs.training.measure import run_grid
from profilers.labs.training.spec import TrainingSpec
from profilers.store import Store

CLAIMS = (
    "Pre-LN more stable than Post-LN",
    "Post-LN unstable when fine-tuning on a small set",
    "LayerScale helps stability from initialisation",
    "RMSNorm matches LayerNorm quality",
)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("stability")
    db = tmp / "results.db"
    with Store(db) as store:
        run_grid(tiny_spec(write_corpus(tmp / "corpora" / "shakespeare")), store)
    return db


def page(db: Path, monkeypatch, corpora: Path | None = None) -> AppTest:
    monkeypatch.setenv("NORMSCOPE_DB", str(db))
    monkeypatch.setenv("NORMSCOPE_REFERENCE_DIR", str(db.parent / "no-reference-runs"))
    monkeypatch.setenv("NORMSCOPE_CORPORA", str(corpora or db.parent / "no-corpora"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/training.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_shows_the_claims_tables_and_figures_of_a_grid(seeded, monkeypatch):
    at = page(seeded, monkeypatch, seeded.parent / "corpora")
    assert at.title[0].value == "Training stability" and not at.error, [e.value for e in at.error]
    text = "\n".join(m.value for m in at.markdown)
    for claim in CLAIMS:  # each with its verdict and the numbers behind it
        line = next(m.value for m in at.markdown if m.value.startswith(f"**{claim}**"))
        assert any(v in line for v in ("measured: holds here", "not reproduced", "not measured")), line
    assert "failed: Post-LN" in text and "difference" in text
    assert len(at.dataframe) >= 6  # placements, divergence, losses, depth ratios, fine-tuning, quality
    placements = at.dataframe[0].value
    assert set(placements["placement"]) == {"Post-LN", "Pre-LN"}
    assert len(at.get("plotly_chart")) >= 4  # divergence map, loss curves, gradient norms, init profile


def test_empty_store_explains_what_to_do(tmp_path, monkeypatch):
    at = page(tmp_path / "empty.db", monkeypatch)
    assert any("No training grids yet" in i.value for i in at.info)
    assert any("make corpus" in e.value for e in at.error)  # no corpus here: Start is refused with the fix
    assert at.button(key="train-start").disabled


def test_start_runs_the_grid_in_a_worker_not_in_the_page(tmp_path, monkeypatch):
    corpora = tmp_path / "corpora"
    write_corpus(corpora / "shakespeare", documents=2, words=50)
    started = []

    class Job:
        pid = 4242

    def fake_start(spec, db, command=("run",)):
        started.append((spec, db, command))
        return Job()

    monkeypatch.setattr("profilers.jobs.start", fake_start)
    at = page(tmp_path / "empty.db", monkeypatch, corpora)
    at.button(key="train-start").click().run()
    ((spec, db, command),) = started
    assert command == ("training", "run") and isinstance(spec, TrainingSpec) and spec.preset == "quick"
    assert db == str(tmp_path / "empty.db")
