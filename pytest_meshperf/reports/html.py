"""The HTML mesh report: a run's mesh.json as one self-contained page.

The run summary, one heatmap per test (rows source, columns destination; every metric of the test to
choose from), per-node medians and CPU peaks, and the failures and errors with their messages.  The
matrices themselves are drawn by ``heatmap.py``; this module only knows what a mesh.json says.
"""
from __future__ import annotations

import json
import os
import shlex
import statistics
from collections import OrderedDict
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Any

from pytest_meshperf.plan.plans import planned_links, recorded_plan
from pytest_meshperf.reports.cells import (
    _metric_order,
    _numbers,
    label,
    mesh_cell,
    metric_label,
    params_text,
    seconds_between,
)
from pytest_meshperf.reports.findings_html import findings_block, outlines
from pytest_meshperf.reports.heatmap import MESH_STATES, UNPLANNED, Cell, Heatmap, Scale, esc, render_page
from pytest_meshperf.results.assemble import Assembled
from pytest_meshperf.results.read import entry_messages, iter_entries
from pytest_meshperf.spec.metrics import MAIN_METRICS, METRICS
from pytest_meshperf.spec.units import format_number

# One test's measurements: (source, destination, its mesh.json entry) each.
TestEntries = list[tuple[str, str, dict[str, Any]]]

REPORT_FILE = "report.html"
MAX_LISTED = 1000          # failures, errors and warnings listed in full; the rest are counted (mesh.json has all)
AUTO_REPORT_MAX_MEASUREMENTS = 40_000   # about 200 nodes: above, the automatic report is skipped (a 20 MB page
                                        # and ~1 GB to build it); meshperf report still makes it
NODES_OPEN_UP_TO = 12      # node tables start unfolded for small clusters


@dataclass
class ReportOutcome:
    """What the automatic report after a pytest run did: its path, or why there is none (one line)."""
    path: str | None = None
    problem: str | None = None


def _without_raw(pairs):
    return {key: value for key, value in pairs if key != "raw"}


def load_mesh(mesh_path: str) -> dict:
    """A mesh.json without the tools' raw output (most of its bytes), each dropped as soon as it is parsed."""
    with open(mesh_path, encoding="utf-8") as handle:
        return json.load(handle, object_pairs_hook=_without_raw)


def cluster_nodes(mesh: dict, sides: Container[str]) -> list[str]:
    """Cluster nodes that can play ``sides`` (roles), in inventory order."""
    return [name for name, node in (mesh.get("cluster") or {}).get("nodes", {}).items()
            if (node or {}).get("role", "both") in sides]


def _tests(mesh: dict):
    tests = OrderedDict()
    for src, dst, key, entry in iter_entries(mesh):
        tests.setdefault(key, []).append((src, dst, entry))
    return tests


def main_metric(entries: TestEntries) -> str | None:
    present = set()
    for _, _, entry in entries:
        present.update(_numbers(entry.get("metrics")))
    for name in MAIN_METRICS:
        if name in present:
            return name
    ordered = _metric_order(present)
    return ordered[0] if ordered else None


def heatmap_of_test(index: int, key: str, entries: TestEntries, sources: list[str], destinations: list[str],
                    planned: set[tuple[str, str]] | None = None, findings: list[dict] | None = None) -> Heatmap:
    """The test's matrix; with ``planned`` (a plan that leaves pairs out), a pair outside it is blank and a
    planned pair without a measurement is drawn as not measured."""
    cells = [mesh_cell(src, dst, key, entry) for src, dst, entry in entries]
    if planned is not None:
        measured = {(cell.src, cell.dst) for cell in cells}
        cells += [Cell(src, dst, "none") for src, dst in sorted(planned - measured)]
    rows = sources + [n for n in OrderedDict.fromkeys(c.src for c in cells) if n not in sources]
    cols = destinations + [n for n in OrderedDict.fromkeys(c.dst for c in cells) if n not in destinations]
    present = set()
    for cell in cells:
        present.update(cell.values)
    first = main_metric(entries)
    order = _metric_order(present)
    if first in order:
        order.remove(first)
        order.insert(0, first)
    scales = [Scale(m, metric_label(m), METRICS[m].higher_is_better if m in METRICS else True) for m in order]
    framed = outlines(findings or [], key, rows, cols)
    if planned is None:
        return Heatmap(f"t{index}", key, rows, cols, scales, cells, outlines=framed)
    return Heatmap(f"t{index}", key, rows, cols, scales, cells, states=MESH_STATES + (UNPLANNED,), absent="unplanned",
                   outlines=framed)


