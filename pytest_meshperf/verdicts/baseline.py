"""The baseline gate: ``--mesh-baseline OLD`` with ``--mesh-max-regression 10%``.

Each pair test, once measured, is compared with the baseline's entry of the
same (test, source, destination), metric by metric (compare.py judges the
change, as ``meshperf compare`` does): a metric worse by more than the
tolerance fails the test with both values in the message.  A pair the
baseline does not have (or had as an error) is recorded, not failed: the
entry's ``baseline.found`` says so, the JUnit property ``meshperf_baseline``
too, and the terminal summary lists those pairs in one line.  Entries are found as ``meshperf compare``
matches them (``compare.find_entry``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pytest_meshperf.errors import UsageError
from pytest_meshperf.measure.measurement import Measurement
from pytest_meshperf.results.read import resolve_mesh
from pytest_meshperf.spec.metrics import METRICS, format_value
from pytest_meshperf.verdicts.compare import (
    DEFAULT_TOLERANCE,
    compared_metrics,
    find_entry,
    load_entries,
    metric_change,
    parse_metrics,
    parse_tolerance,
)

MISSING = "missing"
PROPERTY = "meshperf_baseline"


@dataclass(frozen=True)
class Baseline:
    path: str                              # the baseline's mesh.json, absolute
    shown: str                             # the path as messages show it (relative to where pytest started)
    tolerance: float                       # 0.1 = 10%
    metrics: tuple[str, ...] | None     # --mesh-regression-metric; None: each test's default metrics
    entries: dict[tuple[str, str, str], Any]   # (test, src, dst) -> results.Row

    def meta(self) -> dict[str, Any]:
        """run.parameters.baseline in mesh.json."""
        return {"path": self.path, "max_regression": self.tolerance,
                "metrics": list(self.metrics) if self.metrics else None}

    def check(self, result: Measurement) -> list[str]:
        """Compare a measurement with its baseline entry; sets ``result.baseline``; returns failure messages."""
        old = find_entry(self.entries, result.test, result.src, result.dst)
        record: dict[str, Any] = {"found": old is not None, "status": old.status if old else None, "metrics": {}}
        result.baseline = record
        if old is None or old.status == "error" or result.status == "error":
            return []
        failures = []
        for name in compared_metrics(self.metrics, old.metrics, result.metrics):
            before, after = old.metrics.get(name), result.metrics.get(name)
            if before is None or after is None:
                continue
            change, worse_by = metric_change(name, float(before), float(after))
            passed = worse_by <= self.tolerance
            record["metrics"][name] = {"baseline": before, "change": change, "worse_by": worse_by, "passed": passed}
            if not passed:
                failures.append(self._message(name, float(before), float(after), change))
                record["metrics"][name]["message"] = failures[-1]   # summaries and reports show it too
        return failures

    def _message(self, name, before, after, change) -> str:
        info = METRICS[name]
        return (f"{info.label} {format_value(info, after)} is {100 * abs(change):.0f}% "
                f"{'below' if change < 0 else 'above'} the baseline's {format_value(info, before)} "
                f"(--mesh-max-regression {100 * self.tolerance:g}%, baseline {self.shown})")


def load_baseline(path: str | None, tolerance: str | None, metrics: str | None, base_dir: str) -> Baseline | None:
    """The gate the options ask for, or None; bad values are one-line UsageErrors naming the option."""
    if path is None:
        if tolerance is not None or metrics:
            raise UsageError("--mesh-max-regression and --mesh-regression-metric need --mesh-baseline OLD "
                             "(a mesh.json or run directory of an earlier run)")
        return None
    limit = parse_tolerance(tolerance, "--mesh-max-regression") if tolerance is not None else DEFAULT_TOLERANCE
    asked = parse_metrics(metrics, "--mesh-regression-metric")
    full = os.path.abspath(os.path.join(base_dir, os.path.expanduser(path)))
    mesh = os.path.realpath(resolve_mesh(full, "--mesh-baseline"))   # not "latest", which moves on
    entries = load_entries(mesh, "--mesh-baseline")
    shown = os.path.relpath(mesh, base_dir) if mesh.startswith(os.path.abspath(base_dir) + os.sep) else mesh
    return Baseline(mesh, shown, limit, asked, entries)


class MissingPairs:
    """Controller side: the pair tests whose pair the baseline lacks, for one summary line at the end."""

    def __init__(self):
        self.nodeids: list[str] = []

    def observe(self, report: Any) -> None:
        if report.when == "call" and (PROPERTY, MISSING) in getattr(report, "user_properties", ()):
            self.nodeids.append(report.nodeid)

    def summary_line(self, baseline: Baseline) -> str | None:
        if not self.nodeids:
            return None
        return f"not in the baseline {baseline.shown} (recorded, not judged): {', '.join(self.nodeids)}"
