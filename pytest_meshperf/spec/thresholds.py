"""Thresholds: assertions on measured metrics.

An expression is ``METRIC OP VALUE``: ``throughput>=9Gbit/s``,
``retransmits <= 100``, ``jitter<=1ms``, ``loss<=0.1%``, ``p99_latency<=200us``,
``transaction_rate>=10000``, ``throughput_bps>=1e9``.  ``METRIC`` is a canonical
name or alias (``metrics.py``), ``OP`` one of :data:`OPS`, ``VALUE`` a quantity
of the metric's kind (``units.py``).  A threshold on a metric the test did not
measure is *not applicable* (``passed is None``), not a failure.

Every error is a :class:`~pytest_meshperf.errors.ThresholdError` whose message
is one line: ``<origin> '<expression>': <problem>; <fix>``.

Two forms compare a pair with other pairs of the same test (``reference``):

* relative: ``METRIC OP K*median`` (``throughput>=0.8*median``,
  ``p99_latency<=2*median``): the pair's value against K times the median of
  the test's measured pairs in this run;
* asymmetry: ``asymmetry OP PERCENT`` (``asymmetry<=20%``) for the test's main
  metric (throughput, else p50 latency, else transaction rate), or
  ``asymmetry(METRIC) OP PERCENT`` (``asymmetry(p99_latency)<=30%``):
  ``|a->b - b->a| / max(a->b, b->a)`` in %.

They are *deferred*: the pair test cannot judge them alone, so the plugin's
check items do (``checks.py``), once every pair of the test is journaled.
:func:`parse_threshold_value` is the only place that parses values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_meshperf.errors import ThresholdError
from pytest_meshperf.spec.metrics import METRICS, Metric, format_value, resolve_metric
from pytest_meshperf.spec.units import QuantityError, example_value, parse_quantity

__all__ = [
    "NEGATED",
    "OPS",
    "Threshold",
    "ThresholdResult",
    "check_all",
    "holds",
    "merge_thresholds",
    "parse_threshold",
    "parse_threshold_value",
]

OPS = (">=", "<=", ">", "<", "==")
_OP_CHARS = "<>=!"
NEGATED = {">=": "<", "<=": ">", ">": "<=", "<": ">=", "==": "!="}
_SIDES = {
    ">=": frozenset({"lower"}),
    ">": frozenset({"lower"}),
    "<=": frozenset({"upper"}),
    "<": frozenset({"upper"}),
    "==": frozenset({"lower", "upper"}),
}
_OP_FIXES = {"=": "==", "===": "==", "=>": ">=", "=<": "<=", ">>=": ">=", "<<=": "<="}
_EQ_REL_TOL = 1e-9  # "==" compares with math.isclose(rel_tol=1e-9)
GENERIC_EXAMPLE = "throughput>=9Gbit/s"
_NAME_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_\-]*)")
MEDIAN, ASYMMETRY = "median", "asymmetry"
_RELATIVE_RE = re.compile(r"^\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?median\s*$", re.IGNORECASE)
_ASYMMETRY_RE = re.compile(r"^\s*asymmetry\s*(?:\(\s*([^()]*?)\s*\))?\s*$", re.IGNORECASE)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Threshold:
    metric: str  # canonical metric name; "" for asymmetry of the test's main metric
    op: str  # one of OPS
    value: float  # in the metric's canonical unit; K of K*median; asymmetry in %
    unit: str  # unit as the user wrote it (normalized spelling), "" when bare
    expression: str  # as written, stripped
    origin: str  # "--mesh-threshold", "mark", "suites/tcp.yaml:4", "measure()"
    reference: str | None = None  # None: absolute; MEDIAN or ASYMMETRY: judged by a check item

    @property
    def deferred(self) -> bool:
        """Judged against other pairs (check items, checks.py), not by the pair test itself."""
        return self.reference is not None

    def __post_init__(self) -> None:
        if self.reference not in (None, MEDIAN, ASYMMETRY):
            raise ValueError(f"Threshold.reference must be None, {MEDIAN!r} or {ASYMMETRY!r}")
        if self.metric not in METRICS and not (self.reference == ASYMMETRY and self.metric == ""):
            raise ValueError(
                f"Threshold.metric must be a canonical metric name, not {self.metric!r}"
            )
        if self.op not in OPS:
            raise ValueError(f"Threshold.op must be one of {OPS}, not {self.op!r}")

    @property
    def metric_info(self) -> Metric:
        return METRICS[self.metric]

    def check(self, metrics: Mapping[str, float]) -> ThresholdResult:
        """Check the measured ``metrics`` (canonical name -> canonical value)."""
        info = self.metric_info
        raw = metrics.get(self.metric) if metrics is not None else None
        if raw is None:
            return ThresholdResult(
                self,
                None,
                None,
                f"{info.label} not measured by this test ({self.origin})",
            )
        measured = float(raw)
        if math.isnan(measured):
            limit = format_value(info, self.value, self.unit or None)
            return ThresholdResult(
                self, measured, False,
                f"{info.label} measured NaN, not {self.op} {limit} ({self.origin})",
            )  # fmt: skip
        passed = holds(measured, self.op, self.value)
        shown_op = self.op if passed else NEGATED[self.op]
        shown_measured, shown_limit = _format_pair(
            info, measured, self.value, self.unit, shown_op
        )
        message = (
            f"{info.label} {shown_measured} {shown_op} {shown_limit} ({self.origin})"
        )
        return ThresholdResult(self, measured, passed, message)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "expression": self.expression,
            "metric": self.metric,
            "op": self.op,
            "value": self.value,
            "unit": self.unit,
            "origin": self.origin,
        }
        if self.reference is not None:
            data["reference"] = self.reference
        return data


@dataclass(frozen=True)
class ThresholdResult:
    threshold: Threshold
    value: float | None  # measured, canonical unit; None when not measured
    passed: bool | None  # None = not applicable
    message: str

    def to_dict(self) -> dict[str, Any]:
        data = self.threshold.to_dict()
        measured = self.value
        if measured is not None and not math.isfinite(measured):
            measured = None  # keep the result file strict JSON
        data.update(measured=measured, passed=self.passed, message=self.message)
        return data


def holds(measured: float, op: str, limit: float) -> bool:
    """``measured OP limit``: the one comparison every threshold kind uses (checks.py too)."""
    if op == ">=":
        return measured >= limit
    if op == "<=":
        return measured <= limit
    if op == ">":
        return measured > limit
    if op == "<":
        return measured < limit
    return math.isclose(measured, limit, rel_tol=_EQ_REL_TOL)


def _format_pair(
    metric: Metric, measured: float, limit: float, unit: str, shown_op: str
) -> tuple[str, str]:
    """Both values in the threshold's unit; more digits when rounding would
    print a contradiction such as ``900 Mbit/s < 900 Mbit/s``.  A rate that is
    orders of magnitude from the limit is scaled on its own, so a run reads
    ``99.99 Mbit/s < 100 Tbit/s``, not ``0.00009999 Tbit/s``."""
    if metric.kind == "rate" and unit and limit > 0 and not 1e-3 <= measured / limit <= 1e3:
        return format_value(metric, measured), format_value(metric, limit, unit)
    for digits in range(4, 18):
        a = format_value(metric, measured, unit or None, digits=digits)
        b = format_value(metric, limit, unit or None, digits=digits)
        if a != b or shown_op in ("==", ">=", "<="):
            break
    return a, b


def _example(metric: Metric, name: str | None = None) -> str:
    op = ">=" if metric.higher_is_better else "<="
    return f"{name or metric.name}{op}{example_value(metric.kind, metric.unit)}"


def parse_threshold_value(
    metric: Metric | None, text: str
) -> tuple[float, str, str | None]:
    """Parse the VALUE part of a threshold on ``metric``: ``(value, unit, reference)``.

    The single place where threshold values are interpreted.  A quantity
    gives ``(canonical value, unit, None)``; ``K*median`` (or ``median``)
    gives ``(K, "", "median")``; with ``metric`` None (an asymmetry) the value
    is a percentage: ``(20.0, "%", "asymmetry")``.  Raises
    :class:`~pytest_meshperf.spec.units.QuantityError`.
    """
    if metric is None:
        value, unit = parse_quantity(text, "percent", "%", label="asymmetry")
        return value, unit, ASYMMETRY
    relative = _RELATIVE_RE.match(text)
    if relative:
        return float(relative.group(1) or 1.0), "", MEDIAN
    value, unit = parse_quantity(text, metric.kind, metric.unit, label=metric.label)
    return value, unit, None


def parse_threshold(expr: str, origin: str) -> Threshold:
    """Parse one expression; ``origin`` says where it came from, for messages.

    ``parse_threshold("throughput >= 9 Gbit/s", "--mesh-threshold")`` ->
    ``Threshold("throughput_bps", ">=", 9e9, "Gbit/s", "throughput >= 9 Gbit/s",
    "--mesh-threshold")``.
    """
    origin = _one_line(origin)
    if not isinstance(expr, str):
        raise ThresholdError(
            f"{origin} {expr!r}: a threshold must be a string; write it like {GENERIC_EXAMPLE}"
        )
    text = expr.strip()
    where = f"{origin} {text!r}"

    def fail(problem: str) -> ThresholdError:
        return ThresholdError(f"{where}: {_one_line(problem)}")

    if not text:
        raise fail(f"empty threshold; write it like {GENERIC_EXAMPLE}")
    start = next((i for i, ch in enumerate(text) if ch in _OP_CHARS), None)
    if start is None:
        example = GENERIC_EXAMPLE
        m = _NAME_RE.match(text)
        if m:
            try:
                example = _example(resolve_metric(m.group(1)), m.group(1))
            except ThresholdError:
                pass
        raise fail(
            f"missing comparison operator (one of {', '.join(OPS)}); write it like {example}"
        )
    end = start
    while end < len(text) and text[end] in _OP_CHARS:
        end += 1
    name, op, value_text = text[:start].strip(), text[start:end], text[end:].strip()
    if not name:
        raise fail(f"missing metric name; write it like {GENERIC_EXAMPLE}")
    asymmetry = _ASYMMETRY_RE.match(name)
    try:
        metric = resolve_metric(asymmetry.group(1) if asymmetry and asymmetry.group(1) else name) \
            if not asymmetry or asymmetry.group(1) else None
    except ThresholdError as err:
        raise fail(str(err)) from None
    example = _example(metric, name) if not asymmetry else f"{name}<=20%"
    if op not in OPS:
        fix = _OP_FIXES.get(op)
        if fix:
            raise fail(
                f"operator {op!r} is not accepted; use {fix!r} as in {name}{fix}{value_text}"
            )
        raise fail(f"unknown operator {op!r}; use one of {', '.join(OPS)}")
    if not value_text:
        raise fail(f"missing value after {op!r}; write it like {example}")
    try:
        value, unit, reference = parse_threshold_value(None if asymmetry else metric, value_text)
    except QuantityError as err:
        hint = err.hint if err.kind_mismatch else f"write it like {example}"
        if not asymmetry and ("median" in value_text.lower() or "*" in value_text):
            hint = f"a relative threshold is K*median, e.g. {name}{op}0.8*median"
        raise fail(f"{err.problem}; {hint}") from None
    if asymmetry:
        return Threshold(metric.name if metric else "", op, value, unit, text, origin, ASYMMETRY)
    return Threshold(metric.name, op, value, unit, text, origin, reference)


def merge_thresholds(*layers: Iterable[Threshold]) -> list[Threshold]:
    """Merge threshold layers given in increasing precedence.

    A threshold replaces those of *earlier* layers on the same metric and the
    same side (lower bound ``>=``/``>``, upper bound ``<=``/``<``; ``==`` is
    both sides), taking the place of the first one it replaces; otherwise it is
    appended.  Thresholds of the same layer never replace each other.
    """
    entries: list[tuple[int, Threshold]] = []
    for level, layer in enumerate(layers):
        for new in layer:
            victims = [
                i
                for i, (old_level, old) in enumerate(entries)
                if old_level < level
                and old.metric == new.metric
                and old.reference == new.reference  # a relative bound does not replace an absolute one
                and _SIDES[old.op] & _SIDES[new.op]
            ]
            if not victims:
                entries.append((level, new))
                continue
            entries[victims[0]] = (level, new)
            for i in reversed(victims[1:]):
                del entries[i]
    return [threshold for _, threshold in entries]


def check_all(
    thresholds: Iterable[Threshold], metrics: Mapping[str, float]
) -> list[ThresholdResult]:
    """Check every absolute threshold against ``metrics``, in order (deferred ones are the check items')."""
    return [threshold.check(metrics) for threshold in thresholds if not threshold.deferred]
