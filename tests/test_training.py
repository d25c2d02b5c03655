"""The training-stability lab: spec, trainer, planted divergence, init gradient norms, resume, CLI, export, report."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from conftest import ROOT, run_cli
from training_seed import tiny_spec, write_corpus

from profilers import registry
from profilers.analysis import stats
from profilers.labs.training import analysis as analysis
from profilers.labs.training import measure as T
from profilers.labs.training.spec import Cell, TrainingSpec, preset_spec
from profilers.spec import SpecError
from profilers.store import Store, StoreError
from profilers.store.exchange import export_run, import_run


@pytest.fixture(autouse=True)
def one_thread():
    """As the quick preset does: tiny models on a shared 2-core machine run fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> list[str]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_spec_round_trips_and_refuses_bad_values(corpus_files):
    spec = tiny_spec(corpus_files)
    assert TrainingSpec.from_json(spec.to_json()) == spec
    assert registry.get("training").parse_spec(json.loads(spec.to_json())) == spec
    keys = [c.key for c in spec.cells()]
    assert len(keys) == len(set(keys))
    shared = [c for c in spec.cells() if c.key == "train/layernorm/pre_ln/L2/lr0.003/w5/s0"]
    assert shared and set(shared[0].groups) == {"grid", "quality"}  # one run serves both experiments
    for bad, fix in (
        ({"placements": ["pre-ln"]}, "unknown placement"),
        ({"lrs": [-1e-3]}, "learning rates"),
        ({"warmups": [50]}, "warmups"),
        ({"hidden": 30, "heads": 4}, "divisible"),
        ({"norm": "dyt", "placements": ["pre_ln"], "family": "decoder", "quality_norms": ["batchnorm"]}, "causal"),
        ({"quality_norms": ["rmsnorm", "nonorm"]}, "unknown norm"),
        ({"bogus": 1}, "unknown training spec field"),
    ):
        with pytest.raises(SpecError, match=fix):
            TrainingSpec.from_dict({**spec.to_dict(), **bad})
    quick = preset_spec("quick")
    assert quick.threads == 1 and len(quick.seeds) == 2 and quick.device == "cpu"
    assert preset_spec("standard").device.startswith("cuda")


def _trainer(spec: TrainingSpec) -> T.Trainer:
    meter, _ = T.open_meter(torch.device("cpu"))
    return T.Trainer(spec, torch.device("cpu"), meter)


def test_trainer_is_deterministic_on_cpu_and_records_what_it_promises(corpus_files):
    spec = tiny_spec(corpus_files, steps=15)
    data = T.load_text(spec)
    cell = Cell("train", "k", "post_ln", "layernorm", 2, 0, 3e-3, 5)
    a = T.train_cell(spec, cell, data, _trainer(spec))
    b = T.train_cell(spec, cell, data, _trainer(spec))
    assert a["loss"] == b["loss"] and a["val"] == b["val"]
    other = T.train_cell(spec, Cell("train", "k", "post_ln", "layernorm", 2, 1, 3e-3, 5), data, _trainer(spec))
    assert other["loss"] != a["loss"]  # the seed matters
    assert len(a["loss"]) == 15 and not a["diverged"]
    log = a["log"]
    assert log["step"] == [0, 5, 10, 14]
    assert all(len(row) == 2 for row in log["ffn_out_grad_norm"] + log["attn_out_update_ratio"] + log["act_max"])
    assert all(r > 0 for row in log["ffn_out_update_ratio"] for r in row)
    assert a["wall_s"] > 0 and a["tokens_per_s"] > 0
    assert a["energy_j"] is None and a["energy_reason"]  # this VM exposes no RAPL: N/A with the reason


def test_planted_divergence_is_detected_with_its_step(corpus_files):
    spec = tiny_spec(corpus_files, steps=30, lrs=(30.0,))
    data = T.load_text(spec)
    rec = T.train_cell(spec, Cell("train", "k", "pre_ln", "layernorm", 2, 0, 30.0, 0), data, _trainer(spec))
    assert rec["diverged"] and rec["diverged_step"] is not None and rec["diverged_step"] < 10
    assert len(rec["loss"]) == rec["diverged_step"] + 1  # training stopped there
    assert rec["final_val_loss"] is None and "step" in rec["final_val_reason"]
    calm = T.train_cell(spec, Cell("train", "k", "pre_ln", "layernorm", 2, 0, 1e-3, 0), data, _trainer(spec))
    assert not calm["diverged"] and calm["diverged_step"] is None


