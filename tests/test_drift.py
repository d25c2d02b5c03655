"""The drift monitor: KS and its p-value, profiles (round trip, refusal), calibrated scores, hooks, the CLI."""

import json
import math
import random

import numpy as np
import pytest
import torch
from conftest import run_cli

from profilers import registry
from profilers.labs.drift import analysis as analysis
from profilers.labs.drift import measure as drift
from profilers.labs.drift import measure_demo as driftdemo
from profilers.labs.drift.spec import DriftSpec, parse_args
from profilers.measure.models import hooks
from profilers.spec import SpecError
from profilers.store import Store


# -- the two-sample KS test ----------------------------------------------------------------------------
def test_ks_statistic_by_hand():
    assert analysis.ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert analysis.ks_statistic([1, 2, 3], [10, 11]) == 1.0
    # F_a jumps to 2/3 at 1, F_b to 1/3: ties are counted on both sides at once
    assert analysis.ks_statistic([1, 1, 2], [1, 2, 2]) == pytest.approx(1 / 3)
    # a = {1,2,3,4}, b = {3,4,5,6}: at x = 2, F_a = 1/2 and F_b = 0
    assert analysis.ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)


def test_kolmogorov_distribution_at_its_textbook_critical_values():
    # P(K > 1.224) = 0.10, P(K > 1.358) = 0.05, P(K > 1.628) = 0.01 (Kolmogorov's limiting distribution)
    assert analysis.kolmogorov_sf(1.224) == pytest.approx(0.10, abs=1e-3)
    assert analysis.kolmogorov_sf(1.358) == pytest.approx(0.05, abs=1e-3)
    assert analysis.kolmogorov_sf(1.628) == pytest.approx(0.01, abs=1e-3)
    assert analysis.kolmogorov_sf(0.0) == 1.0 and analysis.kolmogorov_sf(5.0) < 1e-20
    # the p-value falls as D grows and as the samples grow
    assert analysis.ks_pvalue(0.1, 100, 100) > analysis.ks_pvalue(0.2, 100, 100)
    assert analysis.ks_pvalue(0.1, 100, 100) > analysis.ks_pvalue(0.1, 1000, 1000)


def test_ks_pvalue_is_calibrated_on_independent_samples():
    rng = np.random.default_rng(0)
    p = [analysis.ks_pvalue(analysis.ks_statistic(rng.normal(size=200), rng.normal(size=150)), 200, 150)
         for _ in range(400)]  # fmt: skip
    assert 0.02 < np.mean(np.array(p) < 0.05) < 0.09


def test_binomial_tail_against_direct_sums():
    for k, n, p in ((0, 5, 0.1), (2, 5, 0.1), (5, 5, 0.5), (7, 20, 0.05), (3, 3, 0.3)):
        direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert analysis.binomial_tail(k, n, p) == pytest.approx(direct, rel=1e-9)
    assert analysis.binomial_tail(6, 5, 0.1) == 0.0


# -- profiles from synthetic statistics ---------------------------------------------------------------------
def sample(name: str, rng: np.random.Generator, rows: int = 300, channels: int = 6, shift: float = 0.0):
    x = rng.normal(size=(rows, channels)) + shift
    return analysis.LayerSample(
        name,
        "layernorm",
        channels,
        {
            "mean": x.mean(1),
            "rms": np.sqrt((x**2).mean(1)),
            "maxabs": np.abs(x).max(1),
            "var": x.var(1),
        },
        x.sum(0),
        (x**2).sum(0),
        np.abs(x).max(0),
    )


def synthetic_profile(alpha: float = 0.1, windows: int = 30):
    rng = np.random.default_rng(1)
    ref = {n: sample(n, rng, rows=2000) for n in ("a", "b")}
    cal = [{n: sample(n, rng) for n in ("a", "b")} for _ in range(windows)]
    return analysis.build_profile(ref, cal, alpha, sample_rows=500, seed=0, meta={"model": "synthetic"}), rng


