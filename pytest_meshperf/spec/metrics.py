"""The metric contract: names, kinds and canonical units of everything measured.

Metric names are used verbatim by the result file, JUnit properties and
thresholds; renaming one is a breaking change.  Values are always stored in
the metric's canonical unit (``unit``); ``kind`` says how values are parsed
and formatted (see ``units.py``).  ``aliases`` are extra names accepted in
threshold expressions; matching is case-insensitive and treats ``-`` and
spaces like ``_``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pytest_meshperf.errors import ThresholdError
from pytest_meshperf.spec.units import format_number, format_rate_bps, to_unit

__all__ = ["MAIN_METRICS", "METRICS", "Metric", "format_value", "resolve_metric"]


@dataclass(frozen=True)
class Metric:
    name: str  # canonical, e.g. "throughput_bps"
    kind: str  # "rate" | "count" | "time" | "percent" | "frequency"
    unit: str  # canonical unit symbol: "bit/s", "", "ms", "us", "%", "/s"
    aliases: tuple[str, ...]  # other names accepted in threshold expressions
    higher_is_better: bool
    label: str  # human name for messages


_ALL = (
    Metric("throughput_bps", "rate", "bit/s", ("throughput",), True, "throughput"),
    Metric(
        "throughput_reverse_bps", "rate", "bit/s",
        ("throughput_reverse", "reverse_throughput"), True, "reverse throughput",
    ),
    Metric("retransmits", "count", "", ("retransmissions", "retr"), False, "retransmits"),
    Metric("jitter_ms", "time", "ms", ("jitter",), False, "jitter"),
    Metric("lost_percent", "percent", "%", ("loss", "lost", "loss_percent"), False, "loss"),
    Metric("lost_packets", "count", "", ("lost_datagrams",), False, "lost packets"),
    Metric("packets", "count", "", ("datagrams",), True, "packets"),
    Metric("cpu_local_percent", "percent", "%", ("cpu_local", "local_cpu"), False, "local CPU"),
    Metric("cpu_remote_percent", "percent", "%", ("cpu_remote", "remote_cpu"), False, "remote CPU"),
    Metric(
        "latency_mean_us", "time", "us", ("mean_latency", "latency_mean"), False, "mean latency"
    ),
    Metric(
        "latency_p50_us", "time", "us",
        ("p50_latency", "latency_p50", "median_latency"), False, "p50 latency",
    ),
    Metric("latency_p90_us", "time", "us", ("p90_latency", "latency_p90"), False, "p90 latency"),
    Metric("latency_p99_us", "time", "us", ("p99_latency", "latency_p99"), False, "p99 latency"),
    Metric(
        "transaction_rate", "frequency", "/s", ("transactions", "tps"), True, "transaction rate"
    ),
)  # fmt: skip

#: Canonical name -> Metric, in contract order.
METRICS: Mapping[str, Metric] = MappingProxyType({m.name: m for m in _ALL})

#: What a test is about, in this order: the first one a test measured is its main metric (the summary's
#: matrix, the report's first heatmap, an ``asymmetry`` threshold that names no metric).
MAIN_METRICS = ("throughput_bps", "latency_p50_us", "transaction_rate")


def _key(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


_LOOKUP: dict[str, Metric] = {}
for _metric in _ALL:
    for _name in (_metric.name,) + _metric.aliases:
        assert _key(_name) not in _LOOKUP, f"duplicate metric name {_name!r}"
        _LOOKUP[_key(_name)] = _metric
del _metric, _name


def resolve_metric(name: str) -> Metric:
    """The metric called ``name`` (canonical name or alias, case-insensitive).

    Raises ThresholdError: ``unknown metric 'thruput'; did you mean 'throughput'?``
    or, with no close match, a message listing the canonical names.
    """
    if not isinstance(name, str) or not name.strip():
        raise ThresholdError(
            f"missing metric name; valid metrics: {', '.join(METRICS)}"
        )
    metric = _LOOKUP.get(_key(name))
    if metric is not None:
        return metric
    close = difflib.get_close_matches(_key(name), list(_LOOKUP), n=1, cutoff=0.6)
    if close:
        raise ThresholdError(
            f"unknown metric {name.strip()!r}; did you mean {close[0]!r}?"
        )
    raise ThresholdError(
        f"unknown metric {name.strip()!r}; valid metrics: {', '.join(METRICS)}"
    )


def _join(number: str, unit: str) -> str:
    if not unit:
        return number
    if unit == "%" or unit.startswith("/"):
        return number + unit
    return f"{number} {unit}"


def format_value(
    metric: Metric | str,
    value: float,
    unit: str | None = None,
    *,
    digits: int = 4,
) -> str:
    """A human string for a canonical ``value`` of ``metric``.

    With ``unit`` (as a user wrote it: ``"Mbit/s"``, ``"ms"``, ``"%"``) the value
    is expressed in that unit: ``format_value("throughput_bps", 812.4e6,
    "Mbit/s") == "812.4 Mbit/s"``.  Without (or with ``""``): rates are
    auto-scaled (``"9.5 Gbit/s"``), times shown in their canonical unit
    (``"12 ms"``), integral counts as integers, percents with ``%`` (``"0.1%"``),
    frequencies with ``/s``.  ``digits`` significant digits, trailing zeros
    trimmed.
    """
    m = metric if isinstance(metric, Metric) else resolve_metric(metric)
    value = float(value)
    if unit is not None and unit.strip():
        shown = unit.strip()
        scaled = to_unit(value, shown, m.kind, canonical=m.unit)
        return _join(format_number(scaled, digits), shown)
    if m.kind == "rate":
        return format_rate_bps(value, digits)
    if m.kind == "count" and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return _join(format_number(value, digits), m.unit)
