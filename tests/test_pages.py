"""Every dashboard page through Streamlit's AppTest, on a store seeded by a real tiny CPU sweep."""

from pathlib import Path

import pytest
from conftest import ROOT, run_cli, seed_store
from streamlit.testing.v1 import AppTest

from profilers.store import Store

PAGES = [
    "pages/run.py",
    "pages/results.py",
    "pages/kernels.py",
    "pages/recommend.py",
    "pages/compare.py",
    "pages/hardware.py",
    "pages/reports.py",
    "pages/runs.py",
]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("seeded") / "results.db"
    seed_store(
        db,
        variants=("layernorm", "rmsnorm", "dyt"),
        impls=("eager", "native"),
        shapes=((64, 256), (256, 256)),
        modes=("fwd", "fwdbwd"),
        dtypes=("float32",),
        trace=True,
        label="seed <b>run</b>",
    )
    return db


@pytest.fixture(scope="module")
def one_run_made(tmp_path_factory) -> Path:
    """A store holding one finished one-point run, measured once for the module."""
    db = tmp_path_factory.mktemp("one") / "one.db"
    p = run_cli("run", "--shapes", "8x64", "--variants", "rmsnorm", "--impls", "native", "--budget-ms", "2", db=db)
    assert p.returncode == 0, p.stderr
    return db


@pytest.fixture
def one_run(one_run_made, tmp_path) -> Path:
    """A test's own copy of that store (a test may relabel, delete or add runs in it)."""
    import shutil

    folder = shutil.copytree(one_run_made.parent, tmp_path / "one")  # the store and anything kept beside it
    return folder / one_run_made.name


