"""The models lab: transformers models built from tiny configs of four families (no download), their norm
modules found and swapped, the gate against the model's own in float64, the CLI, the report and the page."""

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli

from profilers.labs.models import analysis
from profilers.labs.models import measure as MM
from profilers.labs.models import measure_model as M
from profilers.labs.models.spec import ModelSweepSpec, shipped
from profilers.measure.machine.disturbance import NullProbe
from profilers.spec import SpecError
from profilers.store import Store

pytest.importorskip("transformers")

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2}
FAMILIES = {  # shipped config → the tiny one's extra keys, and how many norm modules two layers have
    "qwen2.5-0.5b": ({"num_key_value_heads": 2, "vocab_size": 512, "max_window_layers": 2}, 2 * 2 + 1),
    "gemma-2-2b": (
        {"num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512, "query_pre_attn_scalar": 16},
        2 * 4 + 1,  # Gemma 2: a norm before and after each sublayer, and the final one
    ),
    "bert-base-uncased": ({"vocab_size": 512}, 1 + 2 * 2 + 1),  # embeddings, two per layer (Post-LN), the MLM head
    "vit-base-patch16-224": ({"image_size": 32, "patch_size": 8, "num_labels": 10}, 2 * 2 + 1),
}


def tiny_config(folder: Path, name: str) -> Path:
    """A model directory with the shipped config cut to 2 layers, hidden 64: what a user's config.json is."""
    doc = json.loads(shipped()[name].read_text())
    doc.update(TINY, **FAMILIES[name][0])
    where = folder / name
    where.mkdir(parents=True, exist_ok=True)
    (where / "config.json").write_text(json.dumps(doc))
    return where / "config.json"


def tiny_spec(folder: Path, name: str, **kw) -> ModelSweepSpec:
    defaults = dict(seq_len=16, batch=2, budget_ms=40.0, warmup_ms=5.0, rounds=3, ci_target_pct=50.0)
    return ModelSweepSpec(config=str(tiny_config(folder, name)), **{**defaults, **kw})


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_shipped_configs_are_the_public_models_and_read_as_specs():
    names = set(shipped())
    assert {"llama-3.2-1b", "llama-3.1-8b", "qwen2.5-0.5b", "qwen2.5-7b", "mistral-7b-v0.3", "gemma-2-2b"} <= names
    assert {"bert-base-uncased", "vit-base-patch16-224"} <= names
    eight = ModelSweepSpec(config="llama-3.1-8b", layers=2)
    assert eight.name == "llama-3.1-8b (2 of 32 layers)" and eight.hidden == 4096 and eight.tokens == 512
    assert eight.family.norm == "rmsnorm" and eight.baseline == "rmsnorm own"
    vit = ModelSweepSpec(config="vit-base-patch16-224", batch=4)
    assert vit.tokens == 4 * (14 * 14 + 1) and vit.baseline == "layernorm own"  # patches and the class token
    assert ModelSweepSpec.from_dict(json.loads(eight.to_json())) == eight  # the config travels with the spec


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_norm_module_is_found_swapped_and_passes_the_gate(name, tmp_path):
    spec = tiny_spec(tmp_path, name, impls=("native", "eager", "compiled"), modes=("fwd", "fwdbwd"))
    model = M.build(spec, torch.device("cpu"), torch.float32)
    sites = M.sites(model, spec.family)
    assert len(sites) == FAMILIES[name][1]
    own = M.Installation(sites, [s.module for s in sites])
    for impl in ("native", "eager"):
        try:
            modules = [M.implementation(s, spec.family.norm, impl, spec.family, torch.device("cpu"), {}) for s in sites]
        except M.Unsupported as why:
            assert spec.family.norm == "layernorm" and impl == "native" and "the same as native" in str(why)
            continue
        with M.installed(M.Installation(sites, modules), own):
            swapped = [type(getattr(s.parent, s.attr)).__name__ for s in sites]
            assert swapped == ["Swapped"] * len(sites)  # every site swapped
        assert [getattr(s.parent, s.attr) for s in sites] == [s.module for s in sites]  # and put back

    with Store(tmp_path / "r.db") as store:
        from profilers.measure.sweep.runner import run_sweep

        out = run_sweep(spec, store, probe=NullProbe("test: load not checked"), kind=MM.ModelKind())
        points = store.points(out.run_id)
        assert store.get_run(out.run_id)["kind"] == "models"
    timed = [p for p in points if p["status"] in ("ok", "imprecise", "unstable")]
    skipped = {(p["impl"], p["mode"]) for p in points if p["status"] == "skipped"}
    expected_skips = {("native", m) for m in ("fwd", "fwdbwd")} if spec.family.norm == "layernorm" else set()
    assert skipped == expected_skips, [(p["impl"], p["error"]) for p in points if p["status"] == "skipped"]
    assert len(timed) == len(points) - len(skipped)  # own, eager, compiled (and native) all pass the gate
    assert all(p["gate"] == "pass" and p["max_rel_err"] is not None for p in timed)
    info = timed[0]["extra"]["model"]
    assert info["norm_modules"] == FAMILIES[name][1] and info["layers"] == 2
    assert all(p["extra"]["components"]["share_pct"]["norm"] > 0 for p in timed)  # the norm's share, measured
    assert analysis.savings(points)


def test_a_wrong_implementation_is_failed_by_the_gate_and_never_timed(tmp_path, monkeypatch):
    """A planted bug (the eps inside the square root dropped, the weight ignored): logits and gradients far
    from the float64 reference, so the point is failed with the reason and carries no time."""

    def broken(fam, site):
        return lambda x, w, b: x / x.abs().mean(-1, keepdim=True)

    monkeypatch.setattr(M, "_native", broken)
    spec = tiny_spec(tmp_path, "qwen2.5-0.5b", impls=("native",), modes=("fwdbwd",))
    from profilers.measure.sweep.runner import run_sweep

    with Store(tmp_path / "w.db") as store:
        out = run_sweep(spec, store, probe=NullProbe("test"), kind=MM.ModelKind())
        by = {p["impl"]: p for p in store.points(out.run_id)}
    assert by["own"]["status"] in ("ok", "unstable") and by["own"]["gate"] == "pass"
    bad = by["native"]
    assert bad["status"] == "failed" and bad["p50_us"] is None and bad["gate"] == "wrong"
    assert bad["error"].startswith("correctness:") and "float64 reference" in bad["error"]


def test_a_norm_wrong_only_in_backward_is_failed_on_its_gradients(tmp_path, monkeypatch):
    """Right logits, wrong gradients (the backward of the norm halved): only the gradient check can see it,
    and the failure names a gradient; with LoRA, one of the adapters'."""

    class HalfBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y):
            return y.clone()

        @staticmethod
        def backward(ctx, dy):
            return dy * 0.5

    def broken(fam, site):
        return lambda x, w, b: HalfBackward.apply(torch.nn.functional.rms_norm(x, (site.hidden,), w, site.eps))

    monkeypatch.setattr(M, "_native", broken)
    from profilers.measure.sweep.runner import run_sweep

    for lora, grad in ((0, "dmodel."), (4, "lora_")):
        spec = tiny_spec(tmp_path, "qwen2.5-0.5b", impls=("native",), modes=("fwd", "fwdbwd"), lora=lora)
        with Store(tmp_path / f"b{lora}.db") as store:
            out = run_sweep(spec, store, probe=NullProbe("test"), kind=MM.ModelKind())
            by = {(p["impl"], p["mode"]): p for p in store.points(out.run_id)}
        assert by[("native", "fwd")]["gate"] == "pass"  # the forward is right
        bad = by[("native", "fwdbwd")]
        assert bad["status"] == "failed" and bad["gate"] == "wrong", bad
        assert bad["error"].startswith("correctness: d") and grad in bad["error"], bad["error"]  # a gradient


