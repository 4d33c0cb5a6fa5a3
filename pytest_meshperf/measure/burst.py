"""burst and incast: every selected pair of a test measured at once, as one group (measure/flight.py).

``GroupRunner`` makes one group out of many pair tests: the first test of a group
to arrive, in any xdist worker, runs the whole group under its group file's lock
(measure/group_files.py), judges every pair with the test's thresholds, journals
them all at once (so nothing measured is lost if the run stops before the other
pair tests report) and writes the group file; every pair test of the group then
reports its own share from there.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from pytest_meshperf.errors import MeasurementError
from pytest_meshperf.measure.flight import run_group
from pytest_meshperf.measure.group_files import GROUP_DIR, group_file, measurement_from_dict
from pytest_meshperf.measure.measurement import STATUS_ERROR, Measurement, judge, record_of
from pytest_meshperf.measure.runner import Pool
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.plan.schedule import Schedule
from pytest_meshperf.spec.params import Params
from pytest_meshperf.spec.thresholds import Threshold


class GroupRunner:
    """Per run and process: runs a test's group once (across xdist workers) and hands out the shares."""

    def __init__(self, run_path: str, get_pool: Callable[[], Pool], schedule: Schedule, writer: str,
                 baseline: Any = None, doubtful_fails: bool = False) -> None:
        self.dir = os.path.join(run_path, GROUP_DIR)
        self.baseline = baseline   # baseline.Baseline: judged with the thresholds
        self.doubtful_fails = doubtful_fails   # --mesh-doubtful=fail
        self.get_pool = get_pool
        self.schedule = schedule
        self.writer = writer
        self._cache = {}

    def measurement(self, members: list[Pair], pair: Pair, params: Params, thresholds: Sequence[Threshold], test: str,
                    name: str, nodeids: dict[str, str], holder: str,
                    record: Callable[[dict[str, Any]], None]) -> Measurement:
        """This pair's share of its group's run, judged (``members``: the group's pairs, this one included;
        ``record``: journals one record; the group's runner journals them all)."""
        digest = hashlib.sha256(test.encode("utf-8")).hexdigest()[:20]
        wanted = {"params": params.to_dict(), "thresholds": [t.to_dict() for t in thresholds]}
        group = self._cache.get(digest) or self._load_or_run(digest, members, params, thresholds, wanted, test,
                                                             name, nodeids, holder, record)
        self._cache[digest] = group
        if group["asked"] != wanted:
            result = Measurement(src=pair.src.name, dst=pair.dst.name, test=test, nodeid=nodeids.get(pair.id, ""),
                                 tool=params.tool, params=params.to_dict(), round=pair.round,
                                 started=time.time(), finished=time.time())
            result.status, result.error = STATUS_ERROR, (
                f"{self.schedule} runs every pair of a test at once with one set of parameters and thresholds; this "
                "pair asked for others than its group (measure() overrides that differ per pair?)")
            judge(result, thresholds, self.baseline, self.doubtful_fails)
            record(record_of(result, name))
            return result
        data = group["measurements"].get(pair.id)
        if data is None:
            raise MeasurementError(f"{pair.id}: not part of the {self.schedule} group of {test}")
        return measurement_from_dict(data)

    def _load_or_run(self, digest, members, params, thresholds, wanted, test, name, nodeids, holder, record):
        def run() -> dict[str, Any]:
            measured = run_group(self.get_pool(), members, params, self.schedule, test, nodeids, holder)
            for result in measured.values():
                judge(result, thresholds, self.baseline, self.doubtful_fails)
                record(record_of(result, name))   # every pair on disk at once, before any pair test reports
            return {"test": test, "asked": wanted, "writer": self.writer,
                    "measurements": {pid: m.as_dict() for pid, m in measured.items()}}
        return group_file(self.dir, digest, test, run)
