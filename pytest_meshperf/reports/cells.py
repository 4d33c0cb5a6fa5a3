"""One cell of the HTML mesh report: its label and state, and the details shown when it is opened (instances, clients, load)."""
from __future__ import annotations

import math
from datetime import datetime

from pytest_meshperf.reports.heatmap import Cell, Section
from pytest_meshperf.spec.metrics import METRICS, format_value
from pytest_meshperf.spec.units import format_number

MAX_INSTANCES_SHOWN = 8    # per cell's details; --mesh-instances auto can start dozens
OUTPUT_SHOWN_CHARS = 1500  # of a failed client's stdout/stderr per cell's details; a report with many errors stays small
PARAM_TEXT = (("duration_s", "duration %s s"), ("omit_s", "omit %s s"), ("parallel", "%s streams"),
              ("bitrate_bps", None), ("udp", "UDP"), ("reverse", "reverse (-R)"), ("bidir", "bidirectional"),
              ("window", "window %s"), ("length", "length %s"), ("congestion", "congestion %s"),
              ("zerocopy", "zero copy"), ("instances", "%s instances"))

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"   # mesh.json's times (results.iso)


def seconds_between(record: dict, start: str, end: str) -> float | None:
    try:
        first, last = (datetime.strptime(record[k], TIME_FORMAT) for k in (start, end))
    except (KeyError, TypeError, ValueError):
        return None
    return (last - first).total_seconds()


def when_text(entry: dict) -> str:
    """The start to the second, and how long measure() took: full times are in mesh.json."""
    seconds = seconds_between(entry, "started", "finished")
    started = (entry.get("started") or "?")[:19].replace("T", " ")
    return started + ("" if seconds is None else f" UTC, {format_number(seconds, 3)} s")


def label(metric: str, value: float) -> str:
    known = METRICS.get(metric)   # a Metric, not its name: no name lookup per cell
    return format_value(known, value) if known else format_number(value)


def metric_label(metric: str) -> str:
    return METRICS[metric].label if metric in METRICS else metric


def _metric_order(names):
    known = [name for name in METRICS if name in names]
    return known + sorted(name for name in names if name not in METRICS)