def test_one_kind_measures_each_run_s_own_model_and_lets_it_go(tmp_path):
    """The CLI's one ModelKind over two runs in one process: the second run builds its own model, and the first
    run's model is not held while the second one's memory is checked."""
    from profilers.measure.sweep.runner import run_sweep

    kind = MM.ModelKind()
    a = tiny_spec(tmp_path, "qwen2.5-0.5b", impls=("native",), modes=("step",))
    b = tiny_spec(tmp_path / "b", "qwen2.5-0.5b", impls=("native",), modes=("step",), layers=1)
    with Store(tmp_path / "k.db") as store:
        first = run_sweep(a, store, probe=NullProbe("test"), kind=kind)
        assert kind.group is None  # let go when the run ended
        second = run_sweep(b, store, probe=NullProbe("test"), kind=kind)
        got = [store.points(r.run_id)[0]["extra"]["model"] for r in (first, second)]
    assert [g["layers"] for g in got] == [2, 1] and got[0]["parameters"] > got[1]["parameters"]


def test_the_memory_estimate_counts_what_a_step_holds():
    """An 8B slice: a full fine-tune's step holds weights, gradients and both AdamW moments (over 24 GB in
    float32, so a 24 GiB machine skips it), a LoRA step far less; float64 attention's scores grow with seq²."""
    kind = MM.ModelKind()

    def need(**kw):
        spec = ModelSweepSpec(config="llama-3.1-8b", layers=2, **kw)
        return {(p.dtype, p.mode): kind.need_bytes(p, spec) for p in spec.points()}

    full, lora = need(dtypes=("float32",)), need(dtypes=("float32",), lora=16)
    params = 2 * 128256 * 4096 + 2 * (4 * 4096**2 + 3 * 4096 * 14336)
    assert full[("float32", "step")] > params * 16 > 24e9  # weights, gradients, two moments: 4 bytes each
    assert lora[("float32", "step")] < full[("float32", "step")] * 0.7
    assert full[("float32", "fwd")] > params * 8  # the float64 reference's weights
    short, long = need(dtypes=("float32",), seq_len=512), need(dtypes=("float32",), seq_len=8192)
    assert long[("float32", "fwdbwd")] - short[("float32", "fwdbwd")] > 2 * 32 * 8192**2 * 8  # scores, 2 layers


