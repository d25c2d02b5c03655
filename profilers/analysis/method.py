"""How a run measured: the method fields that must match before two runs' numbers are compared.

A number is only comparable with another taken the same way. These fields are
read from the stored run as it was recorded (an older run without rounds says
so, it is not given today's defaults), and ``differences`` names every field in
which two runs differ, so Compare and Recommend can say so instead of flagging
a "regression" that is a change of method.
"""

from __future__ import annotations

from typing import Any

from ..catalog import label
from ..spec import CPU_ALLOCATORS


def _is_cpu(run: dict[str, Any]) -> bool:
    return str((run.get("spec") or {}).get("device", "cpu")).startswith("cpu")


def _recorded_mode(run: dict[str, Any], key: str) -> Any:
    """The machine record ``key``: its mode where it is a dict with one, else the record itself (or None)."""
    recorded = (run.get("machine") or {}).get(key)
    if isinstance(recorded, dict):
        return str(recorded["mode"]) if recorded.get("mode") else None
    return recorded


def allocator_mode(run: dict[str, Any]) -> str | None:
    """reuse | system for a CPU run (older runs recorded a sentence), None for a GPU run."""
    if not _is_cpu(run):
        return None
    recorded = _recorded_mode(run, "cpu_allocator")
    if isinstance(recorded, str) and recorded not in ("reuse", "system"):
        return "reuse" if "freed memory reused" in recorded else "system"
    return recorded or (run.get("spec") or {}).get("cpu_allocator")


def pages_mode(run: dict[str, Any]) -> str | None:
    """huge | base for a CPU run, None for a GPU run; a run from before the setting existed is base (torch's
    default placement, which those runs used)."""
    return (_recorded_mode(run, "cpu_pages") or "base") if _is_cpu(run) else None


def placement_mode(run: dict[str, Any]) -> str | None:
    """'per round' (inputs re-placed each round) or 'one per process' (runs from before) for a CPU run."""
    return (_recorded_mode(run, "cpu_placement") or "one per process") if _is_cpu(run) else None


def pages_note(run: dict[str, Any]) -> str | None:
    """Why a CPU run's pages differ from what it asked for (None when they do not, or it did not record)."""
    recorded = (run.get("machine") or {}).get("cpu_pages")
    if isinstance(recorded, dict) and recorded.get("reason"):
        return f"{recorded.get('requested')} pages were asked for, {recorded.get('mode')} held: {recorded['reason']}"
    return None


def preloaded(run: dict[str, Any]) -> str | None:
    recorded = (run.get("machine") or {}).get("cpu_allocator")
    return recorded.get("preloaded") if isinstance(recorded, dict) else None


