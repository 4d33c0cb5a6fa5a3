"""Self-contained HTML pages of node-by-node heatmaps: a matrix of cells, each a value, its label, a state
and details, whatever the cells mean (a run's metrics, or per-link deltas between two runs).

Python decides every text a cell shows (labels are formatted here, with ``metrics.format_value``); the
page's inline JavaScript (``report.js``) draws the matrices from data embedded as JSON, colours them,
and shows a cell's details on hover or click.  The page loads nothing: no network, no CDN.
"""
from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

_HERE = os.path.dirname(os.path.abspath(__file__))

# States drawn distinctly: "failed" (outline and "!"), "error" (hatched, "error", never a value), "none"
# (a pair not measured: blank).  Any other state (e.g. "passed") is drawn by its value's colour alone.
STATE_FAILED, STATE_ERROR = "failed", "error"

# How a state looks (report.css): "failed" outlined with "!", "error" hatched and never a value, "missing"
# dashed and never a value, "none" white and framed, "blank" grey and unframed (a pair the plan leaves out);
# a state not listed in a heatmap's ``states`` is drawn by its colour.
LOOKS = ("failed", "error", "missing", "none", "blank")

DetailRow = tuple[str, str, str]       # (name, value, style: "" | "ok" | "bad" | "warn" | "na" | "mono")
Section = tuple[str, Sequence[DetailRow]]  # (title, rows)


@dataclass(frozen=True)
class Scale:
    """One thing a heatmap can be coloured by (a metric): the chooser lists the scales cells have values for."""
    key: str                 # e.g. "throughput_bps"
    label: str               # e.g. "throughput"
    higher_is_better: bool   # colours are direction-aware: the bad end is always the same colour


@dataclass(frozen=True)
class State:
    """A cell state drawn beyond colour, and what the legend and the details call it."""
    name: str                # the Cell.state it is for; "none": pairs without a cell
    look: str                # one of LOOKS
    legend: str              # e.g. "threshold failed"
    text: str = ""           # on a large cell without a value (e.g. "error"); for "none": the details' words


#: The mesh report's states (the default of every heatmap).
MESH_STATES = (State(STATE_FAILED, "failed", "threshold failed"),
               State(STATE_ERROR, "error", "error, no measurement", "error"),
               State("none", "none", "not measured", "This pair has no measurement in this run (deselected, "
                                                     "skipped, or not reached before the run ended)."))
#: A pair the run's plan (``--mesh-plan``) leaves out: blank, not missing.
UNPLANNED = State("unplanned", "blank", "not in the plan", "The run's plan (--mesh-plan) does not measure this pair.")


@dataclass
class Cell:
    src: str
    dst: str
    state: str                                               # "passed", "failed", "error", or another word
    values: dict[str, float] = field(default_factory=dict)   # scale key -> value (absent: none for that scale)
    labels: dict[str, str] = field(default_factory=dict)     # scale key -> the text shown for that value
    detail: Sequence[Section] = ()                           # shown on hover or click
    marks: Sequence[str] = ()                                # short words shown on the cell's line in details


@dataclass(frozen=True)
class Outline:
    """Cells framed as one shape (a row, a column, a block, a cell) and named: a finding of the diagnosis."""
    title: str                    # e.g. "sender node3"
    status: str                   # the finding's: failed, doubtful, notice
    cells: tuple[tuple[str, str], ...]   # (row, column) names; a node to itself may be one, to close a row's frame


@dataclass
class Heatmap:
    """A matrix: rows are sources, columns destinations; a pair without a cell is drawn as not measured."""
    key: str                     # unique in the page (an HTML id is derived from it)
    title: str
    sources: list[str]
    destinations: list[str]
    scales: list[Scale]          # the first is shown first
    cells: list[Cell]
    views: tuple[str, ...] = ("value", "median", "asymmetry")   # the JS views offered, the first shown (report.js)
    states: tuple[State, ...] = MESH_STATES                      # in legend order
    absent: str = "none"         # the state of a pair without a cell ("unplanned" when a plan leaves pairs out)
    outlines: list[Outline] = field(default_factory=list)   # findings (diagnosis.py): cells drawn framed together