# -- page blocks (trusted HTML: every value passes through esc) ------------------------------------------

def _dl(items) -> str:
    terms = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="run">{terms}</dl>'


def _duration(run: dict) -> str:
    seconds = seconds_between(run, "started", "finished")
    return "" if seconds is None else f" ({format_number(seconds, 3)} s)"


def count_boxes(counts: Iterable[tuple[str, int, str]]) -> str:
    """The row of big numbers: (name, count, words) each; ``name`` is a CSS class and ``data-count``."""
    boxes = "".join(f'<div class="count {esc(name)}" data-count="{esc(name)}"><b>{value}</b>{esc(text)}</div>'
                    for name, value, text in counts)
    return f'<div class="counts">{boxes}</div>'


def when_html(run: dict) -> str:
    return esc(run.get("started", "?")) + " \u2192 " + esc(run.get("finished", "?")) + esc(_duration(run))


def cluster_html(mesh: dict) -> str:
    run, cluster = mesh.get("run") or {}, mesh.get("cluster") or {}
    spec = cluster.get("spec", (run.get("parameters") or {}).get("cluster", ""))
    source = f" from <code>{esc(cluster['source'])}</code>" if cluster.get("source") else ""
    return f"{esc(cluster.get('kind', '?'))} <code>{esc(spec)}</code>, {len(cluster.get('nodes') or {})} nodes{source}"


def planned_pairs(mesh: dict) -> set[tuple[str, str]] | None:
    """The (source, destination) pairs of the run's plan, or None for the full mesh (nothing left out)."""
    plan = recorded_plan(((mesh.get("run") or {}).get("parameters") or {}).get("plan"))
    if plan.kind == "full":
        return None
    nodes = (mesh.get("cluster") or {}).get("nodes") or {}
    return set(planned_links([(name, (node or {}).get("role", "both"), (node or {}).get("labels") or {})
                              for name, node in nodes.items()], plan))


def summary_block(mesh: dict, tests: dict[str, TestEntries], source_name: str) -> str:
    run, cluster = mesh.get("run") or {}, mesh.get("cluster") or {}
    nodes = cluster.get("nodes") or {}
    params = run.get("parameters") or {}
    counts = {"passed": 0, "failed": 0, "error": 0}
    measured = possible = 0
    # What the run's plan asked for, per test: a pair the plan left out is not missing.
    planned = len(planned_links([(name, (node or {}).get("role", "both"), (node or {}).get("labels") or {})
                                 for name, node in nodes.items()], recorded_plan(params.get("plan"))))
    for entries in tests.values():
        for _, _, entry in entries:
            counts[entry.get("status")] = counts.get(entry.get("status"), 0) + 1
        measured += len(entries)
        possible += planned
    missing = max(0, possible - measured)
    out = [f'<header><h1>meshperf report<span class="run">{esc(run.get("id", ""))}</span></h1>',
           f'<p class="sub">{esc(source_name)}</p>']
    if run.get("interrupted"):
        out.append('<p class="banner">This run was interrupted (or rebuilt from its journal): it holds the '
                   'measurements that finished.</p>')
    unreachable = [(name, node["unreachable"]) for name, node in nodes.items() if (node or {}).get("unreachable")]
    for name, reason in unreachable:
        out.append(f'<p class="banner">Node <b>{esc(name)}</b> could not be used: {esc(reason)}</p>')
    out.append(count_boxes([("measurements", measured, "measurements"), ("passed", counts.get("passed", 0), "passed"),
                            ("failed", counts.get("failed", 0), "failed"), ("error", counts.get("error", 0), "errors"),
                            ("missing", missing, "not measured")]))
    options = params.get("options") or {}
    items = [("when", when_html(run)), ("cluster", cluster_html(mesh)),
             ("schedule", esc(params.get("schedule", "?"))),
             ("options", esc(params_text(options) or "none")),
             ("thresholds", esc(", ".join(params.get("thresholds") or []) or "none on the command line")),
             ("command", f"<code>{esc(shlex.join(str(a) for a in run.get('command_line') or []))}</code>"),
             ("exit status", esc(run.get("exit_status"))),
             ("meshperf", esc(run.get("meshperf_version") or mesh.get("meshperf_version") or "?"))]
    out.append(_dl(items))
    if len(tests) > 1:
        links = " ".join(f'<a href="#test-{i}">{esc(key)}</a>' for i, key in enumerate(tests))
        out.append(f'<nav class="tests">Tests: {links}</nav>')
    out.append("</header>")
    return "\n".join(out)


