"""Sensors with pynvml and psutil replaced by fakes: every N/A path, never a 0 for missing."""

import threading
from types import SimpleNamespace
from unittest import mock

import pynvml
import pytest

from profilers.sensors.host import Host, Rapl, wrap_delta
from profilers.sensors.nvml import FIELD_POWER_INSTANT, Nvml, normalize_uuid
from profilers.sensors.sampler import Sampler


def fake_nvml(**overrides):
    """An autospec'd pynvml with one healthy H100; overrides replace single functions."""
    lib = mock.create_autospec(pynvml, instance=False)
    lib.NVMLError = pynvml.NVMLError  # real exception classes and constants
    for name in dir(pynvml):
        if name.startswith("NVML_"):
            setattr(lib, name, getattr(pynvml, name))
    lib.nvmlDeviceGetCount.return_value = 1
    lib.nvmlDeviceGetHandleByIndex.return_value = "h0"
    lib.nvmlDeviceGetName.return_value = "NVIDIA H100 80GB HBM3"
    lib.nvmlDeviceGetUUID.return_value = "GPU-1234abcd-0000-1111-2222-333344445555"
    lib.nvmlSystemGetDriverVersion.return_value = "580.65.06"
    lib.nvmlSystemGetCudaDriverVersion.return_value = 13000
    lib.nvmlDeviceGetEnforcedPowerLimit.return_value = 700_000
    lib.nvmlDeviceGetPowerUsage.return_value = 512_345
    value = SimpleNamespace(uiVal=530_000)
    lib.nvmlDeviceGetFieldValues.return_value = [SimpleNamespace(nvmlReturn=0, value=value, fieldId=186)]
    lib.nvmlDeviceGetTotalEnergyConsumption.return_value = 123_456_789
    lib.nvmlDeviceGetMemoryInfo.return_value = SimpleNamespace(total=80 * 2**30, used=3 * 2**30, free=77 * 2**30)
    lib.nvmlDeviceGetClockInfo.return_value = 1980
    lib.nvmlDeviceGetUtilizationRates.return_value = SimpleNamespace(gpu=97, memory=80)
    lib.nvmlDeviceGetTemperature.return_value = 61
    for name, fn in overrides.items():
        setattr(lib, name, fn)
    return lib


def _raise(code):
    def f(*a, **k):
        raise pynvml.NVMLError(code)

    return mock.Mock(side_effect=f)


def test_supported_readings_have_units_in_names():
    nv = Nvml(fake_nvml())
    assert nv.available and nv.driver_version().value == "580.65.06"
    assert nv.cuda_driver_version().value == "13.0"
    (g,) = nv.gpus()
    assert g.name().value == "NVIDIA H100 80GB HBM3"
    assert g.power_limit_w().value == 700.0
    assert g.power_avg_1s_w().value == pytest.approx(512.345)
    assert g.power_instant_w().value == 530.0
    assert g.energy_mj().value == 123_456_789
    assert g.memory_total_bytes().value == 80 * 2**30
    assert g.sm_clock_mhz().value == 1980 and g.utilization_pct().value == 97 and g.temperature_c().value == 61
    nv.lib.nvmlDeviceGetFieldValues.assert_called_with("h0", [FIELD_POWER_INSTANT])


def test_not_supported_reading_is_none_with_reason():
    lib = fake_nvml(nvmlDeviceGetTotalEnergyConsumption=_raise(pynvml.NVML_ERROR_NOT_SUPPORTED))
    (g,) = Nvml(lib).gpus()
    r = g.energy_mj()
    assert r.value is None and "not supported" in r.reason
    assert g.power_limit_w().ok  # the others still read


def test_unsupported_field_value_is_none():
    lib = fake_nvml()
    lib.nvmlDeviceGetFieldValues.return_value = [SimpleNamespace(nvmlReturn=3, value=SimpleNamespace(uiVal=0))]
    r = Nvml(lib).gpus()[0].power_instant_w()
    assert r.value is None and "not supported" in r.reason


def test_permission_denied_is_none_with_reason():
    lib = fake_nvml(nvmlDeviceGetPowerUsage=_raise(pynvml.NVML_ERROR_NO_PERMISSION))
    r = Nvml(lib).gpus()[0].power_avg_1s_w()
    assert r.value is None and "permission" in r.reason


def test_no_driver_gives_null_nvml():
    lib = fake_nvml(nvmlInit=_raise(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    nv = Nvml(lib)
    assert not nv.available and "no NVIDIA driver" in nv.reason
    assert nv.gpus() == []
    assert nv.driver_version().value is None and nv.driver_version().reason == nv.reason


def test_gpus_are_matched_by_uuid_not_index():
    lib = fake_nvml()
    lib.nvmlDeviceGetCount.return_value = 2
    lib.nvmlDeviceGetHandleByIndex.side_effect = lambda i: f"h{i}"
    lib.nvmlDeviceGetUUID.side_effect = lambda h: {"h0": "GPU-aaaa", "h1": "GPU-bbbb"}[h]
    nv = Nvml(lib)
    assert nv.by_uuid("bbbb").index == 1  # torch's bare form
    assert nv.by_uuid("GPU-AAAA").index == 0
    assert nv.by_uuid("cccc") is None
    assert normalize_uuid("GPU-Ab") == "ab"


class FakePsutil:
    def __init__(self, temps=None, freq=2400.0):
        self._temps = temps
        self._freq = freq

    def Process(self, pid):
        return SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=123 * 2**20))

    def cpu_percent(self, interval=None, percpu=False):
        return [25.0, 75.0]

    def cpu_freq(self):
        return SimpleNamespace(current=self._freq) if self._freq else None

    def virtual_memory(self):
        return SimpleNamespace(total=16 * 2**30, available=10 * 2**30)

    def sensors_temperatures(self):
        return self._temps or {}


