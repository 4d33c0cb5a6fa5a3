"""The mesh as a matrix in the terminal: rows source, columns destination, one per test.

A matrix wider than the terminal is shown compact: one character per link (a legend says which), then the
worst links and each node's medians; the full matrix stays in the HTML report and ``meshperf summary
--full``.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import textwrap
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pytest_meshperf.errors import printable
from pytest_meshperf.results.assemble import Assembled
from pytest_meshperf.results.rows import Row
from pytest_meshperf.spec.metrics import MAIN_METRICS, METRICS, format_value
from pytest_meshperf.verdicts.checks import CHECK_SUFFIX, is_check_key

if TYPE_CHECKING:
    from pytest_meshperf.reports.html import ReportOutcome

# A latency test is judged by its tail as much as by its median: its p99 gets a matrix too.
ALSO_SHOWN = {"latency_p50_us": ("latency_p99_us",)}
FAILED_MARK = " !"
ERROR_CELL = "ERROR"
MAX_WARNINGS_SHOWN = 10
WORST_LINKS_SHOWN = 5
# Compact cells: a measured link, one that failed its thresholds, an error, a node to itself, not measured.
COMPACT = {"passed": ".", "failed": "!", "error": "E", "self": "-", "none": " "}
COMPACT_LEGEND = "  (one character per link: . measured, ! failed, E error, - itself, blank not measured)"


def main_metric(rows: Sequence[Row]) -> str | None:
    for name in MAIN_METRICS:
        if any(name in row.metrics for row in rows):
            return name
    return None


def shown_metrics(rows: Sequence[Row]) -> list[str]:
    """The main metric, then the companions of it that were measured."""
    metric = main_metric(rows)
    return [metric] + [m for m in ALSO_SHOWN.get(metric, ()) if any(m in row.metrics for row in rows)]


def matrices(node_names: Sequence[str], rows: Sequence[Row],
             width: int | None = None) -> Iterator[tuple[str, str, list[str]]]:
    """Yields (test key, metric, lines) for each test in the run (a latency test twice: p50 and p99); with
    ``width``, a matrix wider than that is compact (``compact_lines``)."""
    by_test = OrderedDict()
    for row in rows:
        by_test.setdefault(row.test, []).append(row)
    for test, test_rows in by_test.items():
        for metric in shown_metrics(test_rows):
            lines = matrix_lines(node_names, test_rows, metric)
            if width is not None and max(len(line) for line in lines) > width:
                lines = compact_lines(node_names, test_rows, metric, width)
            yield test, metric, lines


def matrix_lines(node_names: Sequence[str], test_rows: Sequence[Row], metric: str) -> list[str]:
    cells = {}
    for row in test_rows:
        if row.status == "error":
            text = ERROR_CELL
        elif metric in row.metrics:
            text = format_value(metric, row.metrics[metric])
        else:
            text = "?"
        if row.status == "failed":
            text += FAILED_MARK
        cells[(row.src, row.dst)] = text
    present_src, present_dst = {r.src for r in test_rows}, {r.dst for r in test_rows}
    sources = [n for n in node_names if n in present_src]   # sets: one scan of the rows, not one per node
    dests = [n for n in node_names if n in present_dst]
    width = max([len(n) for n in dests] + [len(c) for c in cells.values()] + [5])
    head = max(len(n) for n in sources) if sources else 4
    lines = [" " * head + "  " + "  ".join(n.rjust(width) for n in dests)]
    for src in sources:
        line = [cells.get((src, dst), "-" if src == dst else "") for dst in dests]
        lines.append(src.ljust(head) + "  " + "  ".join(c.rjust(width) for c in line))
    return lines


def compact_lines(node_names: Sequence[str], test_rows: Sequence[Row], metric: str, width: int) -> list[str]:
    """One character per link (``COMPACT``; columns numbered in row order), then the worst links and each
    node's median sent and received, wrapped to ``width``."""
    status = {(row.src, row.dst): row.status for row in test_rows}
    present = {r.src for r in test_rows} | {r.dst for r in test_rows}
    nodes = [n for n in node_names if n in present]
    head = max(len(n) for n in nodes) + 1 + len(str(len(nodes)))
    numbers = [str(i) for i in range(1, len(nodes) + 1)]
    lines = [COMPACT_LEGEND]
    for digit in range(len(numbers[-1]) - 1, -1, -1):   # the column numbers, one digit per line
        lines.append(" " * (head + 2) + "".join(n[-1 - digit] if len(n) > digit else " " for n in numbers))
    for number, src in zip(numbers, nodes):
        cells = "".join(COMPACT["self"] if src == dst else COMPACT.get(status.get((src, dst), "none"), "?")
                        for dst in nodes)
        lines.append(f"{src} {number.rjust(len(numbers[-1]))}".ljust(head) + "  " + cells)
    info = METRICS.get(metric)
    measured = [row for row in test_rows if metric in row.metrics and row.status != "error"]
    if measured and info is not None:
        # worst first: the lowest rates, the highest latencies
        ordered = sorted(measured, key=lambda r: r.metrics[metric], reverse=not info.higher_is_better)
        worst = ", ".join(f"{r.src}->{r.dst} {format_value(metric, r.metrics[metric])}"
                          for r in ordered[:WORST_LINKS_SHOWN])
        lines += wrapped(f"worst links: {worst}", width)
        medians = []
        for node in nodes:
            sent = [r.metrics[metric] for r in measured if r.src == node]
            received = [r.metrics[metric] for r in measured if r.dst == node]
            shown = [format_value(metric, statistics.median(values)) if values else "-" for values in (sent, received)]
            medians.append(f"{node} {' / '.join(shown)}")
        lines += wrapped("medians per node (out / in): " + "; ".join(medians), width)
    return lines