def test_profile_round_trips_through_a_json_file(tmp_path):
    profile, _ = synthetic_profile()
    path = tmp_path / "profile.json"
    path.write_text(analysis.profile_json(profile))
    loaded = analysis.load_profile(path)
    assert loaded == json.loads(analysis.profile_json(profile))
    assert loaded["version"] == analysis.PROFILE_VERSION and loaded["format"] == analysis.PROFILE_FORMAT
    assert [lay["name"] for lay in loaded["layers"]] == ["a", "b"]
    assert len(loaded["layers"][0]["samples"]["mean"]) == 500


def _one_line_refusal(path, fragment):
    with pytest.raises(analysis.ProfileError) as e:
        analysis.load_profile(path)
    assert "\n" not in str(e.value) and fragment in str(e.value), str(e.value)


def test_a_bad_profile_file_is_refused_with_one_line(tmp_path):
    profile, _ = synthetic_profile()
    bad = tmp_path / "bad.json"
    _one_line_refusal(tmp_path / "missing.json", "no profile file")
    bad.write_text("{not json")
    _one_line_refusal(bad, "is not JSON")
    bad.write_text(json.dumps({"format": "something-else"}))
    _one_line_refusal(bad, "not a NormScope drift profile")
    newer = dict(profile, version=analysis.PROFILE_VERSION + 1)
    bad.write_text(json.dumps(newer))
    _one_line_refusal(bad, "newer than this NormScope")
    short = json.loads(analysis.profile_json(profile))
    short["layers"][1]["channel_std"] = short["layers"][1]["channel_std"][:-1]
    bad.write_text(json.dumps(short))
    _one_line_refusal(bad, "layers[1].channel_std has 5 values for 6 channels")
    no_cal = json.loads(analysis.profile_json(profile))
    del no_cal["calibration"]["layer_threshold"]["b"]
    bad.write_text(json.dumps(no_cal))
    _one_line_refusal(bad, "calibration.layer_threshold[b]")


def test_synthetic_shift_is_scored_in_the_layer_that_moved():
    profile, rng = synthetic_profile()
    same = analysis.score_window(profile, {"a": sample("a", rng), "b": sample("b", rng)})
    moved = analysis.score_window(profile, {"a": sample("a", rng), "b": sample("b", rng, shift=0.5)})
    assert moved["layers"]["b"]["alarm"] and not moved["layers"]["a"]["alarm"]
    assert moved["moved_most"][0] == "b" and moved["alarm"]
    assert moved["layers"]["b"]["score"] > same["layers"]["b"]["score"]
    assert all(abs(c["smd"]) > 0.3 for c in moved["layers"]["b"]["top_channels"])


def test_too_few_calibration_windows_for_alpha_are_refused():
    with pytest.raises(analysis.ProfileError, match="at least 19 windows"):
        synthetic_profile(alpha=0.05, windows=10)
    with pytest.raises(SpecError, match="--calibration-windows 99"):
        DriftSpec(action="demo", alpha=0.01, calibration_windows=40)