Block = Union[str, Heatmap]      # a page is trusted HTML (already escaped) and heatmaps, in order


def esc(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _compact(value: float) -> float | None:
    """Six significant digits: the colour and the median need no more, and 9,900 cells stay small."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


class _Strings:
    """Interns repeated detail texts ("client port", "passed", a test's command prefix) as indices."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.table: list[str] = []

    def __call__(self, text: str) -> int:
        if text.__class__ is not str:   # a hand-edited mesh.json may hold anything
            text = "" if text is None else str(text)
        at = self.index.get(text)
        if at is None:
            at = self.index[text] = len(self.table)
            self.table.append(text)
        return at


def _payload(heatmap: Heatmap, strings: _Strings) -> dict:
    rows = {name: i for i, name in enumerate(heatmap.sources)}
    cols = {name: i for i, name in enumerate(heatmap.destinations)}
    keys = [scale.key for scale in heatmap.scales]
    for state in heatmap.states:
        if state.look not in LOOKS:
            raise ValueError(f"state {state.name!r}: look {state.look!r} is not one of {', '.join(LOOKS)}")
    cells = []
    for cell in heatmap.cells:
        if cell.src not in rows or cell.dst not in cols:
            raise ValueError(f"cell {cell.src}->{cell.dst}: not a row and column of heatmap {heatmap.key!r}")
        cells.append([
            rows[cell.src], cols[cell.dst], strings(cell.state),
            [_compact(cell.values[k]) if k in cell.values else None for k in keys],
            [strings(cell.labels[k]) if k in cell.labels else -1 for k in keys],
            [[strings(title), [[strings(n), strings(v), strings(s)] for n, v, s in section]]
             for title, section in cell.detail],
            [strings(mark) for mark in cell.marks],
        ])
    return {"key": heatmap.key, "title": heatmap.title, "rows": heatmap.sources, "cols": heatmap.destinations,
            "scales": [{"key": s.key, "label": s.label, "hib": s.higher_is_better} for s in heatmap.scales],
            "views": list(heatmap.views), "cells": cells, "absent": heatmap.absent,
            "outlines": [{"title": o.title, "status": o.status,
                          "cells": [[rows[s], cols[d]] for s, d in o.cells if s in rows and d in cols]}
                         for o in heatmap.outlines],
            "states": [{"name": s.name, "look": s.look, "legend": s.legend, "text": s.text} for s in heatmap.states]}


def script_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<' (so no '</script>' or '<!--'), no '&'."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def heatmap_anchor(heatmap: Heatmap) -> str:
    """The container a heatmap is drawn into; put it where the matrix belongs in the page."""
    return f'<div class="heatmap" data-heatmap="{esc(heatmap.key)}"></div>'


def _asset(name: str) -> str:
    with open(os.path.join(_HERE, name), encoding="utf-8") as handle:
        return handle.read()


def render_page(title: str, blocks: Sequence[Block]) -> str:
    """One self-contained HTML document: ``blocks`` in order, each heatmap drawn where it stands."""
    strings = _Strings()
    heatmaps, body = [], []
    for block in blocks:
        if isinstance(block, Heatmap):
            heatmaps.append(_payload(block, strings))
            body.append(heatmap_anchor(block))
        else:
            body.append(block)
    if len({h["key"] for h in heatmaps}) != len(heatmaps):
        raise ValueError("heatmap keys must be unique in a page")
    data = {"strings": strings.table, "heatmaps": heatmaps}
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No fetches of any kind: everything the page needs is in this file.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        f"<title>{esc(title)}</title>",
        f"<style>\n{_asset('report.css')}</style>",
        "</head><body>",
        *body,
        f'<script type="application/json" id="meshperf-data">{script_json(data)}</script>',
        f"<script>\n{_asset('report.js')}</script>",
        "</body></html>",
        "",
    ])