def test_host_readings_and_missing_ones(tmp_path):
    h = Host(FakePsutil(temps={"k10temp": [SimpleNamespace(label="Tctl", current=55.0)]}), rapl=Rapl(tmp_path / "x"))
    assert h.cpu_util_pct().value == 50.0
    assert h.cpu_util_pct_per_core().value == [25.0, 75.0]
    assert h.cpu_freq_mhz().value == 2400.0
    assert h.process_rss_bytes().value == 123 * 2**20
    assert h.memory_used_bytes().value == 6 * 2**30
    assert h.temperatures_c().value == {"k10temp/Tctl": 55.0}
    bare = Host(FakePsutil(temps={}, freq=None), rapl=Rapl(tmp_path / "x"))
    assert bare.cpu_freq_mhz().value is None and "frequency" in bare.cpu_freq_mhz().reason
    assert bare.temperatures_c().value is None and "no temperature sensors" in bare.temperatures_c().reason
    assert bare.cpu_package_power_source().value is None


def _powercap(root, energy_uj=1000, max_uj=2**32):
    for name, d in (("package-0", "intel-rapl:0"), ("core", "intel-rapl:0:0"), ("package-1", "intel-rapl:1")):
        p = root / d
        p.mkdir(parents=True)
        (p / "name").write_text(name + "\n")
        (p / "energy_uj").write_text(f"{energy_uj}\n")
        (p / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return root


def test_rapl_reads_package_domains_only(tmp_path):
    rapl = Rapl(_powercap(tmp_path / "powercap"))
    assert rapl.available
    assert [d.name for d in rapl.domains] == ["package-0", "package-1"]  # no overlapping core subdomain
    before = rapl.read_uj()
    (tmp_path / "powercap/intel-rapl:0/energy_uj").write_text("3001000\n")
    assert rapl.delta_j(before, rapl.read_uj()) == pytest.approx(3.0)


def test_rapl_wrap_around():
    assert wrap_delta(before=4_000, after=1_000, max_range=5_000) == 2_000
    assert wrap_delta(before=1_000, after=4_000, max_range=5_000) == 3_000


def test_rapl_absent_or_unreadable_has_reason(tmp_path, monkeypatch):
    assert "no" in Rapl(tmp_path / "nothing").reason
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no RAPL package domains" in Rapl(empty).reason
    root = _powercap(tmp_path / "pc")
    real = type(root).read_text

    def deny(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(type(root), "read_text", deny)
    r = Rapl(root)
    assert not r.available and "CVE-2020-8694" in r.reason


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_sampler_summary_and_columnar_series():
    lib = fake_nvml()
    gpu = Nvml(lib).gpus()[0]
    watts = iter([100_000, 200_000, 300_000, 400_000])
    lib.nvmlDeviceGetFieldValues.side_effect = lambda h, f: [
        SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(uiVal=next(watts)))
    ]
    lib.nvmlDeviceGetTemperature.side_effect = _raise(pynvml.NVML_ERROR_NOT_SUPPORTED).side_effect
    clock = FakeClock()
    s = Sampler(gpu, Host(FakePsutil()), period_s=0.1, clock=clock)
    for t in (0.0, 0.1, 0.2, 0.3):
        clock.t = t
        s.sample_once()
    summary = s.summary(0.05, 0.25)
    assert summary["samples"] == 2
    assert summary["gpu_power_instant_w"] == {"mean": 250.0, "max": 300.0}
    assert summary["gpu_temperature_c"] is None and "not supported" in summary["gpu_temperature_c_reason"]
    assert summary["host_cpu_util_pct"]["mean"] == 50.0
    series = s.series()
    assert series["t_s"] == [0.0, 0.1, 0.2, 0.3]
    assert series["gpu_power_instant_w"] == [100.0, 200.0, 300.0, 400.0]
    assert "gpu_temperature_c" not in series and "gpu_temperature_c" in series["reasons"]


def test_sampler_thread_samples_at_its_period():
    s = Sampler(None, Host(FakePsutil()), period_s=0.01).start()
    threading.Event().wait(0.2)
    s.stop()
    n = len(s.columns["t_s"])
    assert 3 <= n <= 30  # ~20 at 10 ms; a loaded CI machine may delay the thread
    assert not s._thread.is_alive()


def test_sampler_null_gpu_takes_the_same_path():
    s = Sampler(None, None, period_s=0.1)
    s.sample_once()
    assert s.summary(0, 1)["samples"] == 1
