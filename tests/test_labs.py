"""The lab registry's contract: every lab has a spec that round-trips, a CLI command, a report section and a
page; a new lab is one folder and one registry line; a store written before the labs had folders reads the same."""

import json
import shutil
import textwrap

import pytest
from conftest import ROOT, run_cli
from streamlit.testing.v1 import AppTest

from profilers import cli, registry
from profilers.report import document
from profilers.report.html import Figures
from profilers.store import Store
from profilers.store.exchange import export_run, import_run

BEFORE = ROOT / "tests" / "fixtures" / "store-before-labs.db"  # written by the main of 2026-12-03, schema 4
BEFORE_EXPORTS = ROOT / "tests" / "fixtures" / "store-before-labs.exports.json"  # what that main exported


@pytest.fixture
def before(tmp_path):
    db = tmp_path / "before.db"
    shutil.copy(BEFORE, db)
    return db


def test_a_store_written_before_the_move_opens_and_reads_the_same(before):
    expected = json.loads(BEFORE_EXPORTS.read_text())
    with Store(before) as s:
        runs = sorted(s.list_runs(), key=lambda r: r["id"])
        got = [export_run(s, r["id"]) for r in runs]
    for doc in got:
        doc.pop("exported_at")
    assert json.loads(json.dumps(got, sort_keys=True, default=str)) == expected
    assert {r["kind"] for r in runs} == {"kernels", "blocks", "training", "numerics", "drift"}  # every lab of then


def test_every_lab_has_a_spec_that_round_trips_a_command_a_section_and_a_page(before, tmp_path):
    commands = build_commands()
    with Store(before) as s:
        runs = {r["kind"]: r for r in s.list_runs()}
        for lab in registry.LABS:
            assert lab.cli_command in commands, lab.kind
            assert (ROOT / lab.page).exists(), lab.page
            if lab.kind not in runs:  # a lab newer than the stored runs: its default spec (its section: its own test)
                spec = lab.part("spec")()
                assert lab.parse_spec(json.loads(spec.to_json())) == spec, lab.kind
                continue
            spec = lab.parse_spec(runs[lab.kind]["spec"])
            assert lab.parse_spec(json.loads(spec.to_json())) == spec, lab.kind
            html = document.build(s, [runs[lab.kind]["id"]])
            own = document.lab_sections(s, lab, [runs[lab.kind]], Figures())  # the lab's part, found by the registry
            assert own and own[0].startswith("<h2>") and own[0] in html, lab.kind
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for lab in registry.LABS:
        at.switch_page(lab.page).run()
        assert not at.exception, (lab.kind, at.exception)


def build_commands() -> set[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_the_training_command_keeps_its_old_name(before):
    assert {"training", "train"} <= build_commands()
    for name in ("training", "train"):
        p = run_cli(name, "show", "4", db=before)  # run 4 of the old store is a drift run
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not a training run" in p.stderr, p.stderr
    shown = run_cli("train", "show", "6", db=before)
    assert shown.returncode == 0 and shown.stdout.startswith("Training stability, run 6 (completed)"), shown.stderr


TOY = {
    "spec.py": """
        from dataclasses import dataclass
        from profilers.spec import JsonSpec, SpecError

        @dataclass(frozen=True)
        class ToySpec(JsonSpec):
            _what = "toy spec"
            n: int = 3
            label: str | None = None

            def __post_init__(self):
                if not 1 <= self.n <= 100:
                    raise SpecError(f"n must be in 1..100, got {self.n}")
    """,
    "measure.py": """
        from profilers.runs import Outcome, stored_run

        def run(spec, store):
            run_id = store.create_run(spec, {"cpu_model": "toy"}, {}, spec.n, label=spec.label, kind="toy")
            with stored_run(store, outcome := Outcome(run_id)):
                store.put_artifact(run_id, "toy/squares", [i * i for i in range(spec.n)])
            return outcome
    """,
    "section.py": """
        def section(store, run, figs):
            squares = store.artifact(run["id"], "toy/squares")
            return ["<h2>Toy lab</h2>", f"<p>squares: {squares}</p>"]
    """,
    "cli.py": """
        from profilers.store import Store

        def register(sub):
            p = sub.add_parser("toy", help="the toy lab")
            p.add_argument("--n", type=int, default=3)
            p.add_argument("--db")
            p.set_defaults(handler=run)

        def run(a):
            from .measure import run as measure
            from .spec import ToySpec

            with Store(a.db) as store:
                return measure(ToySpec(n=a.n), store).exit_code
    """,
    "page.py": """
        import streamlit as st

        st.title("Toy lab")
    """,
}


def test_a_new_lab_is_one_folder_and_one_registry_line(tmp_path, monkeypatch):
    folder = tmp_path / "toylab"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name, text in TOY.items():
        (folder / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    toy = registry.Lab(
        "toy", "Toy", "toylab.spec:ToySpec", "toylab.cli", "toylab.section", str(folder / "page.py"),
        ":material/toys:", "Toys", "toy run", "cells",
    )  # fmt: skip
    monkeypatch.setattr(registry, "LABS", (*registry.LABS, toy))  # the one line

    db = tmp_path / "toy.db"
    assert cli.main(["toy", "--n", "4", "--db", str(db)]) == 0  # the CLI
    with Store(db) as s:
        (run,) = s.list_runs()
        assert (run["kind"], run["status"]) == ("toy", "completed")
        assert "<h2>Toy lab</h2><p>squares: [0, 1, 4, 9]</p>" in document.build(s, [run["id"]])  # the report
        doc = export_run(s, run["id"])
    with Store(tmp_path / "other.db") as other:  # the store validates an import with the lab's spec
        assert other.get_run(import_run(other, doc))["kind"] == "toy"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()  # the navigation
    assert not at.exception
    at.switch_page(str(folder / "page.py")).run()
    assert at.title[0].value == "Toy lab"
