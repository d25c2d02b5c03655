"""CPU pages: the run asks for huge pages before torch loads, records what held, and says why when it differs."""

import pytest
from conftest import run_cli, run_json

from profilers.analysis.method import allocator_short, cpu_memory_lines, differences, pages_mode, pages_note
from profilers.catalog import TIMED_STATUSES as TIMED
from profilers.measure.machine import hugepages
from profilers.spec import SpecError, SweepSpec
from profilers.store import Store

SMAPS = """\
5600abef2000-5600ac6f2000 rw-p 00000000 00:00 0                          [heap]
Size:               8192 kB
AnonHugePages:      6144 kB
THPeligible:    1
VmFlags: rd wr mr mw me ac hg
7f4d8a029000-7f4d8cc00000 rw-p 00000000 00:00 0
Size:              44892 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me ac
"""


def test_the_mapping_holding_an_address_is_read_from_smaps():
    heap = hugepages._vma(0x5600ABEF2000 + 4096, SMAPS)
    assert heap["range"] == "5600abef2000-5600ac6f2000" and "hg" in heap["VmFlags"].split()
    assert heap["AnonHugePages"] == "6144 kB"
    other = hugepages._vma(0x7F4D8A029000, SMAPS)
    assert "hg" not in other["VmFlags"].split()
    assert hugepages._vma(0x1000, SMAPS) == {}


def test_kernel_setting_is_the_bracketed_word(tmp_path):
    f = tmp_path / "enabled"
    f.write_text("always [madvise] never\n")
    assert hugepages.kernel_thp(f) == "madvise"
    f.write_text("[never]\n")
    assert hugepages.kernel_thp(f) == "never"
    assert hugepages.kernel_thp(tmp_path / "missing") is None


ADVISED = {"advised": True, "mapping_huge_kib": 6144}
PLAIN = {"advised": False, "mapping_huge_kib": 0}


@pytest.mark.parametrize(
    ("requested", "thp", "probe", "mode", "why"),
    [
        ("huge", "madvise", ADVISED, "huge", None),
        ("huge", "always", ADVISED, "huge", None),
        ("huge", "madvise", PLAIN, "base", "it allocated before THP_MEM_ALLOC_ENABLE=1 was set"),
        ("huge", "madvise", {"advised": True, "mapping_huge_kib": 0}, "base", "backed it with 4 KiB pages"),
        ("huge", "madvise", {"advised": None, "reason": "the probe tensor's mapping is not in x"}, "base", "not in x"),
        ("huge", "never", PLAIN, "base", "transparent huge pages are off (never)"),
        ("huge", None, PLAIN, "base", "unreadable"),
        ("huge", "madvise", {"advised": None, "reason": "/proc/self/smaps unreadable"}, "base", "smaps unreadable"),
        ("base", "madvise", PLAIN, "base", None),
        ("base", "madvise", ADVISED, "huge", "was set before torch loaded"),
    ],
)
def test_the_recorded_mode_is_what_held_with_the_reason(requested, thp, probe, mode, why, monkeypatch):
    monkeypatch.setattr(hugepages, "kernel_thp", lambda: thp)
    got = hugepages.state(requested, probe=probe)
    assert got["mode"] == mode and got["requested"] == requested and got["probe"] == probe
    if why is None:
        assert "reason" not in got
    else:
        assert why in got["reason"]


def test_request_sets_and_clears_torchs_variable(monkeypatch):
    monkeypatch.delenv(hugepages.ENV, raising=False)
    hugepages.request("huge")
    import os

    assert os.environ[hugepages.ENV] == "1"
    hugepages.request("base")
    assert hugepages.ENV not in os.environ


def test_spec_refuses_an_unknown_page_mode_and_round_trips():
    base = {"variants": ["layernorm"], "impls": ["native"], "dtypes": ["fp32"], "modes": ["fwd"], "shapes": [[16, 64]]}
    with pytest.raises(SpecError, match="use huge or base"):
        SweepSpec.from_dict({**base, "cpu_pages": "giant"})
    spec = SweepSpec.from_dict({**base, "cpu_pages": "base"})
    assert SweepSpec.from_json(spec.to_json()).cpu_pages == "base"
    assert SweepSpec.from_dict(base).cpu_pages == "huge"


def _run(mode: str | None) -> dict:
    spec = {"device": "cpu", "cpu_allocator": "reuse"}
    machine = (
        {}
        if mode is None
        else {"cpu_pages": {"mode": mode, "requested": "huge"}, "cpu_placement": {"mode": "per round"}}
    )
    return {"spec": spec, "machine": machine}


def test_page_mode_is_a_method_field_and_older_runs_are_base():
    assert pages_mode(_run(None)) == "base"  # before the setting existed: torch's default placement
    assert pages_mode({"spec": {"device": "cuda:0"}, "machine": {}}) is None
    assert "CPU pages huge vs base" in differences(_run("huge"), _run("base"))
    assert not [d for d in differences(_run("huge"), _run("huge")) if d.startswith("CPU pages")]
    assert allocator_short(_run("huge")).endswith(", huge pages")
    held = {"spec": {"device": "cpu"}, "machine": {"cpu_pages": {"mode": "base", "requested": "huge", "reason": "x"}}}
    assert pages_note(held) == "huge pages were asked for, base held: x"
    older = dict(cpu_memory_lines(_run(None)))  # a run from before pages and placement were recorded
    assert older["CPU pages"].startswith("base (not recorded")
    assert older["CPU placement"].startswith("one per process (inputs allocated once")
    assert "CPU placement one per process vs per round" in differences(
        _run(None), {**_run(None), "machine": {"cpu_placement": {"mode": "per round"}}}
    )
    assert cpu_memory_lines({"spec": {"device": "cuda:0"}, "machine": {}}) == []