def page(name: str, db: Path, monkeypatch, references: Path | None = None) -> AppTest:
    """The page rendered through app.py on ``db``; shipped reference runs only when ``references`` names them."""
    monkeypatch.setenv("NORMSCOPE_DB", str(db))
    monkeypatch.setenv("NORMSCOPE_REFERENCE_DIR", str(references or db.parent / "no-reference-runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(name)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_on_a_seeded_store(name, seeded, monkeypatch):
    at = page(name, seeded, monkeypatch)
    assert at.title and not at.error, [e.value for e in at.error]


def test_sidebar_names_the_store_and_devices(seeded, monkeypatch):
    monkeypatch.setenv("NORMSCOPE_DB", str(seeded))
    monkeypatch.setenv("NORMSCOPE_REFERENCE_DIR", str(seeded.parent / "no-reference-runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    side = "\n".join(c.value for c in at.sidebar.caption)
    assert str(seeded) in side and "cpu" in side


def test_results_page_has_charts_metrics_and_table(seeded, monkeypatch):
    at = page("pages/results.py", seeded, monkeypatch)
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # latency, bandwidth, speedup, memory
    assert at.dataframe, "the points table"
    labels = {m.label: m.value for m in at.metric}
    assert labels["points"] == "24" and labels["failed"] == "0"
    assert any("Energy was not measured" in i.value for i in at.info)  # N/A with reason, not a zero chart
    # a CPU run's intervals are said to be one run's: a fresh process can land outside them
    assert any("a run in a fresh process can land outside it" in c.value for c in at.caption)


def test_results_filters_narrow_the_points(seeded, monkeypatch):
    at = page("pages/results.py", seeded, monkeypatch)
    at.multiselect(key="f-variant").set_value(["rmsnorm"]).run()
    labels = {m.label: m.value for m in at.metric}
    assert labels["points"] == "8"


def test_kernels_page_shows_breakdown(seeded, monkeypatch):
    at = page("pages/kernels.py", seeded, monkeypatch)
    assert at.get("plotly_chart")
    assert any("per call" in m.label for m in at.metric)


def test_recommend_opens_on_an_answer_from_the_run(seeded, monkeypatch):
    at = page("pages/recommend.py", seeded, monkeypatch)
    # defaults follow the run: its largest shape (256×256) and dtype (float32)
    assert at.number_input[0].value == 256 and at.number_input[1].value == 256
    assert at.selectbox[0].value == "float32"
    headline = [s.value for s in at.success] + [i.value for i in at.info]
    assert any("Use " in h or "Tie:" in h for h in headline), headline
    assert any("95% interval" in m.value for m in at.markdown)
    assert len(at.dataframe) >= 2  # ranking and claims check (and what was considered but not ranked)


def test_recommend_says_which_sweep_is_missing(seeded, monkeypatch):
    at = page("pages/recommend.py", seeded, monkeypatch)
    at.selectbox[0].set_value("bfloat16").run()  # never measured in this store
    assert any("python -m profilers run" in w.value for w in at.warning)
    assert any("Start this sweep" in b.label for b in at.button)


def test_runs_page_shows_provenance_and_escapes_labels(seeded, monkeypatch):
    at = page("pages/runs.py", seeded, monkeypatch)
    text = _text(at)
    assert "torch" in text and "Copy bandwidth" in text
    assert at.get("download_button")
    # the seeded run was made in this test process, after torch loaded: base pages, and why
    assert (
        "CPU allocator**: reuse (glibc malloc" in text
        and "CPU placement**: per round (inputs and upstream gradients copied" in text
    )
    assert "CPU pages**: base (" in text and "huge pages were asked for, base held: torch did not advise" in text


def test_runs_page_relabels_and_deletes_with_confirmation(one_run, monkeypatch):
    db = one_run
    at = page("pages/runs.py", db, monkeypatch)
    at.text_input[0].set_value("renamed")
    at.button[0].click().run()  # form submit
    with Store(db) as s:
        assert s.get_run(1)["label"] == "renamed"
    delete = next(b for b in at.button if b.label == "Delete run")
    assert delete.disabled
    at.checkbox[0].check().run()
    next(b for b in at.button if b.label == "Delete run").click().run()
    with Store(db) as s:
        assert s.list_runs() == []


def test_run_page_rejects_bad_shapes_with_st_error(tmp_path, monkeypatch):
    at = page("pages/run.py", tmp_path / "empty.db", monkeypatch)
    next(r for r in at.radio if r.label == "Shapes from").set_value("custom shapes").run()
    next(t for t in at.text_input if t.label.startswith("Shapes")).set_value("0x768").run()
    assert any("must be positive" in e.value for e in at.error)
    assert not any(b.label == "Start" for b in at.button)


def test_run_page_shows_size_and_estimate(tmp_path, monkeypatch):
    at = page("pages/run.py", tmp_path / "empty.db", monkeypatch)
    assert any("points" in m.value and "about" in m.value for m in at.markdown)


@pytest.mark.parametrize("name", ["pages/results.py", "pages/run.py", "pages/recommend.py", "pages/runs.py"])
def test_empty_store_explains_and_offers_quick_sweep(name, tmp_path, monkeypatch):
    at = page(name, tmp_path / "fresh.db", monkeypatch)
    assert any(b.label == "Run the quick CPU sweep" for b in at.button)


def test_interrupted_run_is_shown_as_such(one_run, monkeypatch):
    db = one_run
    with Store(db) as s:
        s.execute("UPDATE runs SET status='running', pid=:pid, pid_started=1.0", pid=2**22 + 7)
    at = page("pages/runs.py", db, monkeypatch)
    assert any("interrupted" in w.value for w in at.warning)


def _live_run(store: Store, spec_json: str, planned: int, label: str, kind: str = "kernels") -> int:
    """A run in status running held by this test's own process (so the dashboard sees it live)."""

    class Spec:
        def to_json(self) -> str:
            return spec_json

    return store.create_run(Spec(), {"hostname": "here"}, {}, planned, label=label, kind=kind)


def test_run_page_follows_a_running_training_grid_in_cells(one_run, monkeypatch):
    """A lab run in progress is counted in its own unit and linked to its own page, not shown as 0 points."""

    with Store(one_run) as s:
        run_id = _live_run(s, '{"device": "cpu"}', 4, "grid", kind="training")
        s.put_artifact(run_id, "cell/a", {"done": True})
    at = page("pages/run.py", one_run, monkeypatch)
    texts = [p.proto.text for p in at.get("progress")]
    assert texts and "1 / 4 cells" in texts[0], texts
    assert "(training grid)" in _text(at)
    assert any("Training" in link.proto.label for link in at.get("page_link"))


def test_run_page_follows_a_run_over_processes_by_their_progress(one_run, monkeypatch):
    """A run spread over processes stores its points at the end: the card counts what the processes did."""

    with Store(one_run) as s:
        run_id = _live_run(s, '{"device": "cpu", "processes": 3}', 12, "spread")
        s.update_run(run_id, extra={"progress": {"process": 2, "of": 3, "points_done": 6}})
    at = page("pages/run.py", one_run, monkeypatch)
    texts = [p.proto.text for p in at.get("progress")]
    assert texts and "6 / 12 points (4 in each of 3 processes)" in texts[0], texts
    assert any("process 2 of 3" in c.value for c in at.caption)


def test_run_page_shows_a_cluster_sweep_s_device_with_its_node_and_place(one_run, monkeypatch):
    """A device's run of a sweep over a Ray cluster says its node, its place among the devices and the driver."""
    import socket

    with Store(one_run) as s:
        run_id = _live_run(s, '{"device": "cpu", "ray": "auto"}', 6, "fleet")
        fleet = {"uid": "abcdef0123", "node": "10.0.0.7", "slot": 1, "devices": 3, "driver": socket.gethostname()}
        s.update_run(run_id, extra={"fleet": {**fleet, "driver_pid": 1}})
    at = page("pages/run.py", one_run, monkeypatch)
    assert any("of node 10.0.0.7" in m.value for m in at.markdown)
    assert any("device 2 of 3 of cluster sweep abcdef01" in c.value for c in at.caption)


def test_results_offers_csv_and_parquet_downloads(seeded, monkeypatch):
    at = page("pages/results.py", seeded, monkeypatch)
    labels = [b.label for b in at.get("download_button")]
    assert "Download CSV" in labels and "Download Parquet" in labels


def test_compare_page_flags_against_a_baseline(seeded, monkeypatch, tmp_path):
    import shutil

    db = tmp_path / "two.db"
    shutil.copy(seeded, db)
    same_method = ["--budget-ms", "5", "--warmup-ms", "2", "--rounds", "3", "--ci-target-pct", "50"]
    same_method += ["--cpu-pages", "base"]  # the seeded run was made in a process that had loaded torch: base
    p = run_cli(
        "run", "--shapes", "64x256", "--variants", "layernorm,rmsnorm", "--impls", "native", *same_method, db=db
    )
    assert p.returncode == 0, p.stderr
    at = page("pages/compare.py", db, monkeypatch)
    labels = {m.label: m.value for m in at.metric}
    assert labels["matched points"] == "2"
    assert sum(int(labels[k]) for k in ("regressions", "faster", "equivalent (±2%)", "undecided")) == 2
    assert any("Same machine, same method" in c.value for c in at.caption)
    assert at.get("plotly_chart")
    next(n for n in at.number_input if n.label == "Equivalence margin (±%)").set_value(10.0).run()
    assert not at.exception and "equivalent (±10%)" in {m.label for m in at.metric}


def test_compare_picks_machines_and_the_devices_of_a_cluster_sweep(seeded, monkeypatch, tmp_path):
    """A shared store holding runs of several machines: the Machines picker narrows the runs offered, and a
    cluster sweep's devices compare its first device against every other."""
    import shutil
    import uuid

    from profilers.store.exchange import export_run, import_run

    db = tmp_path / "fleet.db"
    shutil.copy(seeded, db)
    with Store(db) as s:
        doc = export_run(s, 1)
        ids = []
        for slot, host in enumerate(("gpu-box-a", "gpu-box-b", "gpu-box-c")):
            run = {**doc["run"], "uid": uuid.uuid4().hex, "machine": {**doc["run"]["machine"], "hostname": host}}
            run["extra"] = {**(run.get("extra") or {}), "fleet": {"uid": "f1eet0123456", "slot": slot, "devices": 3}}
            ids.append(import_run(s, {**doc, "run": run}))
        for uid in ("GPU-9be310f0-8b52-f484-a26b-f87802246cce", "GPU-9be310f0-8b52-0000-a26b-f87802246cce"):
            gpu = {"name": "NVIDIA H200", "uuid": uid}  # two GPUs of one model in one host
            machine = {**doc["run"]["machine"], "hostname": "h200-box", "gpu": gpu}
            spec = {**doc["run"]["spec"], "device": "cuda:0"}
            run = {**doc["run"], "uid": uuid.uuid4().hex, "machine": machine, "spec": spec}
            import_run(s, {**doc, "run": run})
    at = page("pages/compare.py", db, monkeypatch)
    machines = next(m for m in at.multiselect if m.label == "Machines")
    host = doc["run"]["machine"]["hostname"]
    assert machines.proto.placeholder == "every machine (6)"
    assert len(machines.options) == 6 and any(o.startswith("gpu-box-b · ") for o in machines.options)
    assert [o for o in machines.options if o.startswith("h200-box")] == [
        "h200-box · NVIDIA H200 · GPU-9be310f0-8b52-0…",
        "h200-box · NVIDIA H200 · GPU-9be310f0-8b52-f…",
    ]
    machines.set_value([o for o in machines.options if o.startswith(("gpu-box-a", "gpu-box-c"))]).run()
    assert not at.exception
    base = next(b for b in at.selectbox if b.label == "Baseline run")
    assert len(base.options) == 2
    assert all("gpu-box-a" in o or "gpu-box-c" in o for o in base.options)
    next(m for m in at.multiselect if m.label == "Machines").set_value([]).run()

    sweep = next(b for b in at.selectbox if b.label == "Devices of a cluster sweep")
    assert any("cluster sweep f1eet012 · 3 device(s) on gpu-box-a, gpu-box-b, gpu-box-c" in o for o in sweep.options)
    sweep.set_value("f1eet0123456").run()
    assert not at.exception and not at.error
    base = next(b for b in at.selectbox if b.label == "Baseline run")
    others = next(m for m in at.multiselect if m.label == "Compared with")
    assert base.value == ids[0] and others.value == ids[1:]
    assert {h.value for h in at.subheader} == {f"Run {i} vs baseline run {ids[0]}" for i in ids[1:]}
    assert any("Different machines" in c.value for c in at.caption)  # other hosts: shown, never flagged
    assert host not in " ".join(base.options)


@pytest.mark.slow  # two sweeps measured, one under the system allocator
def test_compare_never_flags_across_an_allocator_change(seeded, monkeypatch, tmp_path):
    """A run with the system allocator against one that reuses memory: the method difference is stated."""
    import shutil

    db = tmp_path / "alloc.db"
    shutil.copy(seeded, db)
    args = ["--budget-ms", "5", "--warmup-ms", "2", "--rounds", "3", "--ci-target-pct", "50"]
    p = run_cli("run", "--shapes", "64x256", "--variants", "layernorm", "--impls", "native", *args, db=db)
    assert p.returncode == 0, p.stderr
    p = run_cli(
        "run",
        "--shapes",
        "64x256",
        "--variants",
        "layernorm",
        "--impls",
        "native",
        *args,
        "--cpu-allocator",
        "system",
        db=db,
    )
    assert p.returncode == 0, p.stderr
    with Store(db) as s:
        newest, previous = s.list_runs()[:2]
        assert newest["spec"]["cpu_allocator"] == "system" and newest["machine"]["cpu_allocator"]["mode"] == "system"
    at = page("pages/compare.py", db, monkeypatch)
    at.selectbox[0].select(previous["id"]).run()
    warning = " ".join(w.value for w in at.warning)
    assert "measured differently" in warning and "CPU allocator reuse vs system" in warning
    assert {m.label: m.value for m in at.metric}["regressions"] == "0"
    # Results with both runs: the allocator's effect is stated, and every chart subtitle names both modes
    at = page("pages/results.py", db, monkeypatch)
    at.multiselect[0].set_value([previous["id"], newest["id"]]).run()
    effect = " ".join(i.value for i in at.info)
    assert (
        "The CPU allocator's effect" in effect and "LayerNorm native: the allocator changes its time by up to" in effect
    )
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert specs and all("CPU allocator: reuse" in x and "CPU allocator: system" in x for x in specs)
    # the report answers each allocator mode apart and its claims table names the mode
    from profilers.report import document

    with Store(db) as s:
        html = document.build(s, [previous["id"], newest["id"]])
    answer = html.split("<h2>The answer</h2>")[1].split("<h2>")[0]
    pages = newest["machine"]["cpu_pages"]["mode"]  # huge where the kernel gave huge pages, else base
    assert f"(run {previous['id']}; CPU allocator: reuse, {pages} pages)" in answer
    assert f"(run {newest['id']}; CPU allocator: system, {pages} pages)" in answer


def test_reports_page_builds_a_downloadable_report(seeded, monkeypatch):
    at = page("pages/reports.py", seeded, monkeypatch)
    next(b for b in at.button if b.label == "Build the report").click().run()
    assert not at.exception
    assert any(b.label == "Download HTML" for b in at.get("download_button"))
    assert any("Report ready" in s.value for s in at.success)


def test_runs_page_import_rejects_a_bad_file_with_st_error(one_run, monkeypatch):
    at = page("pages/runs.py", one_run, monkeypatch)
    uploader = at.get("file_uploader")
    if not uploader or not hasattr(uploader[0], "upload"):
        pytest.skip("this Streamlit's AppTest cannot drive file_uploader")
    uploader[0].upload("bad.json", b"{not json").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert any("not JSON" in e.value for e in at.error)
    with Store(one_run) as s:
        assert len(s.list_runs()) == 1


def test_reference_runs_are_read_only(one_run, monkeypatch, tmp_path):
    ref = tmp_path / "reference"
    ref.mkdir()
    assert run_cli("export", "1", "-o", str(ref / "gpu.json"), db=one_run).returncode == 0
    at = page("pages/runs.py", tmp_path / "fresh-user.db", monkeypatch, references=ref)
    assert any("reference run" in i.value for i in at.info)
    assert next(b for b in at.button if b.label == "Delete run").disabled


def _shipped(tmp_path: Path, *names: str) -> Path:
    """A reference folder holding these shipped reference runs only."""
    ref = tmp_path / "reference"
    ref.mkdir()
    for name in names:
        (ref / name).write_bytes((ROOT / "data" / "reference" / name).read_bytes())
    return ref


def test_launch_bound_gpu_points_are_listed_on_results_and_named_on_recommend(monkeypatch, tmp_path):
    """The shipped H200 forward+backward run: at 8192×4096 the host launches a call slower than the GPU runs it."""
    ref = _shipped(tmp_path, "h200-2026-11-27-bf16-fwdbwd.json")
    at = page("pages/results.py", tmp_path / "fresh-user.db", monkeypatch, references=ref)
    bound = [e for e in at.expander if "launch-bound on this host" in e.label]
    assert bound and bound[0].label.startswith("7 points"), [e.label for e in at.expander]
    assert any("GPU's: each call was queued behind a spin kernel" in c.value for c in at.caption)
    at.switch_page("pages/recommend.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.number_input[0].set_value(8192).run()  # Llama-3-8B's hidden at 8192 tokens
    at.number_input[1].set_value(4096).run()
    text = _text(at)
    assert "Launch-bound on the measured host" in text and "RMSNorm compiled" in text, text[-1500:]


def test_reports_page_opens_on_the_runs_picked_elsewhere(monkeypatch, tmp_path):
    """Picked on Results, the same runs are in the report: no second selection that silently differs."""
    ref = _shipped(tmp_path, "h200-2026-11-27-bf16-fwdbwd.json", "h200-2026-11-27-fp16-fwdbwd-bert-base.json")
    at = page("pages/results.py", tmp_path / "fresh-user.db", monkeypatch, references=ref)
    with Store(tmp_path / "fresh-user.db") as s:
        ids = [r["id"] for r in s.list_runs()]  # newest first
    assert len(ids) == 2
    other = ids[-1]  # not the newest: a page that ignored the pick would open on the newest
    at.multiselect[0].set_value([other]).run()
    at.switch_page("pages/reports.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect[0].value == [other]


def test_results_says_when_the_chosen_runs_were_measured_differently(monkeypatch, tmp_path):
    """The H200 forward+backward run as launched beside the same sweep queued: the timer differs."""
    ref = _shipped(tmp_path, "h200-2026-11-27-bf16-fwdbwd.json", "h200-2026-11-27-bf16-fwdbwd-as-launched.json")
    at = page("pages/results.py", tmp_path / "fresh-user.db", monkeypatch, references=ref)
    assert len(at.multiselect[0].value) == 1  # one run: nothing to say
    assert not any("Measured differently" in w.value for w in at.warning), [w.value for w in at.warning]
    with Store(tmp_path / "fresh-user.db") as s:
        ids = [r["id"] for r in s.list_runs()]
    at.multiselect[0].set_value(ids).run()
    warning = " ".join(w.value for w in at.warning)
    assert "Measured differently" in warning and "timer cuda_event_flush" in warning, warning
    # and back to one: the pick holds (an unkeyed picker snapped back to the remembered two)
    at.multiselect[0].set_value(ids[:1]).run()
    assert at.multiselect[0].value == ids[:1]
    assert not any("Measured differently" in w.value for w in at.warning), [w.value for w in at.warning]


def _planted_calibration(db: Path) -> None:
    """A completed calibration of this host in ``db``, in two memory states, recommending 3 processes for ±5%."""
    import socket

    from profilers.spec import CalibrationSpec

    doc = {
        "source": "calibration run 1 (planted)",
        "rounds": 7,
        "method": {},
        "memory_states": [
            {"lo_gbps": 47.0, "hi_gbps": 53.0, "mid_gbps": 50.0, "groups": 16},
            {"lo_gbps": 83.0, "hi_gbps": 101.0, "mid_gbps": 92.0, "groups": 8},
        ],
        "levels": {
            "DRAM": {
                "between_sd_log": 0.027,
                "runs": 6,
                "dof": 4,
                "between_sd_log_all": 0.25,
                "state_shift_log": 0.54,
                "round_sd_log": 0.065,
                "bytes": [],
                "baseline_p50_us": {},
                "processes_for": {"2.0": 16, "5.0": 3, "8.0": 2},
            },
        },
        "ratios": [],
    }
    with Store(db) as s:
        rid = s.create_run(CalibrationSpec(), {"hostname": socket.gethostname()}, {}, 0, kind="calibration")
        s.put_artifact(rid, "calibration", doc)
        s.finish_run(rid, "completed")


def test_the_run_page_offers_the_calibrations_processes_and_hardware_shows_the_states(tmp_path, monkeypatch):
    db = tmp_path / "cal.db"
    _planted_calibration(db)
    at = page("pages/run.py", db, monkeypatch)
    toggle = next(t for t in at.toggle if t.label == "Processes as calibrated")
    assert not toggle.disabled and "3 process(es) per run for ±5% at every level" in toggle.help
    assert next(n for n in at.number_input if n.label == "Processes").value == 1
    toggle.set_value(True).run()
    assert next(n for n in at.number_input if n.label == "Processes").value == 3
    assert not at.exception
    bare = page("pages/run.py", tmp_path / "bare.db", monkeypatch)
    assert next(t for t in bare.toggle if t.label == "Processes as calibrated").disabled
