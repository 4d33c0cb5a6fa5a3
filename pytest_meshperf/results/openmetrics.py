"""A run as OpenMetrics text: ``meshperf export --format openmetrics RUN FILE``.

For node_exporter's textfile collector (write ``FILE`` as ``*.prom`` in its
directory: the file is replaced atomically) or a Pushgateway (``FILE`` ``-``:
stdout).  One gauge family per metric, in base units as Prometheus names them
(``meshperf_throughput_bits_per_second``, ``meshperf_latency_p99_seconds``,
``meshperf_lost_ratio``), labelled ``test``, ``src``, ``dst`` and ``tool``;
``meshperf_measurement_status`` says each link's verdict (1 for its ``status``
label); ``meshperf_run_timestamp_seconds`` when the run finished.  No label is
unbounded: the run id is never one, so series stay the same from run to run.
prometheus_client writes the text (escaping, ``# EOF``) and its parser reads it back in the tests.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any

from pytest_meshperf.errors import UsageError
from pytest_meshperf.results.read import iter_entries
from pytest_meshperf.spec.metrics import METRICS, Metric

LABELS = ("test", "src", "dst", "tool")
STATUSES = ("passed", "failed", "error", "skipped")
_UNIT_FACTOR = {  # canonical unit -> (Prometheus base unit, factor)
    "bit/s": ("bits_per_second", 1.0), "ms": ("seconds", 1e-3), "us": ("seconds", 1e-6), "%": ("ratio", 0.01),
    "/s": ("per_second", 1.0), "": ("", 1.0),
}
_SUFFIXES = ("_bps", "_ms", "_us", "_percent")


def family_name(metric: Metric) -> tuple[str, str, float]:
    """(family name, OpenMetrics unit, factor from the canonical unit) of a metric."""
    unit, factor = _UNIT_FACTOR[metric.unit]
    base = metric.name
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    return f"meshperf_{base}{'_' + unit if unit else ''}", unit, factor


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def collector(mesh: dict[str, Any]) -> Any:
    """A prometheus_client collector (an object with ``collect()``) of one mesh.json."""
    from prometheus_client.core import GaugeMetricFamily  # here: only --format openmetrics pays for the import

    class MeshCollector:
        def collect(self):
            families = {}
            status = GaugeMetricFamily("meshperf_measurement_status", "the link's verdict: 1 for its status",
                                       labels=LABELS + ("status",))
            for src, dst, test, entry in iter_entries(mesh):   # measurements only: checks are verdicts
                labels = (test, src, dst, str(entry.get("tool") or ""))
                status.add_metric(labels + (str(entry.get("status")),), 1.0)
                for name, value in sorted((entry.get("metrics") or {}).items()):
                    metric = METRICS.get(name)
                    if metric is None or not isinstance(value, (int, float)):
                        continue
                    family, unit, factor = family_name(metric)
                    if family not in families:
                        families[family] = GaugeMetricFamily(family, f"meshperf {metric.label} ({name})",
                                                             labels=LABELS, unit=unit)
                    families[family].add_metric(labels, float(value) * factor)
            run = mesh.get("run") or {}
            stamp = _epoch(run.get("finished")) or _epoch(run.get("started"))
            if stamp is not None:
                when = GaugeMetricFamily("meshperf_run_timestamp_seconds", "when the run finished (else started)",
                                         unit="seconds")
                when.add_metric((), stamp)
                yield when
            yield status
            yield from (families[name] for name in sorted(families))

    return MeshCollector()


def render(mesh: dict[str, Any]) -> bytes:
    from prometheus_client.openmetrics.exposition import generate_latest  # here: as above
    return generate_latest(collector(mesh))


def write_openmetrics(mesh_path: str, out: str) -> int:
    """Write ``mesh_path`` as OpenMetrics text to ``out`` ('-': stdout), atomically; returns the series count."""
    try:
        with open(mesh_path, encoding="utf-8") as handle:
            mesh = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{mesh_path}: not a readable mesh.json ({exc})") from None
    text = render(mesh)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    if out == "-":
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        return series
    tmp = f"{out}.{os.getpid()}.tmp"   # the textfile collector must never read half a file
    try:
        with open(tmp, "wb") as handle:
            handle.write(text)
        os.replace(tmp, out)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UsageError(f"{out}: cannot write the OpenMetrics file: {exc.strerror or exc}") from None
    return series
