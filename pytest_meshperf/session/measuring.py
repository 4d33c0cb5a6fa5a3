"""What ``measure()`` does inside a pair test: measure the pair, journal it, report it, assert its thresholds."""
from __future__ import annotations

from typing import Any, Protocol

import pytest

from pytest_meshperf.control.pool import AgentPool
from pytest_meshperf.errors import MeasurementError, printable
from pytest_meshperf.measure.burst import GroupRunner
from pytest_meshperf.measure.measurement import STATUS_ERROR, Measurement, judge, record_of
from pytest_meshperf.measure.pipeline import Round
from pytest_meshperf.measure.rounds import RoundRunner
from pytest_meshperf.measure.runner import measure_pair
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.plan.schedule import Schedule
from pytest_meshperf.results.rundir import RunDir
from pytest_meshperf.spec.params import Layer
from pytest_meshperf.spec.testspec import TestSpec
from pytest_meshperf.spec.thresholds import Threshold
from pytest_meshperf.verdicts.baseline import MISSING, Baseline
from pytest_meshperf.verdicts.baseline import PROPERTY as BASELINE_PROPERTY

GROUP_KEY = pytest.StashKey()


def assign_groups(items: list[pytest.Item], spec_key: pytest.StashKey[TestSpec], by_round: bool = False) -> None:
    """Each mesh item learns its group, their node ids and its test's groups in order: burst/incast the selected
    pairs of the same test (one group); ``by_round`` (rounds) the selected pairs of the same test and round."""
    groups = {}
    sequences: dict[str, list[Round]] = {}
    for item in items:
        if spec_key in item.stash and "mesh_pair" in item.callspec.params:
            pair = item.callspec.params["mesh_pair"]
            test = item.stash[spec_key].key
            group = (test, pair.round) if by_round else test
            if group not in groups:
                groups[group] = Round(pair.round if by_round else 0, [], {})
                sequences.setdefault(test, []).append(groups[group])
            ran = groups[group]
            ran.members.append(pair)
            ran.nodeids[pair.id] = item.nodeid
            item.stash[GROUP_KEY] = (ran.members, ran.nodeids, sequences[test])
    for sequence in sequences.values():
        sequence.sort(key=lambda ran: ran.number)


class MeasuringSession(Protocol):
    """What a measurement and a check item use of the run's session (mesh_session.MeshSession): parameters and
    thresholds from the options, the agents, the journal."""

    role: str
    writer: str
    run_dir: RunDir
    schedule: Schedule
    groups: GroupRunner | None
    rounds: RoundRunner | None

    @property
    def option_params(self) -> Layer: ...
    @property
    def option_thresholds(self) -> list[Threshold]: ...
    @property
    def baseline(self) -> Baseline | None: ...
    @property
    def skip_unreachable(self) -> bool: ...
    @property
    def doubtful_fails(self) -> bool: ...
    def pool(self) -> AgentPool: ...
    def unreachable(self, pair: Pair) -> str | None: ...
    def record(self, record: dict[str, Any]) -> None: ...


class Measure:
    """``measure(**overrides)``: measure this test's pair, record it, assert its thresholds."""

    def __init__(self, item: pytest.Item, pair: Pair, session: MeasuringSession, spec: TestSpec) -> None:
        self._item = item
        self._pair = pair
        self._session = session
        self._spec = spec
        self._calls = 0

    def __call__(self, **overrides: Any) -> Measurement:
        session, pair, item = self._session, self._pair, self._item
        params, thresholds = self._spec.resolve(overrides, session.option_params, session.option_thresholds)
        self._calls += 1
        key = self._spec.key if self._calls == 1 else f"{self._spec.key}#{self._calls}"
        if session.skip_unreachable:
            reason = session.unreachable(pair)
            if reason:
                pytest.skip(f"unreachable: {reason}")
        holder = f"{session.writer} {item.nodeid}"
        result = None
        if session.rounds is not None and self._calls == 1 and GROUP_KEY in item.stash:
            _, _, sequence = item.stash[GROUP_KEY]
            result = session.rounds.share(pair, params, thresholds, key, self._spec.name, holder, sequence)
        if result is not None:   # this pair's share of its round: judged and journaled here, as its own
            failed = judge(result, thresholds, session.baseline, session.doubtful_fails)
            session.record(record_of(result, self._spec.name))
        elif session.groups is not None:
            # The group's runner judged and journaled every pair of the group as soon as it ended.
            members, nodeids, _ = item.stash[GROUP_KEY]
            result = session.groups.measurement(members, pair, params, thresholds, key, self._spec.name, nodeids,
                                                holder, session.record)
            failed = [t["message"] for t in result.thresholds if t["passed"] is False]
        else:
            result = measure_pair(session.pool, pair, params, key, item.nodeid, session.schedule.kind, holder)
            failed = judge(result, thresholds, session.baseline, session.doubtful_fails)
            session.record(record_of(result, self._spec.name))     # on disk before anything else happens
        for name, value in sorted(result.metrics.items()):
            item.user_properties.append((name, value))
        item.user_properties.append(("meshperf_status", result.status))
        if result.baseline is not None:
            item.user_properties.append((BASELINE_PROPERTY, "found" if result.baseline["found"] else MISSING))
        for warning in result.warnings:
            item.user_properties.append(("meshperf_warning", warning))
        if result.status == STATUS_ERROR:
            raise MeasurementError(f"{pair.id}: {printable(result.error or '')}")   # mesh.json keeps it raw
        if failed:
            pytest.fail("\n".join(f"{pair.id}: {printable(message)}" for message in failed), pytrace=False)
        return result