def test_init_gradient_norm_depth_ratio_pre_ln_falls_post_ln_does_not(corpus_files):
    """Decoder, LayerNorm, hidden 64, 4 heads, sequences of 32, batch 8; ‖∇W‖ of the last layer's FFN output
    projection at init, averaged over 8 seeds, at 12 vs 6 layers. Xiong et al. 2020: Pre-LN falls ~1/√2,
    Post-LN stays."""
    spec = tiny_spec(corpus_files, hidden=64, heads=4, seq_len=32, batch=8, init_seeds=tuple(range(8)))
    data = T.load_text(spec)
    inits = []
    for placement in ("pre_ln", "post_ln"):
        for depth in (6, 12):
            doc = T.init_profile(spec, Cell("init", "k", placement, "layernorm", depth, 0), data, torch.device("cpu"))
            inits.append({"placement": placement, "depth": depth, **doc})
    ratios = {r["placement"]: r["ratio"] for r in analysis.depth_ratios(inits)}
    assert ratios["pre_ln"] < 0.85, ratios
    assert 0.85 < ratios["post_ln"] < 1.2, ratios


def test_grid_commits_each_cell_and_cancel_keeps_them(corpus_files, tmp_path):
    spec = tiny_spec(corpus_files)
    total = len(spec.cells())
    seen = []

    def stop_after_three(done, total_, cell, step, steps, loss):
        if step == -1:
            seen.append(cell.key)
            if len(seen) == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's cancel signal

    with Store(tmp_path / "r.db") as store:
        out = T.run_grid(spec, store, stop_after_three)
        run = store.get_run(out.run_id)
        assert out.status == "cancelled" and run["status"] == "cancelled" and run["kind"] == "training"
        assert len(store.artifacts(out.run_id, T.ARTIFACT_PREFIX)) == 3
        again = T.run_grid(spec, store, resume=out.run_id)
        assert again.status == "completed" and again.carried == 3 and again.cells_done == total
        assert store.get_run(out.run_id)["extra"]["resumed_in"] == again.run_id
        s = analysis.summarize(list(store.artifacts(again.run_id, T.ARTIFACT_PREFIX).values()))
    assert {c.key for c in s.claims} == {
        "pre_ln_more_stable",
        "post_ln_unstable_small_finetune",
        "layerscale_init_stability",
        "rmsnorm_equal_quality",
    }
    assert next(c for c in s.claims if c.key == "layerscale_init_stability").verdict == "not_measured"
    assert s.quality.pairs == 1 and len(s.inits) == 4 and len(s.finetune) == 2


def test_parallel_workers_train_the_same_runs(corpus_files, tmp_path):
    """Two worker processes give each run exactly what one process gives it: cells are seeded, not scheduled."""
    spec = tiny_spec(corpus_files, steps=8, warmups=(0,), init_depths=(), finetune_document=None, quality_norms=())
    docs = {}
    for workers in (1, 2):
        with Store(tmp_path / f"w{workers}.db") as store:
            out = T.run_grid(replace(spec, workers=workers), store)
            assert out.status == "completed"
            docs[workers] = store.artifacts(out.run_id, T.ARTIFACT_PREFIX)
            assert store.get_run(out.run_id)["extra"]["workers"] == workers
    assert docs[1].keys() == docs[2].keys() and len(docs[1]) == 2
    for name in docs[1]:
        assert docs[1][name]["loss"] == docs[2][name]["loss"] and docs[2][name]["workers"] == 2
        assert docs[2][name]["finished_pid"] != os.getpid()  # trained in a worker


