"""`python -m profilers drift profile|check|demo`: a drift monitor from the statistics of every norm layer's input.

A user's model is named by an import path (``--model package.module:function``, a
function returning the model and a data iterator); NormScope runs that code and never
unpickles a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ...commands.base import UsageError
from ...runs import Outcome, stored_run
from ...spec import SpecError
from ...store import Store
from ...store.exchange import atomic_write, output_path
from . import analysis as analysis
from .spec import DriftSpec, parse_args, parse_levels

EXIT_DRIFT = 3


def register(sub: Any) -> None:
    p = sub.add_parser("drift", help="drift monitor: profile a model's norm inputs, check new data, or run the demo")
    actions = p.add_subparsers(dest="drift_action", required=True, parser_class=type(p))

    pr = actions.add_parser("profile", help="record norm-input statistics on reference data; write a profile")
    pr.add_argument("--model", help="package.module:function returning (model, data iterator), or 'demo'")
    pr.add_argument("--arg", action="append", metavar="KEY=VALUE", help="keyword argument for the model function")
    pr.add_argument("-o", "--output", help="the profile JSON file to write")
    pr.add_argument("--reference-windows", type=int, help="windows of reference data (default 20)")
    pr.add_argument("--calibration-windows", type=int, help="held-out in-distribution windows (default 200)")
    pr.add_argument("--window-batches", type=int, help="batches per window (default 1)")
    pr.add_argument("--alpha", type=float, help="false-alarm rate to calibrate to (default 0.05)")
    pr.add_argument("--sample-rows", type=int, help="rows of per-row statistics kept per layer (default 2000)")
    _common(pr)
    pr.set_defaults(handler=cmd_profile)

    ch = actions.add_parser("check", help="score new data against a profile (per layer, with the layers that moved)")
    ch.add_argument("profile_file", nargs="?", help="the profile JSON written by `drift profile`")
    ch.add_argument("--model", help="package.module:function returning (model, NEW data iterator), or 'demo'")
    ch.add_argument("--arg", action="append", metavar="KEY=VALUE", help="keyword argument for the model function")
    ch.add_argument("--windows", type=int, help="score at most this many windows (default: all the data)")
    ch.add_argument("--fail-on-drift", action="store_true", help=f"exit {EXIT_DRIFT} when drift is detected")
    _common(ch)
    ch.set_defaults(handler=cmd_check)

    de = actions.add_parser("demo", help="a language model on Shakespeare vs prose, code and corrupted text")
    de.add_argument("--steps", type=int, help="training steps of the demo model (default 800)")
    de.add_argument("--levels", help="corruption probabilities, comma list (default 0.01,0.02,0.05,0.1,0.2,0.4)")
    de.add_argument("--alpha", type=float, help="false-alarm rate to calibrate to (default 0.05)")
    de.add_argument("--reference-windows", type=int)
    de.add_argument("--calibration-windows", type=int)
    de.add_argument(
        "--test-windows", type=int, help="windows scored per shifted set (default 100; 4× that on held-out text)"
    )
    _common(de)
    de.set_defaults(handler=cmd_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--seed", type=int)
    p.add_argument("--label")
    p.add_argument("--spec", help="read the run from a JSON spec file (flags override it)")
    p.add_argument("--db", help="store path (default data/results.db or $NORMSCOPE_DB)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


_FLAGS = (
    "reference_windows",
    "calibration_windows",
    "window_batches",
    "alpha",
    "sample_rows",
    "windows",
    "steps",
    "test_windows",
    "device",
    "seed",
    "label",
    "model",
)


def spec_from_args(a: argparse.Namespace, action: str) -> DriftSpec:
    if a.spec:
        try:
            kw: dict[str, Any] = DriftSpec.from_json(Path(a.spec).read_text(encoding="utf-8")).to_dict()
        except OSError as e:
            raise SpecError(f"cannot read spec file {a.spec}: {e.strerror}") from None
        if kw["action"] != action:
            raise SpecError(f"the spec file is for drift {kw['action']}, not drift {action}")
    else:
        kw = {"action": action}
    for name in _FLAGS:
        if getattr(a, name, None) is not None:
            kw[name] = getattr(a, name)
    if getattr(a, "arg", None):
        kw["args"] = parse_args(a.arg)
    if getattr(a, "levels", None) is not None:
        kw["levels"] = list(parse_levels(a.levels))
    if action == "profile" and a.output is not None:
        kw["profile"] = a.output
    if action == "check" and a.profile_file is not None:
        kw["profile"] = a.profile_file
    return DriftSpec.from_dict(kw)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _need_corpus(spec: DriftSpec) -> None:
    if spec.action == "demo" or spec.model == "demo":
        from ... import corpus

        try:
            corpus.shakespeare()
        except corpus.CorpusError as e:
            raise UsageError(str(e)) from None


def _provenance(spec: DriftSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    from ...measure.machine import provenance

    return provenance.machine(spec.device), provenance.versions()


def cmd_profile(a: argparse.Namespace) -> int:
    spec = spec_from_args(a, "profile")
    out = output_path(spec.profile, "profile.json")
    _need_corpus(spec)
    from . import measure as drift
    from .measure_demo import resolve

    model, data = resolve(spec.model, spec.args)
    model.to(spec.device)
    _say(f"recording {spec.reference_windows} reference and {spec.calibration_windows} calibration windows …")
    it = iter(data)
    ref = drift.record_windows(model, it, spec.window_batches, spec.reference_windows)
    cal = drift.record_windows(model, it, spec.window_batches, spec.calibration_windows)
    if len(ref) < spec.reference_windows:
        raise UsageError(
            f"the data gave {len(ref)} of {spec.reference_windows} reference windows: give more data or fewer "
            "--reference-windows"
        )
    meta = {"model": spec.model, "args": spec.args, "window_batches": spec.window_batches}
    try:
        profile = analysis.build_profile(drift.merge_windows(ref), cal, spec.alpha, spec.sample_rows, spec.seed, meta)
    except analysis.ProfileError as e:
        raise UsageError(str(e)) from None
    machine, versions = _provenance(spec)
    profile["meta"].update(created_with=versions.get("normscope_commit"), torch=versions.get("torch"))
    text = analysis.profile_json(profile)
    with Store(a.db) as store:
        run_id = store.create_run(spec, machine, versions, 0, label=spec.label, kind="drift")
        with stored_run(store, outcome := Outcome(run_id)):
            store.put_artifact(run_id, "drift/profile", profile)
            atomic_write(out, lambda p: p.write_text(text, encoding="utf-8"))
    if outcome.status != "completed":
        return _ended(outcome, store.where)
    _say(
        f"wrote {out}: {len(profile['layers'])} norm layers, thresholds calibrated on {len(cal)} held-out windows "
        f"to a {spec.alpha:g} false-alarm rate; run {run_id} in {store.where}"
    )
    if a.json:
        json.dump(
            {
                "run_id": run_id,
                "profile": str(out),
                "layers": [x["name"] for x in profile["layers"]],
                "calibration": profile["calibration"],
            },
            sys.stdout,
            indent=1,
        )
        sys.stdout.write("\n")
    else:
        for lay in profile["layers"]:
            print(
                f"{lay['name']:<40} {lay['kind']:<12} {lay['channels']:>6} channels  "
                f"threshold {profile['calibration']['layer_threshold'][lay['name']]:.2f}"
            )
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    spec = spec_from_args(a, "check")
    try:
        profile = analysis.load_profile(spec.profile)
    except analysis.ProfileError as e:
        raise UsageError(str(e)) from None
    _need_corpus(spec)
    from . import measure as drift
    from .measure_demo import resolve

    model, data = resolve(spec.model, spec.args)
    model.to(spec.device)
    window_batches = int(profile["meta"].get("window_batches") or spec.window_batches)
    windows = drift.record_windows(model, data, window_batches, spec.windows)
    try:
        scored = [analysis.score_window(profile, w) for w in windows]
        summary = analysis.summarize(profile, scored)
    except analysis.ProfileError as e:
        raise UsageError(str(e)) from None
    summary["verdict"] = analysis.verdict(summary)
    summary["model_scores"] = [s["model_score"] for s in scored]
    summary["top_channels"] = {n: scored[-1]["layers"][n]["top_channels"] for n in summary["layers"]}
    machine, versions = _provenance(spec)
    with Store(a.db) as store:
        run_id = store.create_run(spec, machine, versions, 0, label=spec.label, kind="drift")
        with stored_run(store, outcome := Outcome(run_id)):
            store.put_artifact(run_id, "drift/profile", profile)
            store.put_artifact(run_id, "drift/check", summary)
    if outcome.status != "completed":
        return _ended(outcome, store.where)
    _say(f"run {run_id} in {store.where}")
    if a.json:
        json.dump({"run_id": run_id, **summary}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(summary["verdict"]["text"])
        print(f"{'layer':<40} {'mean score':>10} {'threshold':>10} {'alarm rate':>11}")
        for name in sorted(summary["layers"], key=lambda n: summary["layers"][n]["mean_score"], reverse=True):
            lay = summary["layers"][name]
            print(f"{name:<40} {lay['mean_score']:>10.2f} {lay['threshold']:>10.2f} {lay['alarm_rate']:>10.0%}")
    return EXIT_DRIFT if a.fail_on_drift and summary["verdict"]["drift"] else 0


def _ended(outcome: Outcome, path: Any) -> int:
    """A drift run that did not complete (cancelled, failed): one line, and its exit code."""
    _say(f"run {outcome.run_id} {outcome.status}" + (f": {outcome.error}" if outcome.error else "") + f"; store {path}")
    return outcome.exit_code


def cmd_demo(a: argparse.Namespace) -> int:
    spec = spec_from_args(a, "demo")
    _need_corpus(spec)
    from . import measure_demo as driftdemo

    machine, versions = _provenance(spec)
    with Store(a.db) as store:
        run_id = store.create_run(spec, machine, versions, 0, label=spec.label, kind="drift")

        def say(text: str) -> None:
            _say(text)
            store.update_run(run_id, extra={"stage": text})

        doc = None
        with stored_run(store, outcome := Outcome(run_id)):
            try:
                doc = driftdemo.run_demo(spec, say)
            except SpecError as e:  # refused on the way (a corpus too short): the run says why
                outcome.status, outcome.error = "failed", str(e)
            else:
                store.put_artifact(run_id, "drift/profile", doc.pop("profile"))
                store.put_artifact(run_id, "drift/demo", doc)
    if doc is None:
        return _ended(outcome, store.where)
    _say(f"run {run_id} {outcome.status}; store {store.where}")
    if a.json:
        json.dump({"run_id": run_id, **doc}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(demo_table(doc))
    return 0


def demo_table(doc: dict[str, Any]) -> str:
    """The demo's result as text: false alarms on held-out Shakespeare, detection per set and corruption level."""
    m = doc["model"]
    val = "N/A" if m.get("val_loss") is None else f"{m['val_loss']:.2f}"
    lines = [
        f"model: {m['how']}; {m['parameters']:,} parameters; held-out loss {val} nats (letter frequencies alone: "
        f"{m['unigram_nats']:.2f}); trained in {m['train_s']:.0f} s",
        f"threshold calibrated to a {doc['alpha']:.0%} false-alarm rate on held-out Shakespeare windows",
        f"{'set':<22} {'windows':>7} {'alarm rate':>11} {'mean score':>11}  layers that moved most",
    ]
    for s in doc["sets"]:
        name = f"corrupt p={s['level']:g}" if s["level"] is not None else s["set"]
        role = " (false alarms)" if s["set"] == "heldout" else ""
        lines.append(
            f"{name + role:<22} {s['windows']:>7} {s['alarm_rate']:>10.1%} {s['mean_model_score']:>11.2f}  "
            + ", ".join(s["moved_most"])
        )
    lines.append(
        f"model threshold {doc['sets'][0]['model_threshold']:.2f} (standardized score); {doc['seconds']:.0f} s in all"
    )
    return "\n".join(lines)