def method_of(run: dict[str, Any]) -> dict[str, Any]:
    """The fields that define how a run's numbers were taken (None where the run did not record one)."""
    spec, machine, versions = run.get("spec") or {}, run.get("machine") or {}, run.get("versions") or {}
    device = str(spec.get("device", "cpu"))
    if device.startswith("cpu"):
        timer = "cpu_blocks"
    elif spec.get("cuda_graph"):
        timer = "cuda_graph"
    elif machine.get("timing_method"):  # recorded since cold calls could be queued behind a spin kernel
        timer = machine["timing_method"]
    else:  # older runs timed cold calls as launched
        timer = "cuda_event_flush" if spec.get("cache_state", "cold") == "cold" else "cuda_event_queued"
    return {
        "timer": timer,
        "cache state": spec.get("cache_state") or ("warm" if device.startswith("cpu") else "cold"),
        "budget": f"{spec.get('budget_ms'):g} ms" if spec.get("budget_ms") else None,
        "warmup": f"{spec.get('warmup_ms'):g} ms" if spec.get("warmup_ms") else None,
        "rounds": f"{spec['rounds']} interleaved rounds, ±{spec.get('ci_target_pct', 3):g}% target"
        if spec.get("rounds")
        else "one window per point (no rounds)",
        "threads": spec.get("threads") or machine.get("threads") or machine.get("cpu_cores_logical"),
        "CPU allocator": allocator_mode(run),
        "CPU pages": pages_mode(run),
        "CPU placement": placement_mode(run),
        "processes": (
            f"{spec.get('processes') or 1} fresh process{'es' if (spec.get('processes') or 1) > 1 else ''}"
            if device.startswith("cpu")
            else None
        ),
        "flush": spec.get("flush", "zero") if timer.startswith("cuda_event_flush") else None,
        "torch": versions.get("torch"),
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'budget 100 ms vs 1000 ms', … for every method field in which run ``a`` and run ``b`` differ."""
    ma, mb = method_of(a), method_of(b)
    return [f"{k} {ma[k]} vs {mb[k]}" for k in ma if ma[k] != mb[k] and not (ma[k] is None or mb[k] is None)]


def allocator_short(run: dict[str, Any]) -> str | None:
    """'CPU allocator: reuse, huge pages' (a chart subtitle; ', fixed placement' where rounds did not move the
    inputs), or None for GPU runs. Reports answer each distinct text apart."""
    mode = allocator_mode(run)
    if mode is None:
        return None
    return (
        f"CPU allocator: {mode}"
        + (f" ({preloaded(run)} preloaded)" if preloaded(run) else "")
        + f", {pages_mode(run)} pages"
        + (", fixed placement" if placement_mode(run) == "one per process" else "")
    )


def allocator_sentence(run: dict[str, Any]) -> str | None:
    """One line on the CPU allocator, pages and placement behind a CPU run's numbers; None for GPU runs."""
    return ". ".join(f"{field}: {text}" for field, text in cpu_memory_lines(run)) or None


def cpu_memory_lines(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, text) for the CPU allocator, pages and placement behind a CPU run; empty for a GPU run."""
    mode = allocator_mode(run)
    if mode is None:
        return []
    machine = run.get("machine") or {}
    alloc = machine.get("cpu_allocator")
    effect = alloc.get("effect") if isinstance(alloc, dict) else None
    pre = preloaded(run)
    lines = [
        (
            "CPU allocator",
            f"{mode} ({effect or CPU_ALLOCATORS.get(mode, mode)})" + (f"; {pre} was preloaded" if pre else ""),
        )
    ]
    pages, pages_rec = pages_mode(run), machine.get("cpu_pages")
    effect = pages_rec.get("effect") if isinstance(pages_rec, dict) else "not recorded: torch's default placement"
    lines.append(("CPU pages", f"{pages} ({effect})" + (f"; {pages_note(run)}" if pages_note(run) else "")))
    placed = machine.get("cpu_placement")
    lines.append(
        (
            "CPU placement",
            f"{placement_mode(run)} ({placed['method']})"
            if isinstance(placed, dict) and placed.get("method")
            else f"{placement_mode(run)} (inputs allocated once; the process's placement for every round)",
        )
    )
    return lines


def allocator_effect(runs: list[dict[str, Any]], points: list[dict[str, Any]]) -> list[str]:
    """Sentences on the CPU allocator's effect where runs of both modes measured the same points.

    Points are matched on (host, variant, impl, dtype, mode, tokens, hidden) between a ``reuse`` run and a
    ``system`` run whose other method fields are the same; the allocator's effect (the larger p50 over the
    smaller, per matched point) is set beside the norm choice's (the slowest over the fastest variant at one
    shape and implementation, within one mode). Empty when no run pair qualifies.
    """
    by_id = {r["id"]: r for r in runs}
    modes = {i: allocator_mode(r) for i, r in by_id.items()}
    if not {"reuse", "system"} <= set(modes.values()):
        return []
    timed = [p for p in points if p.get("p50_us") and p.get("status") in ("ok", "imprecise", "unstable")]

    def key(p: dict[str, Any]) -> tuple:
        host = (by_id[p["run_id"]].get("machine") or {}).get("hostname")
        return (host, p["variant"], p["impl"], p["dtype"], p["mode"], p["tokens"], p["hidden"])

    def same_method(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return all(d.startswith("CPU allocator") for d in differences(a, b))

    by_mode: dict[str, dict[tuple, list[float]]] = {"reuse": {}, "system": {}}
    reuse_runs = [i for i, m in modes.items() if m == "reuse"]
    system_runs = [i for i, m in modes.items() if m == "system"]
    pairs = [(a, b) for a in reuse_runs for b in system_runs if same_method(by_id[a], by_id[b])]
    if not pairs:
        return []
    used = {i for pair in pairs for i in pair}
    for p in timed:
        if p["run_id"] in used:
            by_mode[modes[p["run_id"]]].setdefault(key(p), []).append(float(p["p50_us"]))
    med = {m: {k: sorted(v)[len(v) // 2] for k, v in d.items()} for m, d in by_mode.items()}
    common = sorted(set(med["reuse"]) & set(med["system"]), key=str)
    if not common:
        return []
    out = []
    variants = dict.fromkeys((k[1], k[2]) for k in common)
    for variant, impl in variants:
        ks = [k for k in common if (k[1], k[2]) == (variant, impl)]
        eff = [max(med["system"][k], med["reuse"][k]) / min(med["system"][k], med["reuse"][k]) for k in ks]
        worst = max(range(len(ks)), key=eff.__getitem__)
        k = ks[worst]
        slower = "system" if med["system"][k] > med["reuse"][k] else "reuse"
        out.append(
            f"{label(variant, impl)}: the allocator changes its time by up to {eff[worst]:.2f}× "
            f"({k[5]}×{k[6]} {k[3]} {k[4]}, slower with {slower}) over {len(ks)} matched point(s)"
        )
    # the norm choice's spread, per mode and matched shape × impl × dtype × mode
    spread = 1.0
    for m in ("reuse", "system"):
        groups: dict[tuple, list[float]] = {}
        for k in common:
            groups.setdefault((k[0], k[2], k[3], k[4], k[5], k[6]), []).append(med[m][k])
        for vals in groups.values():
            if len(vals) > 1:
                spread = max(spread, max(vals) / min(vals))
    top = max(max(med["system"][k], med["reuse"][k]) / min(med["system"][k], med["reuse"][k]) for k in common)
    if spread > 1.0:
        verdict = "more than" if top > spread else "less than"
        out.append(
            f"On this machine the allocator changes a norm's time by up to {top:.2f}×: {verdict} the choice of "
            f"norm, which changes it by up to {spread:.2f}× in these points."
        )
    return out
