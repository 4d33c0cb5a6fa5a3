"""Comparing two runs: what changed per link (test, source, destination) and metric.

``compare_results(old, new, tolerance)`` returns a typed :class:`Comparison`
that printers (``reports/comparison.py``, the terminal) and report renderers
take; nothing here prints.  ``metric_change`` is the one place that judges a
change, shared with the pytest baseline gate (``baseline.py``), so
``meshperf compare`` and ``--mesh-baseline`` always agree.

A change is ``(new - old) / old``; ``worse_by`` is the same fraction turned
so that positive means worse (lower throughput, higher latency or loss).  The
denominator is never smaller than the metric's *floor* (``FLOORS``), so a tiny
baseline does not make a huge percentage: 0 -> 3 retransmits is 3% of 100,
not infinitely worse, and 0% -> 0.2% loss is 0.2 of one percentage point.

Links are matched by their exact test key, else by the test without its
module's directory (``find_entry``): test keys hold the module's path relative
to pytest's rootdir, which pytest picks before plugins load, so a path given
as a separate word (``--mesh-baseline /elsewhere/mesh.json``) can move it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_meshperf.errors import UsageError
from pytest_meshperf.plan.links import link_id
from pytest_meshperf.results.read import load_rows, resolve_mesh
from pytest_meshperf.results.rows import Row
from pytest_meshperf.spec.metrics import METRICS, resolve_metric
from pytest_meshperf.verdicts.checks import is_check_key

#: Compared unless told otherwise, when the test measured them: what a test is run for.  Retransmits,
#: CPU and packet counts are left out: they swing from run to run on healthy links (0 -> 40
#: retransmits is noise on a 10 Gbit/s link); ask for them with --metric.
DEFAULT_METRICS = ("throughput_bps", "throughput_reverse_bps", "transaction_rate", "latency_p50_us",
                   "latency_p99_us", "lost_percent", "jitter_ms")
DEFAULT_TOLERANCE = 0.10

#: The smallest denominator of a change, per metric, in its canonical unit.
FLOORS = {"throughput_bps": 1e3, "throughput_reverse_bps": 1e3, "transaction_rate": 1.0, "retransmits": 100.0,
          "lost_packets": 100.0, "packets": 100.0, "lost_percent": 1.0, "jitter_ms": 0.1,
          "latency_mean_us": 10.0, "latency_p50_us": 10.0, "latency_p90_us": 10.0, "latency_p99_us": 10.0,
          "cpu_local_percent": 1.0, "cpu_remote_percent": 1.0}

OK, REGRESSED, IMPROVED = "ok", "regressed", "improved"
MISSING_IN_OLD, MISSING_IN_NEW = "missing_in_old", "missing_in_new"
ERROR_IN_OLD, ERROR_IN_NEW = "error_in_old", "error_in_new"
STATUSES = (REGRESSED, ERROR_IN_NEW, MISSING_IN_NEW, IMPROVED, OK, MISSING_IN_OLD, ERROR_IN_OLD)  # worst first

LinkKey = tuple[str, str, str]   # (test, src, dst)


@dataclass(frozen=True)
class MetricChange:
    """One metric of one link in both runs."""
    test: str
    src: str
    dst: str
    metric: str | None          # None: a link missing or errored on one side, with no metric to show
    old: float | None           # canonical unit; None when not measured
    new: float | None
    change: float | None        # (new - old) / max(old, floor); 0.25 = 25% more
    worse_by: float | None      # change turned by direction: > 0 worse, < 0 better
    status: str                    # one of STATUSES
    old_status: str | None = None   # the entries' own status (passed, failed, error); None: not there
    new_status: str | None = None
    old_error: str | None = None
    new_error: str | None = None

    @property
    def link(self) -> str:
        return link_id(self.src, self.dst)


@dataclass(frozen=True)
class Comparison:
    old_path: str                  # the mesh.json files compared
    new_path: str
    tolerance: float               # worse_by above this is a regression (0.1 = 10%)
    metrics: tuple[str, ...] | None   # the metrics asked for; None: each test's defaults
    changes: tuple[MetricChange, ...] = field(default_factory=tuple)   # worst first

    @property
    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in STATUSES}
        for change in self.changes:
            counts[change.status] += 1
        return counts

    @property
    def failed(self) -> bool:
        """What CI fails on: a metric worse than the tolerance, or a link that now errors."""
        return any(c.status in (REGRESSED, ERROR_IN_NEW) for c in self.changes)


def parse_tolerance(text: str, option: str) -> float:
    """``"10%"`` -> 0.1; a one-line UsageError naming ``option`` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*", str(text))
    if not match:
        raise UsageError(f"{option} {text!r}: give the tolerance as a percentage, e.g. 10%")
    return float(match.group(1)) / 100.0


def parse_metrics(names: Iterable[str] | None, option: str) -> tuple[str, ...] | None:
    """Canonical names of ``--metric`` values (aliases allowed, comma-separated or repeated); None for none."""
    out: list[str] = []
    for text in names or ():
        for name in str(text).split(","):
            try:
                out.append(resolve_metric(name).name)
            except UsageError as exc:
                raise UsageError(f"{option} {name.strip()!r}: {exc}") from None
    return tuple(dict.fromkeys(out)) or None


