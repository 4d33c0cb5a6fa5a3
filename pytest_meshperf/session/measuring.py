"""What ``measure()`` does inside a pair test: measure the pair, journal it, report it, assert its thresholds."""

import pytest

from pytest_meshperf.errors import MeasurementError
from pytest_meshperf.measure.measurement import STATUS_ERROR, Measurement, judge, record_of
from pytest_meshperf.measure.runner import measure_pair
from pytest_meshperf.verdicts.baseline import MISSING
from pytest_meshperf.verdicts.baseline import PROPERTY as BASELINE_PROPERTY

GROUP_KEY = pytest.StashKey()


def assign_groups(items, spec_key):
    """burst/incast: each mesh item learns its group, the selected pairs of the same test (and their node ids)."""
    groups = {}
    for item in items:
        if spec_key in item.stash and "mesh_pair" in item.callspec.params:
            pair = item.callspec.params["mesh_pair"]
            members, nodeids = groups.setdefault(item.stash[spec_key].key, ([], {}))
            members.append(pair)
            nodeids[pair.id] = item.nodeid
            item.stash[GROUP_KEY] = (members, nodeids)


class Measure:
    """``measure(**overrides)``: measure this test's pair, record it, assert its thresholds."""

    def __init__(self, item, pair, session, spec):
        self._item = item
        self._pair = pair
        self._session = session
        self._spec = spec
        self._calls = 0

    def __call__(self, **overrides) -> Measurement:
        session, pair, item = self._session, self._pair, self._item
        params, thresholds = self._spec.resolve(overrides, session.option_params, session.option_thresholds)
        self._calls += 1
        key = self._spec.key if self._calls == 1 else "%s#%d" % (self._spec.key, self._calls)
        if session.skip_unreachable:
            reason = session.unreachable(pair)
            if reason:
                pytest.skip("unreachable: %s" % reason)
        holder = "%s %s" % (session.writer, item.nodeid)
        if session.groups is not None:
            # The group's runner judged and journaled every pair of the group as soon as it ended.
            members, nodeids = item.stash[GROUP_KEY]
            result = session.groups.measurement(members, pair, params, thresholds, key, self._spec.name, nodeids,
                                                holder, session.record)
            failed = [t["message"] for t in result.thresholds if t["passed"] is False]
        else:
            result = measure_pair(session.pool, pair, params, key, item.nodeid, session.schedule.kind, holder)
            failed = judge(result, thresholds, session.baseline)
            session.record(record_of(result, self._spec.name))     # on disk before anything else happens
        for name, value in sorted(result.metrics.items()):
            item.user_properties.append((name, value))
        item.user_properties.append(("meshperf_status", result.status))
        if result.baseline is not None:
            item.user_properties.append((BASELINE_PROPERTY, "found" if result.baseline["found"] else MISSING))
        for warning in result.warnings:
            item.user_properties.append(("meshperf_warning", warning))
        if result.status == STATUS_ERROR:
            raise MeasurementError("%s: %s" % (pair.id, result.error))
        if failed:
            pytest.fail("\n".join("%s: %s" % (pair.id, message) for message in failed), pytrace=False)
        return result
