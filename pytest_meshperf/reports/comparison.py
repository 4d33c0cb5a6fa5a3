"""A Comparison (compare.py) as text: one table row per link and metric, worst first, then the counts."""
from __future__ import annotations

from pytest_meshperf.spec.metrics import METRICS, format_value
from pytest_meshperf.verdicts.compare import STATUSES, Comparison, MetricChange

HEADERS = ("status", "link", "test", "metric", "old", "new", "change")
MAX_ERROR_CHARS = 80


def value_text(change: MetricChange, value: float | None) -> str:
    if value is None or change.metric is None:
        return "-"
    return format_value(change.metric, value) if change.metric in METRICS else f"{value:g}"


def change_text(change: MetricChange) -> str:
    if change.change is not None:
        return f"{100.0 * change.change:+.1f}%"
    error = change.new_error or change.old_error
    return error[:MAX_ERROR_CHARS] if error else ""


def short_name(test: str) -> str:
    return test.rsplit("::", 1)[-1]


def comparison_lines(comparison: Comparison) -> list[str]:
    rows = [HEADERS] + [(c.status.replace("_", " "), c.link, short_name(c.test),
                         METRICS[c.metric].label if c.metric in METRICS else (c.metric or "-"),
                         value_text(c, c.old), value_text(c, c.new), change_text(c)) for c in comparison.changes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS) - 1)]
    out = [f"meshperf compare: {comparison.old_path} -> {comparison.new_path} (worse by more than "
           f"{100.0 * comparison.tolerance:g}% is a regression)", ""]
    for row in rows:
        out.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    counts = comparison.counts
    shown = ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in STATUSES if counts[s] or s in ("regressed", "ok"))
    out += ["", f"{len(comparison.changes)} compared: {shown}"]
    links = sorted({(c.test, c.link) for c in comparison.changes if c.status in ("regressed", "error_in_new")})
    if links:
        plural = "" if len(links) == 1 else "s"
        named = ", ".join(f"{link} {short_name(test)}" for test, link in links)
        out.append(f"FAILED: {len(links)} link{plural} regressed or now error: {named}")
    return out