def test_a_config_s_per_layer_lists_are_cut_with_its_layers(tmp_path):
    doc = json.loads(tiny_config(tmp_path, "qwen2.5-0.5b").read_text())
    doc["layer_types"] = ["full_attention", "full_attention"]  # recent configs list one entry per layer
    (tmp_path / "lt").mkdir()
    (tmp_path / "lt" / "config.json").write_text(json.dumps(doc))
    spec = ModelSweepSpec(config=str(tmp_path / "lt" / "config.json"), layers=1, seq_len=8)
    assert spec.name == "lt (1 of 2 layers)"
    model = M.build(spec, torch.device("cpu"), torch.float32)
    assert model.config.num_hidden_layers == 1 and model.config.layer_types == ["full_attention"]


def test_lora_adapters_keep_their_dtype_through_every_check(tmp_path):
    """The float32 fallback check of a half-precision model and the float64 reference both convert tensor by
    tensor and put each back: peft's float32 adapters beside bfloat16 weights stay float32."""
    spec = tiny_spec(tmp_path, "qwen2.5-0.5b", lora=4)
    model = M.build(spec, torch.device("cpu"), torch.bfloat16)
    before = {n: q.dtype for n, q in model.named_parameters()}
    assert {before[n] for n in before if "lora_" in n} == {torch.float32} and torch.bfloat16 in before.values()
    for dtype in (torch.float32, torch.float64):
        with MM._in_dtype(model, dtype):
            assert {q.dtype for q in model.parameters()} == {dtype}
        assert {n: q.dtype for n, q in model.named_parameters()} == before


def test_another_norm_type_is_checked_against_itself_with_its_placement_kept(tmp_path):
    spec = tiny_spec(tmp_path, "bert-base-uncased", impls=("eager",), norms=("rmsnorm", "dyt"), modes=("fwd", "step"))
    from profilers.measure.sweep.runner import run_sweep

    with Store(tmp_path / "t.db") as store:
        out = run_sweep(spec, store, probe=NullProbe("test"), kind=MM.ModelKind())
        all_points = store.points(out.run_id)
        points = {(p["variant"], p["impl"]): p for p in all_points if p["mode"] == "fwd"}
    assert set(points) == {("layernorm", "own"), ("layernorm", "eager"), ("rmsnorm", "native"), ("dyt", "eager")}
    for key in (("rmsnorm", "native"), ("dyt", "eager")):
        p = points[key]
        assert p["status"] in ("ok", "unstable") and p["gate"] == "pass" and p["placement"] == "post_ln"
    steps = {(p["variant"], p["impl"]): p for p in all_points if p["mode"] == "step"}
    assert all(p["status"] in ("ok", "unstable", "imprecise") for p in steps.values()), steps