# -- hooks on a real module ------------------------------------------------------------------------------
class DyT(torch.nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.full((1,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.alpha * x)


class Net(torch.nn.Module):
    """Linear → LayerNorm → Linear → LayerNorm → Linear → RMSNorm, plus a conv branch with BatchNorm and GroupNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.ln1 = torch.nn.Linear(8, 16), torch.nn.LayerNorm(16)
        self.fc2, self.ln2 = torch.nn.Linear(16, 16), torch.nn.LayerNorm(16)
        self.fc3, self.rms = torch.nn.Linear(16, 16), torch.nn.RMSNorm(16)
        self.dyt = DyT(16)
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn, self.gn = torch.nn.BatchNorm2d(4), torch.nn.GroupNorm(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.rms(self.fc3(self.ln2(self.fc2(self.ln1(self.fc1(x))))))
        img = self.gn(self.bn(self.conv(x[:, None, None, :])))
        return self.dyt(h).sum() + img.sum()


def data(seed: int, n: int = 60):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(32, 8, generator=g) for _ in range(n)]


def test_every_kind_of_norm_layer_is_hooked_with_rows_per_position():
    net = Net()
    names = {n: hooks.norm_kind(m) for n, m in hooks.norm_layers(net)}
    assert names == {
        "ln1": "layernorm", "ln2": "layernorm", "rms": "rmsnorm", "dyt": "dyt", "bn": "batchnorm2d",
        "gn": "groupnorm",
    }  # fmt: skip
    (w,) = drift.record_windows(net, data(0, 2), window_batches=2)
    assert w["ln1"].rows == 64 and w["ln1"].channels == 16
    assert w["bn"].channels == 4 and w["bn"].rows == 2 * 32 * 8  # one row per position of the image
    from profilers.catalog import Config
    from profilers.measure.models.blocks import Norm

    seq = torch.nn.Sequential(torch.nn.Linear(8, 16), Norm("rmsnorm", 16, "native", Config()))
    assert [hooks.norm_kind(m) for _, m in hooks.norm_layers(seq)] == ["rmsnorm"]


@pytest.fixture(scope="module")
def profiled():
    torch.manual_seed(0)
    net = Net()
    it = iter(data(1, 5 + 40))
    ref = drift.record_windows(net, it, 1, 5)
    cal = drift.record_windows(net, it, 1, 40)
    profile = analysis.build_profile(drift.merge_windows(ref), cal, alpha=0.05, sample_rows=400, seed=0)
    return net, profile, ref


def test_identical_data_scores_below_threshold(profiled):
    _net, profile, ref = profiled
    s = analysis.score_window(profile, drift.merge_windows(ref))  # the reference data itself, checked again
    assert not s["alarm"] and s["model_score"] < s["model_threshold"]
    for name, lay in s["layers"].items():
        assert not lay["alarm"] and lay["score"] < lay["threshold"], name
        assert lay["components"]["smd_rms"] < 1e-9
        assert max(lay["components"][f"ks_{k}"] for k in analysis.ROW_STATS) < 0.1  # a 400-row sample of it


def test_a_shifted_mean_in_one_layers_input_is_detected_in_that_layer(profiled):
    net, profile, _ = profiled
    with torch.no_grad():
        net.fc2.bias += 1.5  # ln2's input moves; ln2 normalizes it away, so nothing after it does
    try:
        windows = drift.record_windows(net, data(99, 10), 1)
    finally:
        with torch.no_grad():
            net.fc2.bias -= 1.5
    summary = analysis.summarize(profile, [analysis.score_window(profile, w) for w in windows])
    assert summary["moved_most"][0] == "ln2"
    assert summary["layers"]["ln2"]["alarm_rate"] == 1.0
    assert summary["layers"]["ln1"]["alarm_rate"] <= 0.2 and summary["layers"]["rms"]["alarm_rate"] <= 0.2
    assert analysis.verdict(summary)["drift"]
    fresh = drift.record_windows(net, data(98, 10), 1)  # in distribution, unseen
    assert not analysis.verdict(analysis.summarize(profile, [analysis.score_window(profile, w) for w in fresh]))[
        "drift"
    ]


def test_a_model_is_loaded_only_through_an_import_path(tmp_path, monkeypatch):
    (tmp_path / "m_ok.py").write_text("import torch\ndef build(n='2'):\n    return torch.nn.LayerNorm(4), []\n")
    (tmp_path / "m_bad.py").write_text("def build():\n    return 'a model'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model, batches = hooks.load_model("m_ok:build", {"n": "3"})
    assert isinstance(model, torch.nn.LayerNorm) and list(batches) == []
    with pytest.raises(SpecError, match="must return \\(model, data iterator\\)"):
        hooks.load_model("m_bad:build")
    with pytest.raises(SpecError, match="has no function 'nope'"):
        hooks.load_model("m_ok:nope")
    with pytest.raises(SpecError, match="not an import path"):
        DriftSpec(action="profile", model="weights.pkl", profile="p.json")
    with pytest.raises(SpecError, match="KEY=VALUE"):
        parse_args(["novalue"])


def test_corruption_is_controlled_by_its_probability():
    text = "".join(random.Random(0).choice("abc ") for _ in range(4000))
    assert driftdemo.corrupt(text, 0.0, "xyz", 0) == text
    assert set(driftdemo.corrupt(text, 1.0, "xyz", 0)) <= set("xyz")
    changed = [sum(a != b for a, b in zip(text, driftdemo.corrupt(text, p, "xyz", 0))) for p in (0.01, 0.1, 0.4)]
    assert changed[0] < changed[1] < changed[2] and 0.3 < changed[2] / len(text) < 0.5


def test_spec_round_trips():
    spec = DriftSpec(action="check", model="pkg.mod:fn", args={"split": "new"}, profile="p.json", label="x")
    assert DriftSpec.from_json(spec.to_json()) == spec
    assert registry.get("drift").parse_spec(json.loads(spec.to_json())) == spec
    with pytest.raises(SpecError, match="needs --model"):
        DriftSpec(action="check", profile="p.json")


# -- the CLI --------------------------------------------------------------------------------------------------
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
    return net, [(torch.randn(32, 8, generator=g), None) for _ in range(30)]
"""


def test_cli_profile_then_check_then_refuse_a_bad_profile(tmp_path):
    (tmp_path / "mymodel.py").write_text(USER_MODULE)
    env = {"PYTHONPATH": str(tmp_path)}
    db, prof = tmp_path / "r.db", tmp_path / "profile.json"
    p = run_cli(
        "drift", "profile", "--model", "mymodel:build", "-o", str(prof), "--reference-windows", "5",
        "--calibration-windows", "20", "--alpha", "0.1", db=db, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert analysis.load_profile(prof)["meta"]["model"] == "mymodel:build"
    p = run_cli("drift", "check", str(prof), "--model", "mymodel:build", "--arg", "split=new", "--json", db=db, env=env)
    assert p.returncode == 0, p.stderr
    assert not json.loads(p.stdout)["verdict"]["drift"]
    p = run_cli(
        "drift", "check", str(prof), "--model", "mymodel:build", "--arg", "split=new", "--arg", "shift=2",
        "--fail-on-drift", db=db, env=env,
    )  # fmt: skip
    assert p.returncode == 3, p.stderr
    assert p.stdout.startswith("drift:") and "moved most: 3" in p.stdout
    with Store(db) as s:
        runs = s.list_runs(kind="drift")
        assert [r["spec"]["action"] for r in runs] == ["check", "check", "profile"]
        assert s.artifact(runs[0]["id"], "drift/check")["verdict"]["drift"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "normscope-drift-profile", "version": 1, "alpha": 0.1, "layers": []}')
    p = run_cli("drift", "check", str(bad), "--model", "mymodel:build", db=db, env=env)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "no layers" in p.stderr
    out = tmp_path / "run.json"
    assert run_cli("export", "1", "-o", str(out), db=db).returncode == 0
    p = run_cli("import", str(out), db=tmp_path / "other.db")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["profile", "--model", "mymodel:build"], "needs -o PROFILE.json"),
        (["profile", "--model", "nomodule_xyz:build", "-o", "TMP/p.json"], "cannot import"),
        (["profile", "--model", "mymodel:build", "-o", "TMP/p.json", "--alpha", "0.7"], "alpha"),
        (["check", "TMP/missing.json", "--model", "mymodel:build"], "no profile file"),
        (["demo", "--levels", "0.1,x"], "not a list of numbers"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, message):
    (tmp_path / "mymodel.py").write_text(USER_MODULE)
    db = tmp_path / "r.db"
    p = run_cli("drift", *[a.replace("TMP", str(tmp_path)) for a in args], db=db, env={"PYTHONPATH": str(tmp_path)})
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr
    if db.exists():
        with Store(db) as s:
            assert s.list_runs() == []


def test_conformal_threshold_false_alarm_rate_matches_its_stated_spread():
    """Over many calibrations on K null windows, the rate above the threshold has the stated mean and spread."""
    rng = np.random.default_rng(3)
    k_windows, alpha = 40, 0.1
    rates = [1.0 - analysis._conformal_quantile(rng.uniform(size=k_windows), alpha) for _ in range(3000)]
    mean, sd = analysis.calibration_spread(k_windows, alpha)
    assert mean <= alpha
    assert np.mean(rates) == pytest.approx(mean, abs=0.004) and np.std(rates) == pytest.approx(sd, rel=0.08)
