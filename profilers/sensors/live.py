"""Live sensor readings for people: one snapshot of every sensor, and the `sensors` CLI loop (no torch)."""

from __future__ import annotations

import sys
import time
from typing import Any

from . import Reading
from .host import Host
from .nvml import Nvml


def na_text(value: Any, reason: str | None = None, fmt: str = "{}") -> str:
    """A reading as text for the terminal; missing is N/A with its reason, never 0."""
    if value is None:
        return f"N/A ({reason})" if reason else "N/A"
    return fmt.format(value)


def reading_dict(**readings: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, r in readings.items():
        out[k] = r.value
        if not r.ok:
            out[f"{k}_reason"] = r.reason
    return out


def snapshot(nvml: Nvml, host: Host) -> dict[str, Any]:
    """One reading of every live sensor; each value or None with its reason."""
    gpus = []
    for g in nvml.gpus():
        d = {"nvml_index": g.index, "name": g.name().value}
        d.update(
            reading_dict(
                power_instant_w=g.power_instant_w(),
                power_avg_1s_w=g.power_avg_1s_w(),
                sm_clock_mhz=g.sm_clock_mhz(),
                utilization_pct=g.utilization_pct(),
                temperature_c=g.temperature_c(),
                memory_used_bytes=g.memory_used_bytes(),
                memory_total_bytes=g.memory_total_bytes(),
            )
        )
        gpus.append(d)
    return {
        "t": time.time(),
        "nvml": "available" if nvml.available else nvml.reason,
        "gpus": gpus,
        "host": reading_dict(
            cpu_util_pct=host.cpu_util_pct(),
            cpu_util_pct_per_core=host.cpu_util_pct_per_core(),
            cpu_freq_mhz=host.cpu_freq_mhz(),
            process_rss_bytes=host.process_rss_bytes(),
            memory_used_bytes=host.memory_used_bytes(),
            memory_total_bytes=host.memory_total_bytes(),
            temperatures_c=host.temperatures_c(),
        ),
    }


def format_snapshot(s: dict[str, Any]) -> str:
    lines = [time.strftime("%H:%M:%S", time.localtime(s["t"]))]
    if not s["gpus"]:
        lines.append(f"gpu    N/A ({s['nvml']})")
    for g in s["gpus"]:
        mem_used, mem_total = g["memory_used_bytes"], g["memory_total_bytes"]
        mem = f"{mem_used / 2**30:.1f}/{mem_total / 2**30:.0f} GiB" if mem_used is not None and mem_total else "N/A"
        lines.append(
            f"gpu{g['nvml_index']:<3} {g['name'] or 'N/A':<24} "
            f"{na_text(g['power_instant_w'], None, '{:.0f} W')} instant "
            f"({na_text(g['power_avg_1s_w'], None, '{:.0f} W')} 1 s avg)  "
            f"{na_text(g['sm_clock_mhz'], None, '{} MHz')}  {na_text(g['utilization_pct'], None, '{}%')} util  "
            f"{na_text(g['temperature_c'], None, '{} °C')}  {mem}"
        )
    h = s["host"]
    per = " ".join(f"{x:.0f}" for x in h["cpu_util_pct_per_core"] or [])
    lines.append(
        f"host   cpu {na_text(h['cpu_util_pct'], None, '{:.0f}%')} (cores {per})  "
        f"{na_text(h['cpu_freq_mhz'], h.get('cpu_freq_mhz_reason'), '{:.0f} MHz')}  "
        f"mem {na_text(h['memory_used_bytes'] and h['memory_used_bytes'] / 2**30, None, '{:.1f}')}"
        f"/{na_text(h['memory_total_bytes'] and h['memory_total_bytes'] / 2**30, None, '{:.1f}')} GiB  "
        f"temps {na_text(h['temperatures_c'], h.get('temperatures_c_reason'))}"
    )
    return "\n".join(lines)


def watch(interval_s: float, count: int | None, as_json: bool) -> None:
    """Print snapshots every ``interval_s`` until Ctrl-C (or ``count`` snapshots)."""
    import json

    nvml, host = Nvml(), Host()
    time.sleep(min(interval_s, 0.25))  # give CPU utilization an interval to average over
    tty = sys.stdout.isatty() and not as_json
    n = 0
    try:
        while count is None or n < count:
            if n:
                time.sleep(interval_s)
            s = snapshot(nvml, host)
            if as_json:
                print(json.dumps(s), flush=True)
            else:
                print(("\033[2J\033[H" if tty else "") + format_snapshot(s), flush=True)
            n += 1
    finally:
        nvml.close()
