import pytest

from profilers.measure.instruments import energy
from profilers.sensors.host import Rapl


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakeMeter:
    """A device drawing ``watts`` while a call runs and ``idle_w`` otherwise."""

    method = "fake_counter"
    reason = None

    def __init__(self, clock, watts):
        self.clock = clock
        self.watts = watts
        self.joules = 0.0

    def run(self, seconds):
        self.clock.t += seconds
        self.joules += self.watts * seconds

    def begin(self):
        return self.joules

    def end(self, token):
        return self.joules - token


def test_energy_arithmetic_per_call_per_token_and_dynamic():
    clock = Clock()
    meter = FakeMeter(clock, watts=100.0)
    r = energy.measure(
        lambda: meter.run(0.001),
        meter,
        tokens=4096,
        window_s=1.0,
        repeats=3,
        pause_s=0.1,
        idle_power_w=20.0,
        clock=clock,
        sleep=lambda s: None,
    )
    assert r.calls_per_repeat == 1000
    assert r.mj_per_call == pytest.approx(100.0)  # 100 W × 1 ms
    assert r.j_per_mtok == pytest.approx(0.1 / 4096 * 1e6)
    assert r.mean_power_w == pytest.approx(100.0)
    assert r.dynamic_mj_per_call == pytest.approx(80.0)  # minus 20 W idle × 1 ms
    assert r.spread_pct == pytest.approx(0.0, abs=1e-6)
    assert r.to_fields()["energy_method"] == "fake_counter"


def test_energy_spread_over_repeats():
    clock = Clock()
    meter = FakeMeter(clock, watts=100.0)
    watts = iter([100.0, 110.0])

    def sleep(_):
        meter.watts = next(watts)

    meter.watts = 90.0
    r = energy.measure(lambda: meter.run(0.01), meter, tokens=1, window_s=0.5, repeats=3, clock=clock, sleep=sleep)
    # per-call energies 900, 1000, 1100 mJ: spread (max - min) / median = 20%
    assert r.mj_per_call == pytest.approx(1000.0)
    assert r.spread_pct == pytest.approx(20.0)
    assert r.dynamic_mj_per_call is None


def test_idle_power():
    clock = Clock()
    meter = FakeMeter(clock, watts=73.0)
    assert energy.idle_power(meter, 2.0, sleep=meter.run, clock=clock) == pytest.approx(73.0)
    assert energy.idle_power(energy.NullMeter("no counter")) is None


def test_meter_refuses_when_unavailable():
    with pytest.raises(RuntimeError, match="no counter"):
        energy.measure(lambda: None, energy.NullMeter("no counter"), tokens=1)


def test_integrate_power_trapezoid():
    ts = [0.0, 1.0, 2.0]
    ws = [100.0, 200.0, 100.0]
    assert energy.integrate_power(ts, ws, 0.0, 2.0) == pytest.approx(300.0)
    assert energy.integrate_power(ts, ws, 0.5, 0.9) is None  # no samples inside


def test_choose_meter_order(tmp_path):
    from test_sensors import Nvml, _raise, fake_nvml, pynvml

    no_rapl = Rapl(tmp_path / "none")
    gpu = Nvml(fake_nvml()).gpus()[0]
    assert isinstance(energy.choose_meter("cuda", gpu, None, no_rapl), energy.NvmlCounterMeter)
    old = Nvml(fake_nvml(nvmlDeviceGetTotalEnergyConsumption=_raise(pynvml.NVML_ERROR_NOT_SUPPORTED))).gpus()[0]
    from profilers.sensors.sampler import Sampler

    sampled = energy.choose_meter("cuda", old, Sampler(old, None), no_rapl)
    assert isinstance(sampled, energy.SampledPowerMeter)  # pre-Volta: integrate instant power, and say so
    null = energy.choose_meter("cuda", old, None, no_rapl)
    assert isinstance(null, energy.NullMeter) and "not supported" in null.reason
    cpu = energy.choose_meter("cpu", None, None, no_rapl)
    assert isinstance(cpu, energy.NullMeter) and "RAPL" in cpu.reason
