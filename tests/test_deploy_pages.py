"""The Numerics and Drift pages through Streamlit's AppTest, on a store seeded by real (tiny) CLI runs."""

import os
import random
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from streamlit.testing.v1 import AppTest

from profilers.store import Store

USER_MODULE = """
import torch

def build(split="ref", shift="0"):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 16), torch.nn.LayerNorm(16)
    )
    with torch.no_grad():
        net[2].bias += float(shift)
    g = torch.Generator().manual_seed({"ref": 1, "new": 2}[split])
    return net, [torch.randn(32, 8, generator=g) for _ in range(30)]
"""
_VOCABULARY = (
    "the of and to a in that is was he for it with as his on be at by this had not are but from or have an they "
    "which one you were her all she there would their we him been has when who will more no if out so said what up"
)
_WORDS = _VOCABULARY.split()


def fake_corpus(folder: Path, docs: int = 12, chars: int = 20_000) -> None:
    """Seeded English-like text standing in for the Shakespeare corpus (the real one is a `make corpus` away)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(docs):
        lines, n = [], 0
        while n < chars:
            line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 10))).capitalize() + rng.choice(".,;!?")
            lines.append(line)
            n += len(line) + 1
        (folder / f"work{d:02d}.txt").write_text("\n".join(lines))


def seed_store(base: Path) -> Path:
    """A store holding a numerics run and drift profile, check and demo runs, made by the CLI (once per session)."""
    db = base / "results.db"
    if (base / "done").exists():
        return db
    base.mkdir(parents=True, exist_ok=True)
    (base / "mymodel.py").write_text(USER_MODULE)
    fake_corpus(base / "corpora" / "shakespeare")
    env = {"PYTHONPATH": str(base), "NORMSCOPE_CORPORA": str(base / "corpora")}
    steps = [
        ["numerics", "run", "--dtypes", "fp32,bf16,fp16,e4m3", "--eps", "1e-12,1e-8,1e-5,1e-3", "--rows", "8",
         "--hidden", "32", "--groups", "4", "--recorded", "none", "--label", "seed <b>numerics</b>"],
        ["drift", "profile", "--model", "mymodel:build", "-o", str(base / "profile.json"), "--reference-windows", "5",
         "--calibration-windows", "20", "--alpha", "0.1"],
        ["drift", "check", str(base / "profile.json"), "--model", "mymodel:build", "--arg", "split=new", "--arg",
         "shift=2"],
        ["drift", "demo", "--steps", "20", "--alpha", "0.2", "--reference-windows", "2", "--calibration-windows", "8",
         "--test-windows", "3", "--levels", "0.05,0.3", "--label", "tiny demo"],
    ]  # fmt: skip
    for args in steps:
        p = run_cli(*args, db=db, env=env)
        assert p.returncode == 0, (args, p.stderr[-2000:])
    (base / "done").write_text("ok")
    return db


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    return seed_store(tmp_path_factory.getbasetemp() / "deploy-seed")


def page(name: str, db: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("NORMSCOPE_DB", str(db))
    monkeypatch.setenv("NORMSCOPE_REFERENCE_DIR", str(db.parent / "no-reference-runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(name)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_numerics_page_shows_the_known_case_the_recommendation_and_the_risk_map(seeded, monkeypatch):
    at = page("pages/numerics.py", seeded, monkeypatch)
    assert at.title[0].value == "Numerics" and not at.error, [e.value for e in at.error]
    (known,) = [w.value for w in at.warning if "pytorch#41527" in w.value]
    assert "NaN/Inf risk" in known and "rounds to 0 in float16" in known
    table = at.dataframe[0].value
    row = table[(table["variant"] == "RMSNorm") & (table["dtype"] == "fp16")].iloc[0]
    assert row["eager (in dtype)"] == "0.001"  # 1e-5 is a subnormal in fp16; the next eps in this grid is 1e-3
    assert row["native (torch fused)"] not in ("", "0")
    assert (table[table["dtype"] == "fp8 e4m3"]["native (torch fused)"] == "N/A").all()
    assert len(at.get("plotly_chart")) >= 3  # risk map, error vs eps, fused vs formula
    next(r for r in at.radio if r.label == "Implementation").set_value("native").run()
    assert not at.exception


def test_numerics_page_refuses_bad_input_with_one_line(seeded, monkeypatch):
    at = page("pages/numerics.py", seeded, monkeypatch)
    eps = next(t for t in at.text_input if t.label == "eps grid")
    eps.set_value("1e-5, tiny").run()
    (err,) = [e.value for e in at.error]
    assert "not a list of numbers" in err and "\n" not in err
    assert not any(b.label == "Start" for b in at.button)


def test_drift_page_shows_each_kind_of_run(seeded, monkeypatch):
    at = page("pages/drift.py", seeded, monkeypatch)
    assert at.title[0].value == "Drift" and not at.error, [e.value for e in at.error]
    with Store(seeded) as s:
        by_action = {r["spec"]["action"]: r["id"] for r in s.list_runs(kind="drift")}
    # newest first: the demo
    labels = {m.label: m.value for m in at.metric}
    assert labels["calibrated false-alarm rate"] == "20%" and labels["false alarms (held-out)"].endswith("%")
    assert len(at.get("plotly_chart")) == 4
    select = next(s for s in at.selectbox if s.label == "Drift run")
    select.set_value(by_action["check"]).run()
    (verdict,) = [e.value for e in at.error]  # drift found: shown as an alarm
    assert verdict.startswith("drift:") and "moved most: 3" in verdict
    select.set_value(by_action["profile"]).run()
    assert any("Profile of 2 norm layers" in s.value for s in at.success)


@pytest.mark.parametrize("name", ["pages/numerics.py", "pages/drift.py"])
def test_empty_store_explains_what_to_do(name, tmp_path, monkeypatch):
    at = page(name, tmp_path / "fresh.db", monkeypatch)
    assert not at.error
    text = " ".join(i.value for i in at.info)
    assert "python -m profilers" in text and ("numerics run" in text or "drift profile" in text)


def test_drift_demo_levels_are_validated(tmp_path, monkeypatch):
    at = page("pages/drift.py", tmp_path / "fresh.db", monkeypatch)
    levels = next(t for t in at.text_input if t.label == "Corruption levels")
    levels.set_value("0.1, 2").run()
    assert any("must be a probability" in e.value for e in at.error)


def test_start_runs_a_worker_and_the_page_follows_it_through_the_store(tmp_path, monkeypatch):
    """The page never measures: Start launches `python -m profilers numerics run` and the run appears in the store."""
    db = tmp_path / "r.db"
    at = page("pages/numerics.py", db, monkeypatch)
    ms = {m.label: m for m in at.multiselect}
    ms["Variants"].set_value(["layernorm"])
    ms["dtypes"].set_value(["float16"])
    ms["Input families"].set_value(["zero"])
    next(t for t in at.text_input if t.label == "eps grid").set_value("1e-12,1e-3")
    next(r for r in at.radio if r.label == "Recorded activations").set_value("none")
    at.run()
    assert any("6 cells" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with Store(db) as s:
            runs = s.list_runs(kind="numerics")
        if runs and runs[0]["status"] != "running":
            break
        time.sleep(0.3)
    assert runs and runs[0]["status"] == "completed", runs
    assert runs[0]["pid"] != os.getpid()  # measured by the worker, not by the page's process
    at.run()
    assert any("pytorch#41527" in w.value for w in at.warning)