def test_cli_runs_shows_and_reports_a_model(tmp_path):
    config = tiny_config(tmp_path, "qwen2.5-0.5b")
    db = tmp_path / "c.db"
    p = run_cli(
        "model", "run", "--config", str(config), "--impls", "native", "--modes", "fwd,step", "--seq-len", "16",
        "--budget-ms", "40", "--warmup-ms", "5", "--rounds", "3", "--label", "tiny qwen", "--json", db=db,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["status"] == "completed" and {q["impl"] for q in doc["points"]} == {"own", "native"}
    shown = run_cli("model", "show", str(doc["run_id"]), db=db)
    assert shown.returncode == 0 and "fine-tuning step" in shown.stdout and "Claim" in shown.stdout
    as_json = json.loads(run_cli("model", "show", str(doc["run_id"]), "--json", db=db).stdout)
    assert as_json["model"] == "qwen2.5-0.5b" and len(as_json["claims"]) == 1 and len(as_json["rows"]) == 4
    assert as_json["margin_pct"] == 1.0 and all("±1%" in (r["verdict"] or "±1%") for r in as_json["rows"])
    wide = json.loads(run_cli("model", "show", str(doc["run_id"]), "--json", "--margin-pct", "30", db=db).stdout)
    assert wide["margin_pct"] == 30.0 and any("±30%" in (r["verdict"] or "") for r in wide["rows"])
    assert run_cli("model", "show", str(doc["run_id"]), "--margin-pct", "99", db=db).returncode == 2
    listed = run_cli("model", "configs")
    assert listed.returncode == 0 and "llama-3.1-8b" in listed.stdout and "post_ln" in listed.stdout
    from profilers.report import document

    with Store(db) as s:
        html = document.build(s, [doc["run_id"]])
    assert "<h2>Model: qwen2.5-0.5b (run" in html and "The fine-tuning claim" in html


@pytest.mark.parametrize("name", [pytest.param("qwen2.5-0.5b", marks=pytest.mark.slow), "bert-base-uncased"])
def test_a_lora_fine_tune_trains_only_the_adapters_and_its_gate_still_catches_a_wrong_norm(name, tmp_path):
    """LoRA (peft) on the attention and MLP projections: the norms and every other weight frozen, a swapped-in
    norm type frozen like the module it replaces, the adapters stay float32 through the float64 check, and a
    planted wrong RMSNorm is still failed through the adapters' gradients."""
    spec = tiny_spec(tmp_path, name, lora=4, impls=("eager",), norms=("dyt",), modes=("fwdbwd", "step"))
    assert spec.name.endswith("(LoRA r=4)") and spec.tuning.startswith("LoRA r=4")
    model = M.build(spec, torch.device("cpu"), torch.bfloat16)
    trained = {n: q for n, q in model.named_parameters() if q.requires_grad}
    assert trained and all("lora_A" in n or "lora_B" in n for n in trained)
    assert all(q.dtype == torch.float32 for q in trained.values())  # peft keeps adapters in float32
    layers = 2 * (7 if spec.family.head == "causal-lm" else 6)  # projections adapted per layer, times 2 layers
    assert len(trained) == 2 * layers
    sites = M.sites(model, spec.family)
    assert all(not s.module.weight.requires_grad for s in sites)
    dyt = M.implementation(sites[0], "dyt", "eager", spec.family, torch.device("cpu"), {})
    assert not any(q.requires_grad for q in dyt.parameters())

    g = MM.Group(
        ("bfloat16", "fwdbwd"),
        model,
        sites,
        M.Installation(sites, [s.module for s in sites]),
        M.batch(spec, model, torch.device("cpu")),
        compiled={},
    )
    ref = MM.ModelKind._reference(g, g.own, True)
    assert set(ref.grads) == set(trained) and all(v.dtype == torch.float64 for v in ref.grads.values())
    assert all(q.dtype == torch.float32 for q in trained.values())  # back in float32, not the model's bfloat16
    assert any(v.abs().max() > 0 for n, v in ref.grads.items() if "lora_A" in n)  # B random: A's checked too

    from profilers.measure.sweep.runner import run_sweep

    with Store(tmp_path / "l.db") as store:
        out = run_sweep(spec, store, probe=NullProbe("test"), kind=MM.ModelKind())
        points = store.points(out.run_id)
    assert all(p["status"] in ("ok", "unstable", "imprecise") for p in points), [p["error"] for p in points]
    info = points[0]["extra"]["model"]
    assert info["lora"] == 4 and 0 < info["trained_parameters"] < info["parameters"] / 10
    if spec.family.norm == "rmsnorm":

        def broken(fam, site):
            return lambda x, w, b: x / x.abs().mean(-1, keepdim=True)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(M, "_rms_eager", broken)
            with Store(tmp_path / "w.db") as store:
                bad_spec = tiny_spec(tmp_path, name, lora=4, impls=("eager",), modes=("fwdbwd",))
                out = run_sweep(bad_spec, store, probe=NullProbe("test"), kind=MM.ModelKind())
                by = {p["impl"]: p for p in store.points(out.run_id)}
        assert by["eager"]["status"] == "failed" and by["eager"]["gate"] == "wrong"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "meta-llama/Llama-3.1-8B"], "a hub name: nothing is downloaded"),
        (["--config", "MISSING_KEYS"], "lacks positive whole-number num_hidden_layers"),
        (["--config", "ZERO_HEADS"], "lacks positive whole-number num_attention_heads"),
        (["--config", "BAD_ACTIVATION"], "transformers cannot build it"),
        (["--config", "UNKNOWN_TYPE"], "model_type 'mamba' is not one NormScope drives"),
        (["--config", "NOT_JSON"], "is not JSON"),
        (["--config", "qwen2.5-0.5b", "--norms", "rmsnorm"], "is the model's own type"),
        (["--config", "qwen2.5-0.5b", "--norms", "batchnorm"], "unknown norm 'batchnorm'"),
        (["--config", "qwen2.5-0.5b", "--layers", "99"], "the model has 24"),
        (["--config", "qwen2.5-0.5b", "--impls", "triton"], "unknown implementation 'triton'"),
        (["--config", "qwen2.5-0.5b", "--lora", "-1"], "lora must be a rank 0..1024"),
        (["--config", "bert-base-uncased", "--lora", "1000"], "exceeds the hidden size 768"),
        ([], "give --config"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(args, message, tmp_path):
    tiny_qwen = json.loads(tiny_config(tmp_path, "qwen2.5-0.5b").read_text())
    broken = {
        "MISSING_KEYS": {"model_type": "llama", "hidden_size": 64},
        "UNKNOWN_TYPE": {"model_type": "mamba"},
        "ZERO_HEADS": {**tiny_qwen, "num_attention_heads": 0},
        "BAD_ACTIVATION": {**tiny_qwen, "hidden_act": "no-such-activation"},  # transformers refuses it
    }
    for key, doc in broken.items():
        (tmp_path / f"{key}.json").write_text(json.dumps(doc))
    (tmp_path / "NOT_JSON.json").write_text("{ hidden_size: 64")
    args = [str(tmp_path / f"{a}.json") if a in (*broken, "NOT_JSON") else a for a in args]
    db = tmp_path / "never.db"
    p = run_cli("model", "run", *args, db=db)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert not db.exists()


def test_spec_refusals_name_the_fix(tmp_path):
    with pytest.raises(SpecError, match="seq_len 9000 is beyond the model's 512 positions"):
        ModelSweepSpec(config="bert-base-uncased", seq_len=9000)
    with pytest.raises(SpecError, match="baseline 'rmsnorm liger' is not a candidate"):
        ModelSweepSpec(config="qwen2.5-0.5b", impls=("native",), baseline="rmsnorm liger")


def test_liger_and_quack_are_skipped_on_the_cpu_with_the_reason(tmp_path):
    spec = tiny_spec(tmp_path, "qwen2.5-0.5b")
    sites = M.sites(M.build(spec, torch.device("cpu"), torch.float32), spec.family)
    for impl, why in (("liger", "Triton kernels for CUDA"), ("quack", "NVIDIA GPUs")):
        with pytest.raises(M.Unsupported, match=why):
            M.implementation(sites[0], "rmsnorm", impl, spec.family, torch.device("cpu"), {})


def test_models_page_shows_a_run_and_offers_a_sweep(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from profilers.measure.sweep.runner import run_sweep

    db = tmp_path / "p.db"
    spec = tiny_spec(tmp_path, "qwen2.5-0.5b", impls=("native",), modes=("fwd", "step"))
    with Store(db) as store:
        run_sweep(spec, store, probe=NullProbe("test"), kind=MM.ModelKind())
    monkeypatch.setenv("NORMSCOPE_DB", str(db))
    monkeypatch.setenv("NORMSCOPE_REFERENCE_DIR", str(tmp_path / "none"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/models.py").run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    assert "qwen2.5-0.5b" in text and "the model's own RMSNorm → RMSNorm native" in text
    assert at.get("plotly_chart") and any("Claim" in m.value or "claim" in m.value for m in at.subheader)
    next(s for s in at.selectbox if s.label == "Model").set_value("llama-3.1-8b").run()
    layers = next(n for n in at.number_input if n.label.startswith("Layers"))
    assert layers.label == "Layers (of 32)" and layers.value == 2  # a slice by default on a CPU
    assert any("llama-3.1-8b (2 of 32 layers)" in m.value for m in at.markdown)
    next(n for n in at.number_input if n.label == "Sequence length").set_value(200_000).run()
    assert any("beyond the model's 131072 positions" in e.value for e in at.error)