@pytest.mark.slow  # a training grid killed and started again
def test_killed_grid_resumes_where_it_stopped(corpus_files, tmp_path):
    """A worker killed with SIGKILL mid-grid: starting the same grid again carries its finished cells over
    (they keep the killed worker's pid) and trains only the rest."""
    spec = tiny_spec(corpus_files, steps=60, seeds=(0, 1))
    spec_file = tmp_path / "grid.json"
    spec_file.write_text(spec.to_json())
    db = tmp_path / "k.db"
    env = {k: v for k, v in os.environ.items() if k != "NORMSCOPE_DB"}
    cmd = [sys.executable, "-m", "profilers", "training", "run", "--spec", str(spec_file), "--db", str(db)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    done: dict = {}
    while time.monotonic() < deadline and len(done) < 6:
        time.sleep(0.2)
        try:  # read-only: never race the worker's own schema creation
            with Store(db, readonly=True) as s:
                runs = s.list_runs(kind="training")
                done = s.artifacts(runs[0]["id"], T.ARTIFACT_PREFIX) if runs else {}
        except StoreError:
            pass  # not created (or not migrated) yet
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.kill()
    proc.wait(timeout=30)
    with Store(db) as s:
        (killed,) = s.list_runs(kind="training")
        kept = s.artifacts(killed["id"], T.ARTIFACT_PREFIX)
        assert killed["status"] == "interrupted" and 6 <= len(kept) < len(spec.cells())
    p = run_cli("training", "run", "--spec", str(spec_file), db=db)
    assert p.returncode == 0, p.stderr
    assert f"resuming the grid of run {killed['id']}" in p.stderr
    with Store(db) as s:
        new = s.list_runs(kind="training")[0]
        cells = s.artifacts(new["id"], T.ARTIFACT_PREFIX)
        assert new["status"] == "completed" and new["extra"]["resumed_from"] == killed["id"]
    assert set(cells) == {T.ARTIFACT_PREFIX + c.key for c in spec.cells()}
    pids = {name: doc["finished_pid"] for name, doc in cells.items()}
    assert all(pids[name] == proc.pid for name in kept)
    assert all(pid != proc.pid for name, pid in pids.items() if name not in kept)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--corpus", "MISSING"], "no such file"),
        (["--corpus", "BINARY"], "not a text file"),
        (["--lrs", "0.1,abc"], "not a float"),
        (["--warmups", "999999999"], "warmups"),
        (["--placements", "middle_ln"], "unknown placement"),
        (["--device", "tpu"], "unknown device"),
        (["--resume", "1", "--fresh"], "not both"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(args, message, tmp_path):
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\x00\x01\x02PNG")
    args = [{"MISSING": str(tmp_path / "nope.txt"), "BINARY": str(binary)}.get(a, a) for a in args]
    db = tmp_path / "never.db"
    p = run_cli("training", "run", *args, db=db)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert not db.exists()


def test_cli_runs_a_grid_shows_it_and_the_run_exports(corpus_files, tmp_path):
    db = tmp_path / "c.db"
    p = run_cli(
        "training", "run", "--corpus", *corpus_files, "--placements", "post_ln,pre_ln", "--lrs", "3e-3",
        "--warmups", "0", "--seeds", "0", "--depths", "2", "--steps", "10", "--workers", "1", "--finetune-doc", "none",
        "--label", "cli grid", "--json", db=db,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["status"] == "completed" and doc["corpus"]["finetune_document"] is None
    verdicts = {c["key"]: c["verdict"] for c in doc["claims_raw"]}
    assert verdicts["post_ln_unstable_small_finetune"] == "not_measured"  # skipped, and said so
    shown = run_cli("training", "show", str(doc["run_id"]), db=db)
    assert shown.returncode == 0 and "Claims check" in shown.stdout and "Pre-LN" in shown.stdout
    assert run_cli("training", "show", "99", db=db).returncode == 2
    with Store(db) as a, Store(tmp_path / "other.db") as b:
        exported = export_run(a, doc["run_id"])
        new = import_run(b, json.loads(json.dumps(exported)))
        assert b.get_run(new)["kind"] == "training"
        assert b.artifacts(new, T.ARTIFACT_PREFIX).keys() == a.artifacts(doc["run_id"], T.ARTIFACT_PREFIX).keys()
    report = tmp_path / "r.html"
    assert run_cli("report", str(doc["run_id"]), "-o", str(report), db=db).returncode == 0
    html = report.read_text()
    assert "Training stability: run" in html and "Published claims, checked on this machine" in html


def test_claims_verdicts_follow_the_intervals():
    def row(placement, failed, warmup=0, seed=0, norm="layernorm", groups=("grid",), loss=2.0):
        return {
            "placement": placement, "norm": norm, "depth": 6, "lr": 1e-2, "warmup": warmup, "seed": seed,
            "groups": groups, "diverged": failed, "diverged_step": 3 if failed else None, "trained": not failed,
            "failed": failed, "final_val_loss": None if failed else loss, "wall_s": 1.0, "tokens_per_s": 1.0,
            "energy_j": None, "energy_reason": "none", "initial_grad_norm": 1.0,
        }  # fmt: skip

    post = [row("post_ln", True, seed=s) for s in range(8)]
    pre = [row("pre_ln", False, seed=s) for s in range(8)]
    c = {x.key: x for x in analysis.claims(post + pre, [], [], 1.0)}
    assert c["pre_ln_more_stable"].verdict == "measured"
    assert c["post_ln_unstable_small_finetune"].verdict == "not_measured"
    assert c["rmsnorm_equal_quality"].verdict == "not_measured"
    mostly_fine = [row("post_ln", s == 0, seed=s) for s in range(8)]
    c = {x.key: x for x in analysis.claims(mostly_fine + pre, [], [], 1.0)}
    assert c["pre_ln_more_stable"].verdict == "not_reproduced"  # 1/8 vs 0/8: the interval includes 0
    q = [row("pre_ln", False, seed=s, norm=n, groups=("quality",), loss=2.0 + d) for s, (n, d) in
         enumerate([("layernorm", 0), ("rmsnorm", 0.001), ("layernorm", 0), ("rmsnorm", 0.002)])]  # fmt: skip
    for r in q:
        r["seed"] //= 2
    c = {x.key: x for x in analysis.claims(q, [], [], 1.0)}
    assert c["rmsnorm_equal_quality"].verdict == "measured", c["rmsnorm_equal_quality"].measured
    assert stats.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert stats.t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.776, abs=1e-3)