def terminal_width() -> int | None:
    """The width to fit: the terminal's (COLUMNS, else its size) when output goes to one; None for a pipe or a
    file (a CI log), which get every matrix and message whole, one line each."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def wrapped(text: str, width: int | None, indent: str = "    ") -> list[str]:
    """``text`` in lines of at most ``width`` characters (continuations indented); as it is without a width."""
    if width is None:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False) or [""]


def _check_lines(checks) -> list[str]:
    """Relative and asymmetry checks (checks.py): their counts, and what failed or errored."""
    if not checks:
        return []
    by_status = {}
    for row in checks:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    counted = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    out = ["", f"mesh checks (relative, asymmetry): {counted}"]
    for row in checks:
        if row.status in ("failed", "error"):
            out += [f"  {row.status.upper()} {row.src}->{row.dst} {row.name}: {'; '.join(row.messages)}"]
    return out


def diagnosis_lines(findings: Sequence[dict[str, Any]], rows: Sequence[Row], width: int | None) -> list[str]:
    """The findings (worst first: failed, then doubtful, then notices), each with the links it explains; then
    every failed or errored test that no finding explains."""
    order = {"failed": 0, "doubtful": 1, "notice": 2}
    by_status: dict[str, int] = {}
    for f in findings:
        by_status[f["status"]] = by_status.get(f["status"], 0) + 1
    counted = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items(), key=lambda s: order[s[0]]))
    out = ["", f"diagnosis: {len(findings)} finding{'' if len(findings) == 1 else 's'}"
               + (f" ({counted})" if counted else ": nothing a node, group or link explains")]
    explained = set()
    for f in sorted(findings, key=lambda f: order.get(f["status"], 3)):
        test = f["test"].rsplit("::", 1)[-1]
        out += wrapped(f"  {f['status'].upper()} {f['kind']} {f['subject']} [{test}, {METRICS[f['metric']].label}]: "
                       f"{f['message']}", width, "      ")
        out += wrapped(f"      links: {', '.join(f['links'])} (confidence {f['confidence']:.2f})", width, "        ")
        if f.get("retest"):
            r = f["retest"]
            out += wrapped(f"      re-test: {r['outcome']} ({r['confirmed']} confirmed, {r['flaky']} flaky, "
                           f"{r['inconclusive']} inconclusive)", width, "        ")
        explained |= {(f["test"], link) for link in f["links"]}
    unexplained = [row for row in rows if row.status in ("failed", "error") and
                   (row.test[:-len(CHECK_SUFFIX)] if is_check_key(row.test) else row.test,
                    f"{row.src}->{row.dst}") not in explained]
    if unexplained:
        out.append(f"failed, and not explained by a finding ({len(unexplained)}):")
        for row in unexplained[:MAX_WARNINGS_SHOWN]:
            mark = " (doubtful)" if row.doubtful else ""
            out += wrapped(f"  {row.status.upper()} {row.src}->{row.dst} {row.name}{mark}: {'; '.join(row.messages)}",
                           width, "      ")
        if len(unexplained) > MAX_WARNINGS_SHOWN:
            out.append(f"  ... and {len(unexplained) - MAX_WARNINGS_SHOWN} more")
    return out


def _shown(path, cwd):
    if cwd and os.path.abspath(path).startswith(os.path.abspath(cwd) + os.sep):
        return os.path.relpath(path, cwd)
    return path


def summary_lines(node_names: Sequence[str], rows: Sequence[Row], counts: dict[str, int], mesh_path: str,
                  cwd: str | None = None, width: int | None = None,
                  findings: Sequence[dict[str, Any]] | None = None) -> list[str]:
    """The summary; with ``width`` (the terminal's), a matrix wider than that is compact; ``findings``: the
    diagnosis (mesh.json's ``diagnosis``; None: none was made), shown before the failures it leaves."""
    all_rows = rows
    checks = [row for row in rows if is_check_key(row.test)]
    if checks:   # the matrices and counts are the measurements'
        rows = [row for row in rows if not is_check_key(row.test)]
        counts = {status: sum(row.status == status for row in rows) for status in ("passed", "failed", "error")}
    out = []
    for key, metric, lines in matrices(node_names, rows, width):
        label = METRICS[metric].label if metric in METRICS else "no metric"
        out += ["", f"{key}: {label}"] + lines
    if findings is not None:
        out += diagnosis_lines(findings, all_rows, width)
    warned = [row for row in rows if row.warnings or row.doubtful]
    if warned:
        out += [""] + wrapped(f"CPU-bound or otherwise doubtful ({len(warned)} of {len(rows)} measurements; see "
                              "doubtful and warnings in mesh.json):", width)
        for row in warned[:MAX_WARNINGS_SHOWN]:
            reasons = list(dict.fromkeys([*row.doubtful, *row.warnings]))
            out += wrapped(f"  {row.src}->{row.dst} {row.name}: {'; '.join(reasons)}", width, "      ")
        if len(warned) > MAX_WARNINGS_SHOWN:
            out.append(f"  ... and {len(warned) - MAX_WARNINGS_SHOWN} more")
    out += [part for line in _check_lines(checks) for part in wrapped(line, width, "      ")]
    out += [""] + wrapped(f"{sum(counts.values())} measurements: {counts.get('passed', 0)} passed, "
                          f"{counts.get('failed', 0)} failed (marked{FAILED_MARK}), {counts.get('error', 0)} errors "
                          f"({ERROR_CELL})", width)
    path = _shown(mesh_path, cwd)
    out.append(f"results: {path}  (csv: {os.path.join(os.path.dirname(path), 'mesh.csv')})")
    return out


def write_summary(tr: Any, node_names: Sequence[str], assembled: Assembled, cwd: str,
                  report: ReportOutcome | None = None, findings: Sequence[Any] | None = None) -> None:
    """The matrices, counts and paths; ``report``: the automatic HTML report's outcome (html.ReportOutcome);
    ``findings``: the diagnosis (diagnosis.Finding)."""
    tr.write_sep("=", "meshperf mesh (rows: source, columns: destination)")
    shown = [f.to_dict() for f in findings] if findings is not None else None
    for line in summary_lines(node_names, assembled.rows, assembled.counts, assembled.path, cwd, terminal_width(),
                              shown):
        tr.write_line(printable(line))   # tools' words in messages and warnings: no raw escape sequences
    if report is not None and report.path:
        tr.write_line(f"report: {_shown(report.path, cwd)}")
    elif report is not None:
        tr.write_line(f"meshperf: report {report.problem}", yellow=True)
