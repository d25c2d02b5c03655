"""Hardware: what this machine has, and its sensors live (N/A with reasons where missing)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._shared import gpu_metrics, lab_live_panel, open_store, start_lab_job
from profilers import jobs
from profilers.analysis import rerun
from profilers.report import plots
from profilers.report.calibration import level_rows, states_line
from profilers.report.labels import na
from profilers.sensors.live import snapshot
from profilers.spec import CalibrationSpec

st.title("Hardware")


@st.cache_data(ttl=600, show_spinner="Reading the machine (torch, compilers, sensors)…")
def inventory() -> dict:
    return jobs.probe_environment()


try:
    info = inventory()
except jobs.ProbeError as e:
    st.error(str(e))
    st.stop()
m, v = info["machine"], info["versions"]
c = st.columns(4)
c[0].metric("CPU", m["cpu_model"])
c[1].metric("cores", f"{m['cpu_cores_physical']} / {m['cpu_cores_logical']}", help="physical / logical")
c[2].metric("memory", f"{m['ram_bytes'] / 2**30:.1f} GiB")
c[3].metric("torch", v["torch"])
nv, rapl, host = info["nvml"], info["rapl"], info["host"]
nvml_text = f"available, driver {nv.get('driver_version')}" if nv["available"] else f"N/A — {nv['reason']}"
rapl_text = "available" if rapl["available"] else f"N/A — {rapl['reason']}"
freq_text = na(host["cpu_freq_mhz"], "{:.0f} MHz", host.get("cpu_freq_mhz_reason"))
st.markdown(
    f"- NVML: {nvml_text}\n- RAPL (CPU energy): {rapl_text}\n"
    f"- torch.compile on CPU: {info['torch_compile_cpu']}\n- liger-kernel: {info['liger']}\n"
    f"- CPU frequency: {freq_text}"
)
if info["gpus"]:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "GPU": g.get("name"),
                    "UUID": g.get("uuid"),
                    "torch": g.get("torch_device") or "not visible",
                    "power limit": na(g.get("power_limit_w"), "{:.0f} W", g.get("power_limit_w_reason")),
                    "memory": na(g.get("memory_total_bytes") and g["memory_total_bytes"] / 2**30, "{:.0f} GiB"),
                    "energy counter": g.get("energy_counter"),
                }
                for g in info["gpus"]
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption(f"No GPU visible to NVML: {info['nvml']['reason'] or 'none found'}")

st.subheader("Ray cluster")
st.caption(
    "A sweep started on the Run page with “Ray cluster” spreads its groups over these devices: each GPU, or "
    "each node's CPUs. Listing the nodes joins the cluster from a separate process, never this server."
)
k1, k2 = st.columns([3, 1], vertical_alignment="bottom")
address = k1.text_input("Cluster address", "auto", help="auto: the cluster this host joined; or the head's HOST:PORT")
if k2.button("List its nodes", icon=":material/lan:", key="cluster-nodes"):
    try:
        st.session_state["cluster_nodes"] = jobs.probe_cluster(address.strip() or "auto")
    except jobs.ProbeError as e:
        st.session_state.pop("cluster_nodes", None)
        st.error(str(e))
found = st.session_state.get("cluster_nodes")
if found:
    rows = found["nodes"]
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "node": r["node"],
                    "id": r["node_id"],
                    "alive": "yes" if r["alive"] else "no",
                    "CPUs": r["cpus"],
                    "GPUs": r["gpus"],
                    "GPU kind": r["gpu_kind"] or "N/A — Ray reports none",
                    "memory": na(r["memory_gib"], "{:.1f} GiB"),
                }
                for r in rows
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    cpu, gpu = sum(r["cpu_sweep_devices"] for r in rows), sum(r["cuda_sweep_devices"] for r in rows)
    st.caption(f"At {found['address']}: a CPU sweep gets {cpu} device(s) (one per node), a CUDA sweep {gpu}.")

st.subheader("How far reruns move here")
st.caption(
    "A run's 95% interval covers its own moment; a rerun meets the machine in another state. The calibration "
    "times one small sweep in several fresh processes spread over minutes and measures what differs between "
    "them; later runs on this machine then state a rerun interval, where a rerun's ratio is expected to land."
)


@st.fragment(run_every=2.0)
def calibration_panel() -> None:
    with open_store() as store:
        doc, note = rerun.calibration_for(store, m, v)

    def status(run: dict) -> None:
        spread = (run.get("extra") or {}).get("progress") or {}
        st.markdown(f"**Calibration run {run['id']}** — process {spread.get('process', 1)} of {spread.get('of', '?')}")

    lab_live_panel("calibration", "calibrate", status, starting="Starting the calibration …")
    if doc:
        st.success(note[:1].upper() + note[1:] + ".", icon=":material/verified:")
        st.caption(states_line(doc))
        st.dataframe(pd.DataFrame(level_rows(doc)), hide_index=True, width="stretch")
    else:
        st.info(note[:1].upper() + note[1:] + ".", icon=":material/info:")


calibration_panel()
spec = CalibrationSpec()
# each run starts spread_s after the previous one began (or when it ends: ~15 s on the 2-core VM)
minutes = ((spec.runs - 1) * max(spec.spread_s, 15.0) + 15.0) / 60
if st.button(f"Calibrate this machine (about {minutes:.0f} min)", icon=":material/tune:", key="calibrate"):
    start_lab_job(spec, ("calibrate",), "calibrate")

st.subheader("Live sensors")
HISTORY = 120


@st.fragment(run_every=1.0)
def live() -> None:
    from profilers.sensors.host import Host
    from profilers.sensors.nvml import Nvml

    if "hw_sensors" not in st.session_state:
        st.session_state.hw_sensors = (Nvml(), Host())
        st.session_state.hw_history = []
    nv, host = st.session_state.hw_sensors
    s = snapshot(nv, host)
    hist = st.session_state.hw_history
    hist.append(s)
    del hist[:-HISTORY]
    t0 = hist[0]["t"]
    h = s["host"]
    c = st.columns(4)
    c[0].metric("CPU utilization", na(h["cpu_util_pct"], "{:.0f}%"))
    c[1].metric("CPU frequency", na(h["cpu_freq_mhz"], "{:.0f} MHz"), help=h.get("cpu_freq_mhz_reason"))
    c[2].metric("memory used", na(h["memory_used_bytes"] and h["memory_used_bytes"] / 2**30, "{:.1f} GiB"))
    c[3].metric(
        "temperatures",
        "N/A" if h["temperatures_c"] is None else f"{max(h['temperatures_c'].values()):.0f} °C",
        help=h.get("temperatures_c_reason") or ", ".join(f"{k}: {t:.0f} °C" for k, t in h["temperatures_c"].items()),
    )
    host_series = {"t_s": [x["t"] - t0 for x in hist], "cpu %": [x["host"]["cpu_util_pct"] for x in hist]}
    st.plotly_chart(plots.timeseries(host_series, ["cpu %"], "Host CPU utilization (%)"), width="stretch")
    for i, g in enumerate(s["gpus"]):
        st.markdown(f"**GPU {g['nvml_index']}: {g['name']}**")
        gpu_metrics(g)
        series = {"t_s": [x["t"] - t0 for x in hist if len(x["gpus"]) > i]}
        for key in ("power_instant_w", "utilization_pct", "temperature_c"):
            series[key] = [x["gpus"][i][key] for x in hist if len(x["gpus"]) > i]
        st.plotly_chart(
            plots.timeseries(
                series, ["power_instant_w", "utilization_pct", "temperature_c"], f"GPU {g['nvml_index']} history"
            ),
            width="stretch",
        )
    if not s["gpus"]:
        st.caption(f"GPU sensors N/A: {s['nvml']}")


live()
