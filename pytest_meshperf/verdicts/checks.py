"""Relative (``throughput>=0.8*median``) and asymmetry (``asymmetry<=20%``) thresholds: what a check judges.

A pair test cannot judge these alone: they need the other pairs of its test.
So at the end of collection (after ``-k``) each test function with such
thresholds gets one extra item per selected pair, appended after every
measurement item: ``test_tcp[node1->node2]`` measures,
``test_tcp[node1->node2:mesh]`` checks.  Every xdist worker builds the same
items from the same collection, so all agree on which pairs are selected, and
the scheduler (scheduling.py) hands a check out only once no measurement is
left to hand out, so a check never waits for a measurement queued behind it
on its own worker.

A check item reads the test's entries from the run's journal (every worker
journals into the same run directory), waiting, bounded in time, until every
selected pair is there, then judges and journals its verdict as an entry of
its own under the test key ``<test key>:mesh`` (``"kind": "check"``).  It
passes, fails (both values and the median in the message), errors (its pair,
or the reverse pair of an asymmetry, has no measurement; the wait timed out)
or skips (the reverse pair is not selected in this run).

This module is the judging (plans, the journal reader, verdicts); the pytest items
that run it are check_items.py.
"""
from __future__ import annotations

import glob
import json
import os
import re
import statistics
import time
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any

from pytest_meshperf.errors import MeasurementError
from pytest_meshperf.plan.links import Pair, link_id
from pytest_meshperf.results.layout import JOURNAL_DIR, record_head
from pytest_meshperf.spec.metrics import MAIN_METRICS, METRICS, format_value
from pytest_meshperf.spec.thresholds import NEGATED, Threshold, holds

CHECK_SUFFIX = ":mesh"
CHECK_KIND = "check"
WAIT_BASE_S = 60.0          # a check waits at most this ...
WAIT_PER_PAIR_FACTOR = 2.0  # ... plus this many times each selected pair's expected measurement time
PAIR_OVERHEAD_S = 5.0       # a measurement's set-up and tear-down beyond its duration
POLL_S = 0.2
_CHECK_ID = re.compile(r"\[[^\[\]]*" + re.escape(CHECK_SUFFIX) + r"\]$")


def is_check_id(nodeid: str) -> bool:
    return bool(_CHECK_ID.search(nodeid))


def is_check_key(test_key: str) -> bool:
    return test_key.endswith(CHECK_SUFFIX)


@dataclass(frozen=True)
class CheckPlan:
    """What one check item judges: its pair's deferred thresholds against the test's selected pairs."""
    test: str                               # the measured test's key in the result file
    name: str                               # the test function's name
    pair: Any                               # measurement.Pair
    pairs: tuple[Any, ...]                  # every selected pair of the test, in collection order
    thresholds: tuple[Threshold, ...]       # the deferred ones only
    wait_s: float                           # how long to wait for the other pairs' entries


@dataclass
class Entry:
    """What a check needs of a journaled measurement."""
    status: str
    metrics: dict[str, float]
    error: str | None


class JournalReader:
    """Reads the run's journals as they grow (every writer's file), keeping the entries of the tests asked for."""

    def __init__(self, run_path: str):
        self.dir = os.path.join(run_path, JOURNAL_DIR)
        self.offsets: dict[str, int] = {}
        self.entries: dict[tuple[str, str, str], Entry] = {}

    def read(self, tests: Container[str]) -> None:
        for path in sorted(glob.glob(os.path.join(self.dir, "*.jsonl"))):
            with open(path, "rb") as handle:
                handle.seek(self.offsets.get(path, 0))
                data = handle.read()
            end = data.rfind(b"\n") + 1   # a line still being written waits for the next read
            for line in data[:end].splitlines():
                head = record_head(line)
                key = (head[2], head[0], head[1]) if head is not None else None
                if key is None or key[0] not in tests or key in self.entries:
                    continue   # first record of a key wins, as in assembly
                try:
                    record = json.loads(line)
                except ValueError:
                    continue   # cut off by a killed writer
                self.entries[key] = Entry(record.get("status", "error"), record.get("metrics") or {},
                                           record.get("error"))
            self.offsets[path] = self.offsets.get(path, 0) + end


_READERS: dict[str, JournalReader] = {}   # per run directory: read each journal line once per process