def metric_change(metric: str, old: float, new: float) -> tuple[float, float]:
    """(change, worse_by) of ``metric`` going from ``old`` to ``new``."""
    denominator = max(abs(old), FLOORS.get(metric, 0.0))
    if denominator == 0.0:   # an unknown metric at 0 both times, or 0 -> x without a floor
        change = 0.0 if new == old else math.copysign(1.0, new - old)
    else:
        change = (new - old) / denominator
    info = METRICS.get(metric)
    higher_is_better = info.higher_is_better if info is not None else True
    return change, (-change if higher_is_better else change)


def verdict(worse_by: float, tolerance: float) -> str:
    if worse_by > tolerance:
        return REGRESSED
    if worse_by < -tolerance:
        return IMPROVED
    return OK


def compared_metrics(asked: Sequence[str] | None, *metric_sets: Iterable[str]) -> list[str]:
    """The metrics of one link to compare: those asked for, else the defaults either side measured."""
    if asked:
        return list(asked)
    present = set().union(*metric_sets)
    return [name for name in DEFAULT_METRICS if name in present]


def short_test(key: str) -> str:
    """``suites/test_tcp.py::test_x[2]`` -> ``test_x[2]``: the test without its module."""
    _, sep, rest = key.partition(".py::")
    return rest if sep else key


def find_entry(entries: dict[LinkKey, Any], test: str, src: str, dst: str) -> Any:
    """The entry of this test and pair: by exact key, else the only one whose test has the same short name."""
    exact = entries.get((test, src, dst))
    if exact is not None:
        return exact
    candidates = [row for (key, s, d), row in entries.items()
                  if s == src and d == dst and short_test(key) == short_test(test)]
    return candidates[0] if len(candidates) == 1 else None


def _link_changes(key: LinkKey, old, new, tolerance, asked) -> list[MetricChange]:
    test, src, dst = key
    sides = dict(old_status=old.status if old else None, new_status=new.status if new else None,
                 old_error=_error(old), new_error=_error(new))
    if old is None or new is None or old.status == "error" or new.status == "error":
        if new is None:
            status = MISSING_IN_NEW
        elif old is None:
            status = MISSING_IN_OLD
        else:
            status = ERROR_IN_NEW if new.status == "error" else ERROR_IN_OLD
        if status == ERROR_IN_OLD and new.status == "error":
            status = ERROR_IN_NEW   # errored both times: it is still broken
        names = compared_metrics(asked, *(row.metrics for row in (old, new) if row is not None)) or [None]
        return [MetricChange(test, src, dst, name, _value(old, name), _value(new, name), None, None, status,
                             **sides) for name in names]
    out = []
    for name in compared_metrics(asked, old.metrics, new.metrics):
        before, after = _value(old, name), _value(new, name)
        if before is None or after is None:
            status = MISSING_IN_NEW if after is None else MISSING_IN_OLD
            if before is None and after is None:
                continue   # asked for, measured by neither: nothing to say
            out.append(MetricChange(test, src, dst, name, before, after, None, None, status, **sides))
            continue
        change, worse_by = metric_change(name, before, after)
        out.append(MetricChange(test, src, dst, name, before, after, change, worse_by,
                                verdict(worse_by, tolerance), **sides))
    return out


def _value(row, name) -> float | None:
    if row is None or name is None:
        return None
    value = row.metrics.get(name)
    return float(value) if value is not None else None


def _error(row) -> str | None:
    if row is None or row.status != "error":
        return None
    return row.messages[0] if row.messages else "error"


def _order(change: MetricChange):
    worse_by = change.worse_by if change.worse_by is not None else 0.0
    return STATUSES.index(change.status), -worse_by, change.test, change.src, change.dst, change.metric or ""


def compare_results(old_path: str, new_path: str, tolerance: float = DEFAULT_TOLERANCE,
                    metrics: Sequence[str] | None = None) -> Comparison:
    """Compare two runs' mesh.json (or run directories, or results folders: their latest run)."""
    old_file, new_file = resolve_mesh(old_path, "OLD"), resolve_mesh(new_path, "NEW")
    old, new = load_entries(old_file, "OLD"), load_entries(new_file, "NEW")
    asked = tuple(metrics) if metrics else None
    changes: list[MetricChange] = []
    matched = set()
    for key, row in new.items():
        before = find_entry(old, *key)
        matched.add(id(before))
        changes += _link_changes(key, before, row, tolerance, asked)
    for key, row in old.items():
        if id(row) not in matched:
            changes += _link_changes(key, row, None, tolerance, asked)
    return Comparison(old_file, new_file, tolerance, asked, tuple(sorted(changes, key=_order)))


def load_entries(path: str, what: str) -> dict[LinkKey, Row]:
    """(test, src, dst) -> results.Row of a mesh.json; a one-line UsageError naming ``what`` if it is not one."""
    try:
        _, rows, _ = load_rows(path)
        # check entries (checks.py) judge measurements and measure nothing: not links to compare
        return {(row.test, row.src, row.dst): row for row in rows if not is_check_key(row.test)}
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise UsageError(f"{what} {path}: not a meshperf mesh.json ({type(exc).__name__}: {exc})") \
            from None
