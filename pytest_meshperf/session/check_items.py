"""The check items: one pytest item per selected pair of a test with relative or asymmetry thresholds.

``add_check_items`` appends them after every measurement item at the end of
collection; ``run_check`` waits for the test's pairs in the journal, judges
with checks.py, journals the verdict and reports it as pytest's outcome.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pytest_meshperf.errors import MeasurementError, printable
from pytest_meshperf.session.measuring import MeasuringSession
from pytest_meshperf.spec.testspec import TestSpec
from pytest_meshperf.spec.thresholds import MEDIAN
from pytest_meshperf.spec.units import iso
from pytest_meshperf.verdicts.checks import (
    CHECK_KIND,
    CHECK_SUFFIX,
    PAIR_OVERHEAD_S,
    WAIT_BASE_S,
    WAIT_PER_PAIR_FACTOR,
    CheckPlan,
    Verdict,
    judge_asymmetry,
    judge_median,
    wait_for_entries,
)


class MeshCheckItem(pytest.Item):
    def __init__(self, *, plan: CheckPlan, mesh_session: MeasuringSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.mesh_session = mesh_session   # the MeshSession that planned it (session.py imports this module)

    def runtest(self) -> None:
        run_check(self.mesh_session, self.plan, self)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"{self.name} (check of {self.plan.pair.id})"


def add_check_items(items: list[pytest.Item], session: MeasuringSession, spec_key: pytest.StashKey[TestSpec]) -> None:
    """Append one check item per selected pair of every test with deferred thresholds (after -k)."""
    by_test: dict[str, list[Any]] = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        if spec_key in item.stash and callspec is not None and "mesh_pair" in callspec.params:
            by_test.setdefault(item.stash[spec_key].key, []).append(item)
    for test, members in by_test.items():
        spec = members[0].stash[spec_key]
        params, thresholds = spec.resolve({}, session.option_params, session.option_thresholds)
        deferred = tuple(t for t in thresholds if t.deferred)
        if not deferred:
            continue
        pairs = tuple(item.callspec.params["mesh_pair"] for item in members)
        expected = (params.duration_s or 0) + (params.omit_s or 0) + PAIR_OVERHEAD_S
        # Without xdist every measurement item has run when a check runs: what is missing stays missing.
        wait_s = 0.0 if session.role == "standalone" else WAIT_BASE_S + WAIT_PER_PAIR_FACTOR * expected * len(pairs)
        for item, pair in zip(members, pairs):
            plan = CheckPlan(test, spec.name, pair, pairs, deferred, wait_s)
            items.append(MeshCheckItem.from_parent(item.parent, name=item.name[:-1] + CHECK_SUFFIX + "]",
                                                   plan=plan, mesh_session=session))


def run_check(session: MeasuringSession, plan: CheckPlan, item: pytest.Item) -> None:
    """Wait for the test's selected pairs, judge this pair's deferred thresholds, journal, report."""
    started = time.time()
    pair = plan.pair
    needed = [p for p in plan.pairs if not (session.skip_unreachable and session.unreachable(p))]
    record = {"src": pair.src.name, "dst": pair.dst.name, "test": plan.test + CHECK_SUFFIX, "kind": CHECK_KIND,
              "checks": plan.test, "nodeid": item.nodeid, "name": plan.name, "status": "error", "metrics": {},
              "thresholds": [], "error": None, "started": iso(started), "finished": None,
              "pairs_selected": len(plan.pairs), "pairs_measured": None}
    verdicts: list[Verdict] = []
    try:
        if pair not in needed:
            pytest.skip(f"{pair.id} is unreachable: nothing to check")
        entries = wait_for_entries(session.run_dir.path, plan, needed)
        record["pairs_measured"] = sum(e.status != "error" for e in entries.values())
        this = entries[pair.id]
        if this.status == "error":
            raise MeasurementError(f"not evaluated: this pair has no measurement ({printable(this.error or '')})")
        selected = {p.id for p in needed}
        for t in plan.thresholds:
            verdicts.append(judge_median(t, pair.id, entries) if t.reference == MEDIAN
                            else judge_asymmetry(t, pair, entries, selected))
        record["metrics"] = {m: this.metrics[m] for m in dict.fromkeys(v.data["metric"] for v in verdicts)
                             if m in this.metrics}
    except MeasurementError as exc:
        record["error"] = str(exc)
        _journal(session, record, verdicts)
        raise MeasurementError(f"{pair.id}: {exc}") from None
    outcomes = {v.outcome for v in verdicts}
    errors = [v.data["message"] for v in verdicts if v.outcome == "error"]
    failures = [v.data["message"] for v in verdicts if v.outcome == "failed"]
    record["status"] = "error" if errors else "failed" if failures else \
        "skipped" if outcomes == {"skipped"} else "passed"
    record["error"] = "; ".join(errors) or None
    _journal(session, record, verdicts)
    for v in verdicts:
        item.user_properties.extend(v.properties)
    item.user_properties.append(("meshperf_check", record["status"]))
    if errors:
        raise MeasurementError(f"{pair.id}: {'; '.join(errors)}")
    if failures:
        pytest.fail("\n".join(f"{pair.id}: {m}" for m in failures), pytrace=False)
    if record["status"] == "skipped":
        pytest.skip("; ".join(v.data["message"] for v in verdicts))


def _journal(session, record, verdicts) -> None:
    record["thresholds"] = [v.data for v in verdicts]
    record["finished"] = iso(time.time())
    session.record(record)