def _peak(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return f"{format_number(max(values), 3)}%" if values else ""


def nodes_block(entries: TestEntries, metric: str | None, nodes: list[str]) -> str:
    """Per node: medians of the test's main metric sent and received, failures, errors and CPU peaks."""
    out_values, in_values, bad, load = {}, {}, {}, {}
    for src, dst, entry in entries:
        status = entry.get("status")
        value = _numbers(entry.get("metrics")).get(metric) if metric and status != "error" else None
        for node, side, values in ((src, "src", out_values), (dst, "dst", in_values)):
            if value is not None:
                values.setdefault(node, []).append(value)
            if status in ("failed", "error"):
                bad.setdefault(node, {"failed": 0, "error": 0})[status] += 1
            node_load = (entry.get("node_load") or {}).get(side) or {}
            for figure in ("core_busy_peak_percent", "process_cpu_percent"):
                load.setdefault((node, side, figure), []).append(node_load.get(figure))
    has_load = any(v is not None for values in load.values() for v in values)
    name = metric_label(metric) if metric else "value"
    head = ["node", f"sent: median {name}", f"received: median {name}", "failed", "errors"]
    if has_load:
        head += ["CPU peak sending (core / tool)", "CPU peak receiving (core / tool)"]
    rows = []
    for node in nodes:
        cells = []
        for values in (out_values, in_values):
            got = values.get(node) or []
            cells.append(f"{esc(label(metric, statistics.median(got)))} <small>({len(got)})</small>"
                         if got else "\u2013")
        counts = bad.get(node, {"failed": 0, "error": 0})
        cells += [str(counts["failed"]), str(counts["error"])]
        if has_load:
            for side in ("src", "dst"):
                core, tool = (_peak(load.get((node, side, f), [])) for f in ("core_busy_peak_percent",
                                                                               "process_cpu_percent"))
                cells.append(f"{core or '–'} / {tool or '–'}" if core or tool else "\u2013")
        tds = "".join(f'<td class="num">{c}</td>' for c in cells)
        rows.append(f"<tr><td>{esc(node)}</td>{tds}</tr>")
    opened = " open" if len(nodes) <= NODES_OPEN_UP_TO else ""
    peaks = ", CPU peaks" if has_load else ""
    ths = "".join(f"<th>{esc(h)}</th>" for h in head)
    return (f'<details class="nodes"{opened}><summary>Per node ({len(nodes)} nodes): medians of {esc(name)}, '
            f'failures, errors{peaks}</summary><table class="list"><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></details>')


def section_head(index: int, key: str, entries: TestEntries) -> str:
    statuses = [entry.get("status") for _, _, entry in entries]
    tools = sorted({f"{e.get('tool') or '?'} {e.get('tool_version') or ''}" for _, _, e in entries
                    if e.get("status") != "error"})
    params = params_text((entries[0][2].get("params") or {})) if entries else ""
    shown_tools = esc(", ".join(t.strip() for t in tools) or "no tool output")
    shown_params = (" \u00b7 " + esc(params)) if params else ""
    return (f'<section id="test-{index}"><h2><code>{esc(key)}</code></h2><p class="sub">{len(entries)} pairs: '
            f'{statuses.count("passed")} passed, {statuses.count("failed")} failed, {statuses.count("error")} errors '
            f'\u00b7 {shown_tools}{shown_params}</p>')


def problems_block(tests: dict[str, TestEntries]) -> str:
    problems, warnings = [], []
    for key, entries in tests.items():
        for src, dst, entry in entries:
            if entry.get("status") in ("failed", "error"):
                problems.append((entry["status"], src, dst, key, entry_messages(entry)))
            for warning in entry.get("warnings") or []:
                warnings.append((src, dst, key, warning))
    problems.sort(key=lambda p: p[0] != "error")   # errors first: nothing was measured there
    out = [f'<section id="problems"><h2>Failures and errors ({len(problems)})</h2>']
    if not problems:
        out.append('<p class="sub">Every measurement was made and met its thresholds.</p>')
    else:
        out.append('<div class="%s"><table class="list problems"><thead>' % ("scroll" if len(problems) > 25 else ""))
        out.append('<tr><th>status</th><th>pair</th><th>test</th><th>message</th></tr></thead><tbody>')
        for status, src, dst, key, messages in problems[:MAX_LISTED]:
            shown = "<br>".join(esc(m) for m in messages) or "\u2013"
            out.append(f'<tr data-status="{status}"><td class="status-{status}">{status.upper()}</td>'
                       f'<td>{esc(src)} \u2192 {esc(dst)}</td><td><code>{esc(key)}</code></td>'
                       f'<td class="msg">{shown}</td></tr>')
        out.append("</tbody></table></div>")
        if len(problems) > MAX_LISTED:
            out.append(f'<p class="sub">... and {len(problems) - MAX_LISTED} more: <code>meshperf summary</code> lists '
                       'them all.</p>')
    if warnings:
        out.append(f'<details><summary>Warnings ({len(warnings)}): figures that may mislead, e.g. a CPU-bound '
                   'end</summary><table class="list"><tbody>')
        out += [f'<tr><td>{esc(src)} \u2192 {esc(dst)}</td><td><code>{esc(key)}</code></td><td class="msg">{esc(warning)}'
                '</td></tr>' for src, dst, key, warning in warnings[:MAX_LISTED]]
        out.append("</tbody></table></details>")
    out.append("</section>")
    return "\n".join(out)


def cluster_block(mesh: dict) -> str:
    nodes = (mesh.get("cluster") or {}).get("nodes") or {}
    rows = []
    for name, node in nodes.items():
        node = node or {}
        tools = ", ".join(f"{tool} {(info or {}).get('version') or (info or {}).get('error') or '?'}"
                          for tool, info in (node.get("tools") or {}).items())
        labels = ", ".join(f"{key}={value}" for key, value in (node.get("labels") or {}).items())
        cells = (name, node.get("address"), node.get("data_address"), node.get("role"), tools or "\u2013",
                 node.get("unreachable") or labels)
        rows.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in cells) + "</tr>")
    opened = " open" if len(nodes) <= NODES_OPEN_UP_TO else ""
    return (f'<section id="cluster"><details{opened}><summary>Cluster: {len(nodes)} nodes</summary>'
            '<table class="list"><thead><tr><th>node</th><th>address</th><th>data address</th><th>role</th>'
            f'<th>tools</th><th>labels / problem</th></tr></thead><tbody>{"".join(rows)}</tbody></table></details>'
            '</section>')