def _numbers(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def params_text(params: dict) -> str:
    parts = []
    for key, text in PARAM_TEXT:
        value = (params or {}).get(key)
        if value in (None, False, 0) or (key in ("parallel", "instances") and value == 1):
            continue
        if key == "bitrate_bps":
            parts.append("bitrate " + format_value("throughput_bps", value))
        else:
            parts.append(text % value if "%s" in text else text)
    return ", ".join(parts)


def _load_text(load: dict) -> str:
    parts = []
    if load.get("core_busy_peak_percent") is not None:
        parts.append(f"busiest core peak {format_number(load['core_busy_peak_percent'], 3)}%")
    if load.get("process_cpu_percent") is not None:
        parts.append(f"tool {format_number(load['process_cpu_percent'], 3)}% of a core")
    if load.get("softirq_peak_percent") is not None:
        parts.append(f"softirq peak {format_number(load['softirq_peak_percent'], 3)}%")
    if load.get("pinned_core") is not None:
        parts.append(f"pinned to core {load['pinned_core']}")
    return ", ".join(parts)


def _instance_rows(instance: dict, src: str, dst: str, several: bool):
    server = instance.get("server") or {}
    rows = [("ports", f"client {instance.get('client_port') or '?'} \u2192 server "
                      f"{instance.get('server_port') or server.get('port') or '?'}", ""),
            ("pids", f"{instance.get('pid') or '?'} on {src}, {server.get('pid') or '?'} on {dst}", "")]
    if instance.get("cpu") is not None or server.get("cpu") is not None:
        rows.append(("cores", f"client {instance.get('cpu')}, server {server.get('cpu')}", ""))
    if several:
        rows += [(metric_label(k), label(k, v), "") for k, v in _numbers(instance.get("metrics")).items()]
    rows.append(("command", instance.get("command") or "", "mono"))
    if server.get("command"):
        rows.append(("server", server["command"], "mono"))
    if server.get("exit_code") not in (None, 0):
        rows.append(("server exit", str(server["exit_code"]), "bad"))
    return rows


def _client_rows(client: dict):
    """An errored measurement's client (mesh.json ``client``): its command, how it ended, its output's end."""
    ended = ("killed at its time limit" if client.get("timed_out") else
             f"killed by signal {client['signal']}" if client.get("signal") is not None else
             f"exit {client.get('exit_code')}")
    rows = [("command", client.get("command") or "", "mono"), ("ended", ended, "bad")]
    for stream in ("stdout", "stderr"):
        text = (client.get(stream) or "").strip()
        if text:   # the end says why; the whole (last 64 KiB) is in mesh.json
            rows.append((stream, ("\u2026" if len(text) > OUTPUT_SHOWN_CHARS else "") + text[-OUTPUT_SHOWN_CHARS:],
                         "mono"))
    return rows


def cell_detail(src: str, dst: str, key: str, entry: dict, labels: dict[str, str]) -> list[Section]:
    """The sections shown for one measurement: result, metrics, thresholds, instances, load, warnings."""
    status = entry.get("status", "?")
    result = [("status", status, {"passed": "ok", "failed": "bad", "error": "bad"}.get(status, ""))]
    if entry.get("error"):
        result.append(("error", entry["error"], "bad"))
    tool = entry.get("tool") or "?"
    result.append(("tool", tool + (" " + entry["tool_version"] if entry.get("tool_version") else ""), ""))
    params = params_text(entry.get("params") or {})
    if params:
        result.append(("parameters", params, ""))
    result.append(("when", when_text(entry), ""))
    if entry.get("round") is not None:
        result.append(("round", str(entry["round"]), ""))
    group = entry.get("group") or {}
    if group.get("skew_s") is not None:
        result.append(("start skew", f"{format_number(group['skew_s'], 3)} s ({group.get('schedule')})", ""))
    result.append(("test", key, "mono"))
    sections = [("Result", result)]
    if labels:
        sections.append(("Metrics", [(metric_label(k), labels[k], "") for k in _metric_order(labels)]))
    thresholds = entry.get("thresholds") or []
    if thresholds:
        verdicts = {True: ("held", "ok"), False: ("FAILED", "bad"), None: ("not applicable", "na")}
        sections.append(("Thresholds", [
            (t.get("expression", "?"), f"{verdicts[t.get('passed')][0]}: {t.get('message', '')}",
             verdicts[t.get("passed")][1]) for t in thresholds]))
    instances = entry.get("instances") or []
    for instance in instances[:MAX_INSTANCES_SHOWN]:
        title = f"Instance {instance.get('instance', '')}" if len(instances) > 1 else "Processes"
        sections.append((title, _instance_rows(instance, src, dst, len(instances) > 1)))
    if len(instances) > MAX_INSTANCES_SHOWN:
        sections.append(("More instances", [("", f"{len(instances) - MAX_INSTANCES_SHOWN} more in mesh.json",
                                             "na")]))
    if entry.get("client"):
        sections.append(("Failed client", _client_rows(entry["client"])))
    load = entry.get("node_load") or {}
    loads = [(side, _load_text(load.get(which) or {})) for side, which in (("sender " + src, "src"),
                                                                            ("receiver " + dst, "dst"))]
    if any(text for _, text in loads):
        sections.append(("CPU while measuring", [(side, text, "") for side, text in loads if text]))
    if entry.get("warnings"):
        sections.append(("Warnings", [("", warning, "warn") for warning in entry["warnings"]]))
    return sections


def mesh_cell(src: str, dst: str, key: str, entry: dict) -> Cell:
    metrics = _numbers(entry.get("metrics")) if entry.get("status") != "error" else {}
    labels = {k: label(k, v) for k, v in metrics.items()}
    marks = []
    if entry.get("status") == "failed":
        marks.append("threshold failed")
    if entry.get("warnings"):
        marks.append("CPU-bound" if any("CPU-bound" in w for w in entry["warnings"]) else "warning")
    return Cell(src, dst, entry.get("status", "error"), values=metrics, labels=labels,
                detail=cell_detail(src, dst, key, entry, labels), marks=marks)
