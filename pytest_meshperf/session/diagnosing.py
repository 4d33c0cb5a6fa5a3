"""After the mesh's tests (pytest_runtestloop, in the process that owns the agents): diagnosis and re-tests.

``Diagnosing.run`` reads the run's journals, derives each test's findings (verdicts/diagnosis.py), writes
diagnosis.json, re-tests suspects with ``--mesh-retest N`` (verdicts/retest.py; each re-test journaled
before the next starts), and reports one pytest test case per finding, ``<test>::diagnosis[sender node3]``:
failed, skipped (doubtful: built on doubtful measurements only) or passed (a notice: low against the median,
no threshold failed).  Those reports go through pytest's own hooks, so the terminal, JUnit XML and ``--lf``
see them as tests; findings never change a pair test's own verdict.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_meshperf.errors import ResultsWriteError, printable
from pytest_meshperf.measure.measurement import STATUS_ERROR, judge, record_of
from pytest_meshperf.measure.runner import measure_pair
from pytest_meshperf.plan.links import Pair, link_id
from pytest_meshperf.results.diagnosis_file import journal_records, retest_journal, write_diagnosis
from pytest_meshperf.spec.params import Params
from pytest_meshperf.spec.thresholds import Threshold
from pytest_meshperf.verdicts.diagnosis import Finding, TestFigures, from_records
from pytest_meshperf.verdicts.retest import LinkRetest, Probe, plan_round, summarize, suspects

_OUTCOME = {"failed": "failed", "doubtful": "skipped", "notice": "passed"}
_THRESHOLD_FIELDS = ("metric", "op", "value", "unit", "expression", "origin")


class Diagnosing:
    def __init__(self, session: Any) -> None:
        self.session = session   # the MeshSession (mesh_session.py imports this module)
        self.problem: str | None = None   # why diagnosis.json could not be written (one line)
        self.findings: list[Finding] = []
        self.figures: dict[str, TestFigures] = {}
        self.retests: dict[tuple[str, str], LinkRetest] = {}
        self.records: dict[tuple[str, str], dict[str, Any]] = {}   # (test, link) -> its pair record

    def run(self, pytest_session: pytest.Session) -> None:
        s = self.session
        if not s.run_settings.diagnose or s.role == "worker" or not s.created:
            return
        records = list(journal_records(s.run_dir.path))
        for r in records:
            if not r.get("kind"):   # a pair's measurement (checks are "kind": "check")
                self.records.setdefault((r["test"], link_id(r["src"], r["dst"])), r)
        self.figures = from_records(records)
        labels = {n.name: dict(n.labels) for n in s.cluster.nodes}
        self.findings = [f for figures in self.figures.values() for f in figures.findings(labels, s.doubtful_fails)]
        self._write()
        rounds = s.run_settings.retest_rounds
        if rounds and suspects(self.findings):
            try:
                self._retest(pytest_session, rounds)
            finally:
                summarize(self.findings, self.retests, rounds)
                self._write()
        pytest_session.testscollected += len(self.findings)   # each is a test case: progress stays <= 100%
        for finding in self.findings:
            self._report(pytest_session, finding)

    # -- re-tests ----------------------------------------------------------------
    def _retest(self, pytest_session, rounds):
        s = self.session
        order = [n.name for n in s.cluster.nodes]
        nodes = {test: sorted({n for link in next(iter(fig.links.values()), []) for n in (link.src, link.dst)},
                              key=order.index) for test, fig in self.figures.items()}
        journal = retest_journal(s.run_dir.path, s.writer)
        try:
            for number in range(rounds):
                probes = plan_round(self.findings, nodes, number)
                _say(pytest_session, f"meshperf: re-test round {number + 1} of {rounds}: {len(probes)} "
                                     "measurements of suspect links and fresh partners")
                for probe in probes:
                    self._measure(probe, number + 1, journal)
        except ResultsWriteError as exc:
            _say(pytest_session, f"meshperf: re-tests stopped: {exc}", red=True)
        finally:
            journal.close()

    def _measure(self, probe: Probe, number: int, journal) -> None:
        s = self.session
        finding = self.findings[probe.finding]
        origin = self.records[(probe.test, probe.of)]
        params = Params(**{k: tuple(v) if isinstance(v, list) else v for k, v in origin["params"].items()})
        thresholds = [Threshold(**{k: t[k] for k in _THRESHOLD_FIELDS}) for t in origin.get("thresholds") or []
                      if not t.get("reference") and all(k in t for k in _THRESHOLD_FIELDS)]
        pair = s.resolve_pair(Pair(s.cluster.node(probe.src), s.cluster.node(probe.dst)))
        holder = f"{s.writer} {probe.test}::retest"
        result = measure_pair(s.pool, pair, params, probe.test, f"{probe.test}::retest[{pair.id}]",
                              s.schedule.kind, holder)
        failed = judge(result, thresholds, None, s.doubtful_fails)
        metric = finding.metric
        value = result.metrics.get(metric)
        if result.status == STATUS_ERROR or value is None:
            low = None
        else:   # as in the first pass: its own thresholds, its relative ones and the median of the first pass
            low = bool([t for t in result.thresholds if t.get("passed") is False and t.get("metric") == metric]) \
                or self.figures[probe.test].is_low(metric, value)
        record = record_of(result, origin.get("name", probe.test))
        record.update(kind="retest", retest_of=probe.of, finding=finding.title, role=probe.role,
                      retest_round=number, low=low, expect_low=probe.expect_low)
        journal.append(record)   # on disk before the next re-test starts
        entry = self.retests.setdefault((probe.test, probe.of), LinkRetest(probe.test, probe.of, probe.finding))
        entry.results.append({"role": probe.role, "link": pair.id, "round": number, "metric": metric,
                              "value": value, "low": low, "expect_low": probe.expect_low, "status": result.status,
                              "error": result.error, "started": record["started"],
                              "messages": [printable(m) for m in failed]})

    # -- results and reports ------------------------------------------------------
    def _write(self) -> None:
        links: dict[str, dict[str, dict[str, Any]]] = {}
        for f in self.findings:
            for lid in f.links:
                part = links.setdefault(f.test, {}).setdefault(lid, {"findings": []})
                part["findings"].append(f"{f.title} ({f.metric})")
        for (test, lid), entry in self.retests.items():
            part = links.setdefault(test, {}).setdefault(lid, {"findings": []})
            part["retest"] = entry.outcome()
            part["retests"] = list(entry.results)
        try:
            write_diagnosis(self.session.run_dir.path, {"findings": [f.to_dict() for f in self.findings],
                                                        "links": links})
        except OSError as exc:   # the findings are lost, the measurements are not: a warning, not the run's error
            self.problem = (f"meshperf: cannot write the diagnosis in {self.session.run_dir.path}: "
                            f"{exc.strerror or exc}; mesh.json goes without it")

    def _report(self, pytest_session: pytest.Session, f: Finding) -> None:
        """One test case through pytest's report hooks: setup, call, teardown, as a test of its own."""
        figures = self.figures.get(f.test)
        nodeid = f.nodeid(figures.main_metric if figures else None, figures.base if figures else None)
        path = nodeid.split("::", 1)[0]
        location = (path, None, nodeid.split("::", 1)[-1])
        hook = pytest_session.config.hook
        outcome = _OUTCOME[f.status]
        text = finding_text(f)
        if outcome == "skipped":
            longrepr: Any = (path, None, f"built only on doubtful measurements: {text}")
        elif outcome == "failed":
            longrepr = text
        else:
            longrepr = None
        properties = [("meshperf_finding", f.title), ("meshperf_metric", f.metric), ("meshperf_status", f.status),
                      ("meshperf_links", " ".join(f.links)), ("meshperf_confidence", f.confidence)]
        if f.retest:
            properties.append(("meshperf_retest", f.retest["outcome"]))
        hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        now = time.time()
        for when, result, report_longrepr in (("setup", "passed", None), ("call", outcome, longrepr),
                                              ("teardown", "passed", None)):
            report = pytest.TestReport(nodeid, location, {}, result, report_longrepr, when,
                                sections=[("meshperf finding", text)] if when == "call" else [], duration=0.0,
                                start=now, stop=now, user_properties=properties if when == "teardown" else [])
            hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


def finding_text(f: Finding) -> str:
    """What a finding says: its message, the failed tests it explains, its re-test."""
    lines = [printable(f.message), f"confidence {f.confidence:.2f}; links: {', '.join(f.links)}"]
    if f.explains:
        lines.append(f"explains {len(f.explains)} failed test{'s' if len(f.explains) != 1 else ''}: "
                     + ", ".join(f.explains))
    if f.doubtful_links:
        lines.append(f"{f.doubtful_links} of its {len(f.links)} links are doubtful (CPU-bound or disturbed)")
    if f.retest:
        r = f.retest
        lines.append(f"re-test ({r['rounds']} round{'s' if r['rounds'] != 1 else ''}): {r['outcome']} ("
                     f"{r['confirmed']} confirmed, {r['flaky']} flaky, {r['inconclusive']} inconclusive)")
    return "\n".join(lines)


def _say(pytest_session, text, **markup):
    reporter = pytest_session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text, **markup)