@pytest.mark.skipif(hugepages.kernel_thp() not in ("always", "madvise"), reason="the kernel's huge pages are off")
@pytest.mark.slow  # a sweep per page mode through the CLI
def test_cli_run_holds_the_page_mode_it_asked_for(db):
    tiny = ("--shapes", "16x64", "--variants", "layernorm", "--impls", "native", "--budget-ms", "5")
    for mode, advised in (("huge", True), ("base", False)):
        doc = run_json("run", *tiny, "--cpu-pages", mode, db=db)
        with Store(db) as s:
            pages = s.get_run(doc["run_id"])["machine"]["cpu_pages"]
        assert pages["mode"] == mode and pages["requested"] == mode and "reason" not in pages, pages
        assert pages["probe"]["advised"] is advised


def test_cli_refuses_an_unknown_page_mode_with_exit_2(db):
    p = run_cli("run", "--shapes", "16x64", "--cpu-pages", "giant", db=db)
    assert p.returncode == 2 and "--cpu-pages" in p.stderr


def test_each_round_moves_the_inputs_once_and_keeps_their_values():
    import torch

    from profilers.measure.machine.placement import SPACER_PAGES, Placement

    x = torch.randn(64, 32, requires_grad=True)
    shared = [x, torch.randn(32)]
    pl = Placement(torch.device("cpu"), seed=3, input_lists=[shared, shared, None])  # None: a bwd point's
    pl.new_round(0)
    first = shared[0]
    assert first is not x and torch.equal(first, x) and first.requires_grad and first.is_leaf
    assert first.data_ptr() != x.data_ptr()
    pl.new_round(0)  # re-queued visits of the same round: no move
    assert shared[0] is first
    pl.new_round(1)
    assert shared[0] is not first and torch.equal(shared[0], x)
    again = Placement(torch.device("cpu"), seed=3, input_lists=[[torch.zeros(2)]])
    again.new_round(0)
    again.new_round(1)
    assert again.spacer_pages == pl.spacer_pages  # seeded
    assert all(SPACER_PAGES[0] <= k <= SPACER_PAGES[1] for k in pl.spacer_pages)
    assert pl.describe()["spacer_pages"] == pl.spacer_pages
    off = Placement(torch.device("meta"), seed=3, input_lists=[shared])
    off.new_round(0)
    assert off.describe() is None and off.spacer_pages == []


@pytest.mark.slow
def test_cli_placement_per_round_is_recorded_and_fixed_is_a_method_difference(db):
    tiny = ("--shapes", "16x64", "--variants", "layernorm,rmsnorm", "--impls", "native", "--budget-ms", "5")
    tiny += ("--rounds", "3", "--ci-target-pct", "50")
    moved = run_json("run", *tiny, db=db)
    fixed = run_json("run", *tiny, "--cpu-placement", "fixed", db=db)
    with Store(db) as s:
        a, b = s.get_run(moved["run_id"]), s.get_run(fixed["run_id"])
        pts_a, pts_b = s.points(a["id"]), s.points(b["id"])
    assert (
        a["machine"]["cpu_placement"]["mode"] == "per round"
        and b["machine"]["cpu_placement"]["mode"] == "one per process"
    )
    assert all(len(p["extra"]["placement"]["spacer_pages"]) == p["rounds"] for p in pts_a)
    assert not any("placement" in p["extra"] for p in pts_b)
    # compiled code and training modes keep working when their inputs move each round; a bwd point's stay
    doc = run_json(
        "run",
        "--shapes",
        "16x64",
        "--variants",
        "rmsnorm",
        "--impls",
        "native,compiled",
        "--modes",
        "fwdbwd,bwd",
        "--budget-ms",
        "5",
        "--rounds",
        "3",
        "--ci-target-pct",
        "50",
        db=db,
    )
    with Store(db) as s:
        pts = s.points(doc["run_id"])
    assert len(pts) == 4 and all(p["status"] in TIMED for p in pts), [(p["status"], p["error"]) for p in pts]
    how = {p["mode"]: p["extra"]["placement"]["method"] for p in pts}
    assert how["fwdbwd"].startswith("inputs and upstream gradients copied") and how["bwd"].startswith("a random")
    assert "CPU placement per round vs one per process" in differences(a, b)
    assert allocator_short(b).endswith(", fixed placement") and not allocator_short(a).endswith("placement")
    p = run_cli("run", "--shapes", "16x64", "--cpu-placement", "scattered", db=db)
    assert p.returncode == 2 and "--cpu-placement" in p.stderr
    with pytest.raises(SpecError, match="use round or fixed"):
        SweepSpec.from_dict(
            {
                "variants": ["layernorm"],
                "impls": ["native"],
                "dtypes": ["fp32"],
                "modes": ["fwd"],
                "shapes": [[16, 64]],
                "cpu_placement": "scattered",
            }
        )
