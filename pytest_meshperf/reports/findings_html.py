"""The diagnosis in the HTML report: each finding framed on its test's heatmap (a sender's row, a receiver's
column, a node's row and column, a group's or a link's cells) and listed above the heatmaps."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_meshperf.plan.links import split_link
from pytest_meshperf.reports.heatmap import Outline, esc
from pytest_meshperf.spec.metrics import METRICS

_ORDER = {"failed": 0, "doubtful": 1, "notice": 2}


def outlines(findings: Sequence[dict[str, Any]], test: str, rows: Sequence[str], cols: Sequence[str]) -> list[Outline]:
    """The outlines of ``test``'s findings on a heatmap of ``rows`` x ``cols``."""
    shapes = []
    for f in findings:
        if f.get("test") != test:
            continue
        subject, kind = f.get("subject", ""), f.get("kind")
        if kind == "sender":
            cells = [(subject, c) for c in cols]
        elif kind == "receiver":
            cells = [(r, subject) for r in rows]
        elif kind == "node":
            cells = [(subject, c) for c in cols] + [(r, subject) for r in rows if r != subject]
        else:   # group, link, asymmetric: the links themselves
            cells = [split_link(link) for link in f.get("links") or []]
        shapes.append(Outline(f"{kind} {subject}", f.get("status", "failed"), tuple(tuple(c) for c in cells)))
    return shapes


def findings_block(findings: Sequence[dict[str, Any]] | None, tests: Sequence[str]) -> str:
    """The section listing the findings, worst first, each linked to its test's heatmap; empty without a
    diagnosis."""
    if findings is None:
        return ""
    index = {key: i for i, key in enumerate(tests)}
    out = [f'<section id="diagnosis"><h2>Diagnosis ({len(findings)} finding{"" if len(findings) == 1 else "s"})</h2>']
    if not findings:
        out.append('<p class="sub">No node, group or link stands out: whatever failed is listed under failures.</p>')
    else:
        out.append('<ul class="findings">')
        for f in sorted(findings, key=lambda f: _ORDER.get(f.get("status"), 3)):
            status = f.get("status", "failed")
            metric = METRICS[f["metric"]].label if f.get("metric") in METRICS else f.get("metric", "")
            where = f'<a href="#test-{index[f["test"]]}">{esc(f["test"])}</a>' if f.get("test") in index \
                else esc(f.get("test"))
            retest = f" \u00b7 re-test: {esc(f['retest']['outcome'])}" if f.get("retest") else ""
            out.append(f'<li data-finding="{esc(f.get("kind"))} {esc(f.get("subject"))}" data-status="{esc(status)}">'
                       f'<span class="badge st-{"failed" if status == "failed" else "none"}">{esc(status.upper())}'
                       f'</span><b>{esc(f.get("kind"))} {esc(f.get("subject"))}</b> ({esc(metric)}, {where}): '
                       f'{esc(f.get("message"))} <span class="sub">confidence {f.get("confidence", 0):.2f}{retest}'
                       '</span></li>')
        out.append("</ul>")
    out.append("</section>")
    return "\n".join(out)
