"""The CLI as a user runs it: through a subprocess."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_cli, run_json, sweep

from profilers.catalog import TIMED_STATUSES as TIMED
from profilers.store import Store

TINY = sweep("16x64", "rmsnorm,layernorm", "eager,native")[1:]
POINT_KEYS = {
    "variant",
    "impl",
    "device",
    "dtype",
    "tokens",
    "hidden",
    "mode",
    "status",
    "p20_us",
    "p50_us",
    "p80_us",
    "gbps",
    "roofline_pct",
    "peak_bytes",
    "max_abs_err",
    "error",
    "compile_s",
}


def test_run_json_document(db):
    doc = run_json("run", *TINY, "--modes", "fwd,fwdbwd", "--threads", "1", "--label", "smoke", db=db)
    assert doc["status"] == "completed" and isinstance(doc["run_id"], int)
    assert len(doc["points"]) == 2 * 2 * 2
    for p in doc["points"]:
        assert set(p) >= POINT_KEYS
        assert p["status"] in TIMED, p["error"]
        assert p["threads"] == 1
        assert p["p20_us"] <= p["p50_us"] <= p["p80_us"]
    with Store(db) as s:
        run = s.get_run(doc["run_id"])
        assert run["label"] == "smoke" and run["copy_gbps"] > 0
        assert run["machine"]["cpu_model"] and run["versions"]["torch"].startswith("2.")
        assert "normscope_commit" in run["versions"] and "normscope_dirty" in run["versions"]


def test_compiled_point_reports_compile_seconds(db):
    doc = run_json(
        "run", "--shapes", "16x64", "--variants", "rmsnorm", "--impls", "compiled", "--budget-ms", "5", db=db
    )
    (p,) = doc["points"]
    assert p["status"] in TIMED, p["error"]
    assert p["compile_s"] > 0


def test_progress_goes_to_stderr(db):
    p = run_cli("run", *TINY, db=db)
    assert p.returncode == 0, p.stderr
    assert "[1/4]" in p.stderr and "[4/4]" in p.stderr and "p50" in p.stderr
    assert "completed" in p.stderr and p.stdout == ""


def test_runs_export_import_round_trip(db, tmp_path):
    doc = run_json("run", *TINY, db=db)
    runs = run_json("runs", db=db)
    assert [r["id"] for r in runs] == [doc["run_id"]]
    out = tmp_path / "run.json"
    p = run_cli("export", str(doc["run_id"]), "-o", str(out), db=db)
    assert p.returncode == 0, p.stderr
    exported = json.loads(out.read_text())
    assert exported["format"] == "normscope-run" and len(exported["points"]) == 4
    other = tmp_path / "other.db"
    p = run_cli("import", str(out), db=other)
    assert p.returncode == 0, p.stderr
    new_id = int(p.stdout.strip())
    with Store(db) as a, Store(other) as b:
        strip = lambda pts: [{k: v for k, v in x.items() if k not in ("id", "run_id", "created_at")} for x in pts]  # noqa: E731
        assert strip(a.points(doc["run_id"])) == strip(b.points(new_id))
    text = run_cli("runs", db=other)
    assert text.returncode == 0 and "completed" in text.stdout


def test_env_reports_machine_and_sensor_availability():
    p = run_cli("env", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["machine"]["cpu_cores_logical"] >= 1
    assert info["nvml"]["available"] in (True, False)
    if not info["nvml"]["available"]:
        assert info["nvml"]["reason"]  # N/A comes with its reason
    text = run_cli("env")
    assert text.returncode == 0 and "torch" in text.stdout


BAD_INPUTS = {
    "zero shape": (["run", "--shapes", "0x768"], "must be positive"),
    "negative shape": (["run", "--shapes=-4x768"], "must be positive"),
    "dash value": (["run", "--shapes", "-4x768"], "--flag=VALUE"),
    "malformed shape": (["run", "--shapes", "4096by768"], "malformed shape"),
    "empty shapes": (["run", "--shapes", ","], "--shapes is empty"),
    "unknown variant": (["run", "--variants", "superNorm"], "unknown variant 'superNorm'"),
    "unknown impl": (["run", "--impls", "turbo"], "unknown implementation 'turbo'"),
    "unknown dtype": (["run", "--dtypes", "int8"], "unknown dtype 'int8'"),
    "unknown mode": (["run", "--modes", "train"], "unknown mode 'train'"),
    "unknown preset": (["run", "--preset", "gpt-9"], "unknown preset"),
    "absent cuda": (["run", "--device", "cuda"], "not available"),
    "absent cuda index": (["run", "--device", "cuda:7"], "cuda:7"),
    "bogus device": (["run", "--device", "tpu"], "unknown device 'tpu'"),
    "zero threads": (["run", "--threads", "0"], "threads must be a whole number"),
    "non-numeric threads": (["run", "--threads", "many"], "invalid int value"),
    "negative budget": (["run", "--budget-ms", "-1"], "budget_ms must be"),
    "cuda graph on cpu": (["run", "--cuda-graph"], "--cuda-graph needs a CUDA device"),
    "too big to fit": (["run", "--shapes", "16777216x65536", "--variants", "rmsnorm", "--impls", "native"], "GiB"),
    "unknown run id": (["export", "999", "-o", "x.json"], "no run 999"),
    "missing import file": (["import", "no-such-file.json"], "no such file"),
    "unknown command": (["frobnicate"], "invalid choice"),
    "bad energy preset": (["run", "--energy", "forever"], "invalid choice"),
    "bad cuda launch": (["run", "--cuda-launch", "later"], "invalid choice"),
    "energy window too short": (["run", "--energy-window-s", "0.01"], "energy window must be"),
    "bad sensor interval": (["sensors", "--interval-s", "0"], "--interval-s must be"),
}


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory):
    """Run every bad input once (in parallel) against a store that already holds one run."""
    tmp = tmp_path_factory.mktemp("bad")
    db = tmp / "results.db"
    assert run_cli("run", *TINY, db=db).returncode == 0
    (tmp / "garbage.json").write_text("{not json")
    (tmp / "wrong.json").write_text(json.dumps({"format": "normscope-run", "schema_version": 1, "run": {}}))
    cases = dict(BAD_INPUTS)
    cases["import not json"] = (["import", str(tmp / "garbage.json")], "is not JSON")
    cases["import not a run"] = (["import", str(tmp / "wrong.json")], "lacks")
    with Store(db) as s:
        before = (len(s.list_runs()), len(s.points(r["id"] for r in s.list_runs())))
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, *args, db=db) for name, (args, _) in cases.items()}
        results = {name: (f.result(), cases[name][1]) for name, f in futures.items()}
    with Store(db) as s:
        after = (len(s.list_runs()), len(s.points(r["id"] for r in s.list_runs())))
    return results, before, after


@pytest.mark.parametrize("name", [*BAD_INPUTS, "import not json", "import not a run"])
def test_bad_input_is_one_line_exit_2(bad_results, name):
    results, _, _ = bad_results
    proc, needle = results[name]
    assert proc.returncode == 2, (name, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("normscope: error:") and needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_inputs_leave_the_store_unchanged(bad_results):
    _, before, after = bad_results
    assert before == after == (1, 4)


def test_run_with_energy_and_trace_reports_kernels_and_na_reasons(db, tmp_path):
    doc = run_json(
        "run",
        "--shapes",
        "64x256",
        "--variants",
        "layernorm,rmsnorm",
        "--impls",
        "eager,native",
        "--budget-ms",
        "5",
        "--energy",
        "--trace",
        "--save-traces",
        db=db,
    )
    by = {(p["variant"], p["impl"]): p for p in doc["points"]}
    assert by[("layernorm", "native")]["kernels_per_call"] < by[("rmsnorm", "eager")]["kernels_per_call"]
    for p in doc["points"]:
        assert p["kernels"]["kernels"] and p["trace_path"].endswith(".json")
        if p["energy_mj_per_call"] is None:  # no RAPL here: N/A with the reason, never 0
            assert p["energy_note"] and p["energy_method"] is None
        assert p["sensors"]["samples"] >= 0 and "host_cpu_util_pct" in p["sensors"]
    assert doc["sensors"]["rapl"]  # "available" or the reason
    with Store(db) as s:
        run = s.get_run(doc["run_id"])
        assert run["series"]["t_s"] and "host_process_rss_bytes" in run["series"]


def test_run_without_energy_says_not_measured(db):
    doc = run_json("run", *TINY, db=db)
    assert all(p["energy_mj_per_call"] is None and "--energy" in p["energy_note"] for p in doc["points"])


def test_sensors_snapshot_json():
    p = run_cli("sensors", "--count", "2", "--interval-s", "0.2", "--json")
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(lines) == 2
    host = lines[1]["host"]
    assert host["memory_total_bytes"] > 0 and len(host["cpu_util_pct_per_core"]) >= 1
    if not lines[1]["gpus"]:
        assert lines[1]["nvml"] != "available"
    text = run_cli("sensors")
    assert text.returncode == 0 and "host" in text.stdout


def test_sensors_watch_stops_on_ctrl_c():
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    proc = subprocess.Popen(
        [sys.executable, "-m", "profilers", "sensors", "--watch", "--interval-s", "0.1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    seen, deadline = 0, time.monotonic() + 60
    while seen < 2 and time.monotonic() < deadline:
        seen += "host" in proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert seen + out.count("host") >= 2 and "Traceback" not in err


def test_every_subcommands_help_renders():
    """--help formats every option's help text (a stray % in one breaks the whole page)."""
    import argparse

    from profilers.cli import build_parser

    def walk(parser: argparse.ArgumentParser) -> int:
        assert parser.format_help()
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return 1 + sum(walk(sp) for a in subs for sp in a.choices.values())

    assert walk(build_parser()) > 10
    p = run_cli("run", "--help")
    assert p.returncode == 0 and "quick (7 rounds, ±5% target)" in " ".join(p.stdout.split())
