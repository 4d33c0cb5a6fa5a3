"""The mesh as a matrix in the terminal: rows source, columns destination, one per test."""

import os
from collections import OrderedDict

from ..metrics import METRICS, format_value

MAIN_METRICS = ("throughput_bps", "latency_p50_us", "transaction_rate")
FAILED_MARK = " !"
ERROR_CELL = "ERROR"


def main_metric(rows):
    for name in MAIN_METRICS:
        if any(name in row.metrics for row in rows):
            return name
    return None


def matrices(node_names, rows):
    """Yields (test name, metric, lines) for each test in the run."""
    by_test = OrderedDict()
    for row in rows:
        by_test.setdefault(row.test, []).append(row)
    for test, test_rows in by_test.items():
        metric = main_metric(test_rows)
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
        sources = [n for n in node_names if any(r.src == n for r in test_rows)]
        dests = [n for n in node_names if any(r.dst == n for r in test_rows)]
        width = max([len(n) for n in dests] + [len(c) for c in cells.values()] + [5])
        head = max(len(n) for n in sources) if sources else 4
        lines = [" " * head + "  " + "  ".join(n.rjust(width) for n in dests)]
        for src in sources:
            line = [cells.get((src, dst), "-" if src == dst else "") for dst in dests]
            lines.append(src.ljust(head) + "  " + "  ".join(c.rjust(width) for c in line))
        yield test_rows[0].name, test, metric, lines


def write_summary(tr, cluster, assembled, cwd):
    tr.write_sep("=", "meshperf mesh (rows: source, columns: destination)")
    names = [node.name for node in cluster.nodes]
    for name, key, metric, lines in matrices(names, assembled.rows):
        tr.write_line("")
        tr.write_line("%s: %s" % (key, METRICS[metric].label if metric in METRICS else "no metric"))
        for line in lines:
            tr.write_line(line)
    counts = assembled.counts
    tr.write_line("")
    tr.write_line("%d measurements: %d passed, %d failed (%s), %d errors (%s)" % (
        sum(counts.values()), counts.get("passed", 0), counts.get("failed", 0), FAILED_MARK.strip(),
        counts.get("error", 0), ERROR_CELL))
    path = os.path.relpath(assembled.path, cwd) if assembled.path.startswith(cwd) else assembled.path
    tr.write_line("results: %s  (csv: %s)" % (path, os.path.join(os.path.dirname(path), "mesh.csv")))