def wait_for_entries(run_path: str, plan: CheckPlan, needed: Iterable[Pair]) -> dict[str, Entry]:
    """pair id -> its entry, for every pair in ``needed``; MeasurementError after ``plan.wait_s``."""
    reader = _READERS.setdefault(run_path, JournalReader(run_path))
    deadline = time.monotonic() + plan.wait_s
    while True:
        reader.read({plan.test})
        found = {p.id: reader.entries[(plan.test, p.src.name, p.dst.name)] for p in needed
                 if (plan.test, p.src.name, p.dst.name) in reader.entries}
        missing = [p.id for p in needed if p.id not in found]
        if not missing:
            return found
        if time.monotonic() >= deadline:
            waited = (f"waited {plan.wait_s:.0f} s for the other pairs of {plan.test} to be journaled; still "
                      "missing") if plan.wait_s else f"pairs of {plan.test} that ran without a measurement"
            raise MeasurementError(f"{waited}: {', '.join(missing)} (did their tests call measure()?)")
        time.sleep(POLL_S)


@dataclass
class Verdict:
    data: dict[str, Any]                    # the threshold's record: to_dict() + measured, passed, message ...
    outcome: str                            # "passed", "failed", "skipped" (n/a: reverse not selected), "error"
    properties: list[tuple[str, float]] = field(default_factory=list)


def _fmt(metric: str, value: float) -> str:
    return format_value(METRICS[metric], value)


def judge_median(t: Threshold, pair_id: str, entries: dict[str, Entry]) -> Verdict:
    info = METRICS[t.metric]
    values = [e.metrics[t.metric] for e in entries.values() if e.status != "error" and t.metric in e.metrics]
    measured = entries[pair_id].metrics.get(t.metric)
    if measured is None or not values:
        return Verdict({**t.to_dict(), "measured": None, "passed": None, "median": None, "limit": None,
                        "pairs": len(values),
                        "message": f"{info.label} not measured by this test ({t.origin})"}, "passed")
    median = statistics.median(values)
    limit = t.value * median
    passed = holds(measured, t.op, limit)
    message = (f"{info.label} {_fmt(t.metric, measured)} {t.op if passed else NEGATED[t.op]} {t.value:g} x median "
               f"{_fmt(t.metric, median)} = {_fmt(t.metric, limit)} (median of {len(values)} measured pair"
               f"{'' if len(values) == 1 else 's'}; {t.origin})")
    return Verdict({**t.to_dict(), "measured": measured, "passed": passed, "median": median, "limit": limit,
                    "pairs": len(values), "message": message}, "passed" if passed else "failed",
                   [("median_" + t.metric, median)])


def judge_asymmetry(t: Threshold, pair: Pair, entries: dict[str, Entry], selected: Container[str]) -> Verdict:
    reverse = link_id(pair.dst.name, pair.src.name)
    this = entries[pair.id]
    metric = t.metric or next((m for m in MAIN_METRICS if m in this.metrics), "")
    base = {**t.to_dict(), "metric": metric, "reverse": reverse, "value_pair": None, "value_reverse": None,
            "measured": None, "passed": None}
    if reverse not in selected:
        return Verdict({**base, "message": f"not evaluated: the reverse pair {reverse} is not selected in this run ("
                                           f"{t.origin})"}, "skipped")
    other = entries[reverse]
    if other.status == "error":
        return Verdict({**base, "message": f"not evaluated: the reverse pair {reverse} has no measurement ("
                                           f"{other.error})"}, "error")
    a, b = this.metrics.get(metric), other.metrics.get(metric)
    if not metric or a is None or b is None:
        return Verdict({**base, "message": f"{METRICS[metric].label if metric else 'a main metric'} not measured by "
                                           f"both {pair.id} and {reverse} ({t.origin})"}, "passed")
    asymmetry = 100.0 * abs(a - b) / max(a, b) if max(a, b) > 0 else 0.0
    passed = holds(asymmetry, t.op, t.value)
    message = (f"asymmetry of {METRICS[metric].label} {asymmetry:.1f}% {t.op if passed else NEGATED[t.op]} {t.value:g}"
               f"%: {pair.id} {_fmt(metric, a)}, {reverse} {_fmt(metric, b)} ({t.origin})")
    return Verdict({**base, "value_pair": a, "value_reverse": b, "measured": asymmetry, "passed": passed,
                    "message": message}, "passed" if passed else "failed", [("asymmetry_" + metric, asymmetry)])
