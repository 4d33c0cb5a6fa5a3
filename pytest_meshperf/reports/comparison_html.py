"""A Comparison (compare.py) as one self-contained HTML page: what ``meshperf compare --html`` writes.

A summary of both runs and the counts per status; the regressions (and links that now error), worst
first; then per test a heatmap of each link's relative change per compared metric (``heatmap.py`` draws
it in its "change" view: coloured around no change, worse always red whichever way the metric runs).  A
cell's state is the worst status of its metrics; every state is drawn distinctly (COMPARE_STATES).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from pytest_meshperf.reports.cells import metric_label
from pytest_meshperf.reports.comparison import change_text, short_name, value_text
from pytest_meshperf.reports.heatmap import Cell, Heatmap, Scale, State, esc, render_page
from pytest_meshperf.reports.html import cluster_html, cluster_nodes, count_boxes, load_mesh, when_html
from pytest_meshperf.spec.metrics import METRICS
from pytest_meshperf.verdicts.compare import (
    ERROR_IN_NEW,
    ERROR_IN_OLD,
    IMPROVED,
    MISSING_IN_NEW,
    MISSING_IN_OLD,
    REGRESSED,
    STATUSES,
    Comparison,
    MetricChange,
)

#: What CI fails on (Comparison.failed): listed in the regressions table.
FAILING = (REGRESSED, ERROR_IN_NEW)
COMPARE_STATES = (State(REGRESSED, "failed", "regressed"),
                  State(ERROR_IN_NEW, "error", "error in the new run", "error now"),
                  State(MISSING_IN_NEW, "missing", "only in the old run", "gone"),
                  State(MISSING_IN_OLD, "missing", "only in the new run", "new"),
                  State(ERROR_IN_OLD, "missing", "error in the old run", "was error"),
                  State("none", "none", "in neither run", "Neither run has this pair."))
STYLE = {REGRESSED: "bad", ERROR_IN_NEW: "bad", IMPROVED: "ok", MISSING_IN_NEW: "na", MISSING_IN_OLD: "na",
         ERROR_IN_OLD: "na"}


def words(status: str) -> str:
    return status.replace("_", " ")


def _metric_section(change: MetricChange):
    rows = [("status", words(change.status), STYLE.get(change.status, "")),
            ("old", value_text(change, change.old), ""), ("new", value_text(change, change.new), "")]
    if change.change is not None:
        rows.append(("change", change_text(change), STYLE.get(change.status, "")))
    return metric_label(change.metric), rows


def _link_section(first: MetricChange):
    rows = [("test", first.test, "mono"),
            ("old run", first.old_status or "not in it", "na" if first.old_status is None else ""),
            ("new run", first.new_status or "not in it", "na" if first.new_status is None else "")]
    rows += [(name, error, "bad") for name, error in (("old error", first.old_error), ("new error", first.new_error))
             if error]
    return "Link", rows


def link_cell(changes: list[MetricChange]) -> Cell:
    """One link of one test: ``changes`` are its metrics, worst first (as Comparison orders them)."""
    first = changes[0]
    measured = [c for c in changes if c.metric is not None and c.change is not None]
    return Cell(first.src, first.dst, first.status,
                values={c.metric: c.change for c in measured},
                labels={c.metric: change_text(c) for c in measured},
                detail=[_link_section(first)] + [_metric_section(c) for c in changes if c.metric is not None])


def _axis(meshes, sides, seen) -> list[str]:
    """Cluster nodes of either run that can play ``sides``, in inventory order, then any other seen in a link."""
    names = [name for mesh in meshes for name in cluster_nodes(mesh, sides)] + list(seen)
    return list(OrderedDict.fromkeys(names))


def heatmap_of_test(index: int, test: str, changes: list[MetricChange], meshes: Sequence[dict[str, Any]]) -> Heatmap:
    links: dict[tuple, list[MetricChange]] = OrderedDict()
    for change in changes:
        links.setdefault((change.src, change.dst), []).append(change)
    metrics = OrderedDict.fromkeys(c.metric for c in changes if c.metric is not None)
    scales = [Scale(m, metric_label(m), METRICS[m].higher_is_better if m in METRICS else True) for m in metrics]
    return Heatmap(f"c{index}", test, _axis(meshes, ("client", "both"), (s for s, _ in links)),
                   _axis(meshes, ("server", "both"), (d for _, d in links)), scales,
                   [link_cell(group) for group in links.values()], views=("change",), states=COMPARE_STATES)


def _runs_table(comparison: Comparison, meshes) -> str:
    rows = [("file", [esc(comparison.old_path), esc(comparison.new_path)]),
            ("run", [esc((m.get("run") or {}).get("id", "?")) for m in meshes]),
            ("when", [when_html(m.get("run") or {}) for m in meshes]),
            ("cluster", [cluster_html(m) for m in meshes]),
            ("meshperf", [esc((m.get("run") or {}).get("meshperf_version") or m.get("meshperf_version") or "?")
                          for m in meshes])]
    body = "".join(f"<tr><th>{esc(name)}</th><td>{old}</td><td>{new}</td></tr>" for name, (old, new) in rows)
    return ('<table class="list runs"><thead><tr><th></th><th>old (baseline)</th><th>new</th></tr></thead>'
            f'<tbody>{body}</tbody></table>')


def summary_block(comparison: Comparison, meshes: Sequence[dict[str, Any]],
                  tests: dict[str, list[MetricChange]]) -> str:
    counts = comparison.counts
    ids = [(m.get("run") or {}).get("id", "?") for m in meshes]
    out = [f'<header><h1>meshperf compare<span class="run">{esc(ids[0])} \u2192 {esc(ids[1])}</span></h1>',
           f'<p class="sub">Per link and metric: worse by more than {100.0 * comparison.tolerance:g}% is a regression '
           '(direction-aware: lower throughput, higher latency, jitter or loss is worse); a link that now errors '
           'fails too.</p>']
    failing = sorted({(c.test, c.link) for c in comparison.changes if c.status in FAILING})
    if failing:
        plural = "" if len(failing) == 1 else "s"
        named = ", ".join(f"{esc(link)} {esc(short_name(test))}" for test, link in failing)
        out.append(f'<p class="banner">FAILED: {len(failing)} link{plural} regressed or now error: {named}</p>')
    out.append(count_boxes([("compared", len(comparison.changes), "compared")]
                           + [(s, counts[s], words(s)) for s in STATUSES]))
    out.append(_runs_table(comparison, meshes))
    if comparison.metrics:
        asked = esc(", ".join(metric_label(m) for m in comparison.metrics))
        out.append(f'<p class="sub">Metrics asked for: {asked}</p>')
    if len(tests) > 1:
        links = " ".join(f'<a href="#test-{i}">{esc(short_name(key))}</a>' for i, key in enumerate(tests))
        out.append(f'<nav class="tests">Tests: {links}</nav>')
    out.append("</header>")
    return "\n".join(out)


def regressions_block(comparison: Comparison) -> str:
    rows = [c for c in comparison.changes if c.status in FAILING]   # worst first already
    out = [f'<section id="regressions"><h2>Regressions and new errors ({len(rows)})</h2>']
    if not rows:
        out.append('<p class="sub">No link got worse than the tolerance, and none now errors.</p></section>')
        return "\n".join(out)
    out.append('<table class="list regressions"><thead><tr><th>status</th><th>link</th><th>test</th><th>metric</th>'
               '<th>old</th><th>new</th><th>change</th></tr></thead><tbody>')
    out += [_regression_row(c) for c in rows]
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _regression_row(c: MetricChange) -> str:
    css = "failed" if c.status == REGRESSED else "error"
    metric = esc(metric_label(c.metric) if c.metric else "\u2013")
    change = esc(change_text(c) if c.change is not None else c.new_error or "")
    return (f'<tr data-status="{c.status}" data-link="{esc(c.link)}"><td class="status-{css}">{esc(words(c.status))}'
            f'</td><td>{esc(c.link)}</td><td><code>{esc(c.test)}</code></td><td>{metric}</td>'
            f'<td class="num">{esc(value_text(c, c.old))}</td><td class="num">{esc(value_text(c, c.new))}</td>'
            f'<td class="msg">{change}</td></tr>')


def comparison_page(comparison: Comparison) -> str:
    """The whole page; both runs' mesh.json are read again for their summaries (not their raw output)."""
    meshes = [load_mesh(comparison.old_path), load_mesh(comparison.new_path)]
    tests: dict[str, list[MetricChange]] = OrderedDict()
    for change in sorted(comparison.changes, key=lambda c: c.test):   # stable: worst first within a test
        tests.setdefault(change.test, []).append(change)
    blocks = [summary_block(comparison, meshes, tests), regressions_block(comparison)]
    for index, (test, changes) in enumerate(tests.items()):
        counts = OrderedDict((s, sum(c.status == s for c in changes)) for s in STATUSES)
        counted = esc(", ".join(f"{n} {words(s)}" for s, n in counts.items() if n))
        blocks += [f'<section id="test-{index}"><h2><code>{esc(test)}</code></h2>'
                   f'<p class="sub">{len({c.link for c in changes})} links: {counted}</p>',
                   heatmap_of_test(index, test, changes, meshes), "</section>"]
    blocks.append('<footer>rows: source (client), columns: destination (server) \u00b7 a cell: the relative change '
                  'of the chosen metric, old \u2192 new; red is worse and blue better whichever way the metric runs; '
                  'its state is its worst metric\'s</footer>')
    return render_page(f"meshperf compare {comparison.new_path}", blocks)


__all__ = ["COMPARE_STATES", "comparison_page", "link_cell"]