def build_report(mesh: dict, source_name: str = "") -> str:
    """The whole report page of a loaded mesh.json."""
    tests = _tests(mesh)
    sources, destinations = cluster_nodes(mesh, ("client", "both")), cluster_nodes(mesh, ("server", "both"))
    findings = mesh.get("diagnosis")
    blocks = [summary_block(mesh, tests, source_name), findings_block(findings, list(tests))]
    planned = planned_pairs(mesh)
    for index, (key, entries) in enumerate(tests.items()):
        heatmap = heatmap_of_test(index, key, entries, sources, destinations, planned, findings)
        blocks += [section_head(index, key, entries), heatmap,
                   nodes_block(entries, main_metric(entries), list(OrderedDict.fromkeys(heatmap.sources
                                                                                        + heatmap.destinations))),
                   "</section>"]
    if not tests:
        blocks.append('<p class="sub">This run holds no measurements.</p>')
    blocks += [problems_block(tests), cluster_block(mesh),
               f'<footer>meshperf {esc(mesh.get("meshperf_version", ""))} \u00b7 rows: source (client), columns: '
               'destination (server) \u00b7 colours: per test and metric, blue is good and red bad whichever way the '
               'metric runs</footer>']
    return render_page(f"meshperf {(mesh.get('run') or {}).get('id') or 'report'}", blocks)


def save_page(page: str, out_path: str) -> str:
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(tmp, out_path)   # never a half-written report
    return out_path


def beside(mesh_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(mesh_path)), REPORT_FILE)


def write_report(mesh_path: str, out_path: str | None = None) -> str:
    """Render ``mesh_path`` (a mesh.json) into ``out_path`` (default: report.html beside it); returns the path."""
    return save_page(build_report(load_mesh(mesh_path), os.path.abspath(mesh_path)), out_path or beside(mesh_path))


def report_after_run(assembled: Assembled) -> ReportOutcome:
    """The automatic report.html beside a run's mesh.json; a failure is one line, never an exception."""
    if len(assembled.rows) > AUTO_REPORT_MAX_MEASUREMENTS:
        return ReportOutcome(problem=f"not written for {len(assembled.rows)} measurements (over "
                                     f"{AUTO_REPORT_MAX_MEASUREMENTS}); make it with: meshperf report {assembled.path}")
    try:
        return ReportOutcome(path=write_report(assembled.path))
    except Exception as exc:   # the results are safe in mesh.json: a report must not cost the run
        return ReportOutcome(problem=f"not written: {type(exc).__name__}: {exc} (mesh.json is complete; retry with: "
                                     f"meshperf report {assembled.path})")


__all__ = ["REPORT_FILE", "ReportOutcome", "build_report", "load_mesh", "report_after_run", "save_page",
           "write_report"]
