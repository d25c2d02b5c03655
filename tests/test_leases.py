"""Device leases on both back ends: one holder per device, overlapping CPU sets are one device, a dead local
holder is taken over at once, a remote one lapses on the database's clock, a lost lease stops its holder."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_cli

from profilers.store import Store, leases
from profilers.store.leases import Device, DeviceBusy


def _cpu(cpus: set[int], host: str | None = None) -> Device:
    import socket

    host = host or socket.gethostname()
    cs = frozenset(cpus)
    return Device("cpu", host, "cpu", f"{host}/cpu/{leases.cpu_ranges(cs)}", cs)


def test_cpu_ranges_round_trip():
    assert leases.cpu_ranges(frozenset({0, 1, 2, 5, 7, 8})) == "0-2,5,7-8"
    assert leases.parse_cpus("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}


def test_one_holder_per_device_and_overlapping_cpu_sets_are_one_device(any_store):
    with Store(any_store) as s:
        held = leases.acquire(s, _cpu({0, 1}), "sweep A")
        with pytest.raises(DeviceBusy, match=r"device cpu is busy: sweep A \(pid \d+\) is measuring on it"):
            leases.acquire(s, _cpu({0, 1}))
        with pytest.raises(DeviceBusy):
            leases.acquire(s, _cpu({1, 2}))  # shares CPU 1
        other = leases.acquire(s, _cpu({2, 3}))  # disjoint: another device
        assert {r["cpus"] for r in leases.holders(s)} == {"0-1", "2-3"}
        leases.release(s, held)
        leases.acquire(s, _cpu({1}))
        leases.release(s, other)


def test_a_remote_holder_lapses_on_the_database_clock(any_store):
    gpu = Device("cuda:0", "this-host", "cuda", "gpu/GPU-test-uuid")
    with Store(any_store) as s:
        now = s.dialect.epoch
        s.execute(
            "INSERT INTO leases (device, host, device_type, name, holder, pid, purpose, acquired_at, heartbeat_at, "
            f"expires_at) VALUES ('gpu/GPU-test-uuid', 'node-b', 'cuda', 'cuda:0', 'x', 4242, 'a grid', {now}, "
            f"{now}, {now} + 2)"
        )
        with pytest.raises(DeviceBusy, match=r"a grid \(pid 4242 on node-b; its lease lapses in [0-2] s"):
            leases.acquire(s, gpu)
        time.sleep(2.5)
        lease = leases.acquire(s, gpu)  # lapsed: taken
        assert [r["host"] for r in leases.holders(s, "cuda:0")] == ["this-host"]
        assert leases.renew(s, lease)


def test_a_dead_worker_s_lease_is_dropped_by_its_pid_and_start_and_the_device_is_free_at_once(any_store):
    """What a cluster sweep's driver does for a worker Ray says died: on another host, where its process
    cannot be checked, the lease would hold the device until it lapses."""
    gpu = Device("cuda:0", "this-host", "cuda", "gpu/GPU-dead-worker")
    with Store(any_store) as s:
        now = s.dialect.epoch
        s.execute(
            "INSERT INTO leases (device, host, device_type, name, holder, pid, pid_started, purpose, acquired_at, "
            f"heartbeat_at, expires_at) VALUES ('gpu/GPU-dead-worker', 'node-b', 'cuda', 'cuda:0', 'w', 4242, "
            f"1000.0, 'a cluster sweep', {now}, {now}, {now} + 60)"
        )
        with pytest.raises(DeviceBusy, match="a cluster sweep"):
            leases.acquire(s, gpu)
        assert leases.release_process(s, "node-b", 4242, 1500.0) == 0  # another process that reused the pid
        assert leases.release_process(s, "node-c", 4242, 1000.0) == 0  # another host's pid 4242
        assert [r["pid"] for r in leases.holders(s, "cuda:0")] == [4242]
        assert leases.release_process(s, "node-b", 4242, 1000.4) == 1
        assert leases.holders(s, "cuda:0") == []
        leases.release(s, leases.acquire(s, gpu))  # free at once, not in 60 s


_HOLDER = """
import sys, time
from profilers.store import Store, leases
with Store(sys.argv[1]) as s, leases.held(s, "cpu", "holder script"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(where: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, where],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def test_a_killed_holder_on_this_host_is_taken_over_at_once(any_store):
    proc = _holder(any_store)
    p = run_cli("run", "--shapes", "8x64", "--variants", "rmsnorm", "--impls", "native", db=any_store)
    assert p.returncode == 2 and "device cpu is busy: holder script" in p.stderr
    listed = run_cli("store", "leases", db=any_store)
    assert "holder script" in listed.stdout and str(proc.pid) in listed.stdout
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store(any_store) as s:
        lease = leases.acquire(s, "cpu")  # no wait for the lapse: its process is gone
        leases.release(s, lease)


def test_a_lease_renews_while_held_and_a_lost_one_stops_its_holder(any_store):
    proc = _holder(any_store, {"NORMSCOPE_LEASE_TTL_S": "1"})
    try:
        with Store(any_store) as s:
            (first,) = leases.holders(s)
            time.sleep(1.5)
            (later,) = leases.holders(s)
            assert later["expires_at"] > first["expires_at"]  # renewed: alive past its 1 s lifetime
            s.execute("UPDATE leases SET holder='someone-else'")  # as if it had lapsed and been taken
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGTERM
        assert "lapsed and was taken by another process" in proc.stderr.read()
    finally:
        proc.kill()
