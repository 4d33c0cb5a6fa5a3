"""rounds: the selected pairs of one round of a test measured at once, by one process, whatever ran the tests.

A round is a set of disjoint pairs (plan/schedule.py: every node sends at most once and receives at most
once), so its flows never share a node's send or receive side.  The first pair test of a round to arrive
(in plain pytest or in any xdist worker) runs the whole round as one group (burst.run_group: a server per
pair on its destination, the clients started together from one planned moment) while holding every send
and receive lease of the round; the round's file in the run directory then holds every pair's measurement.

Unlike burst, each pair test takes its own share and judges and journals it with its own thresholds, so a
``measure(thresholds=...)`` that differs per pair means what it says.  A pair whose ``measure()`` asks for
other parameters than the round's (overrides, a second call, several instances) is measured on its own,
as under ``sequential``.  A share no pair test took (a test that skipped, a run interrupted between the
round and its reports) is journaled at the end only if the run was interrupted: a skipped test stays
unmeasured in mesh.json.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from pytest_meshperf.measure.burst import GROUP_DIR, group_file, measurement_from_dict, run_group
from pytest_meshperf.measure.measurement import Measurement, judge, record_of
from pytest_meshperf.measure.runner import Pool
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.plan.schedule import Schedule
from pytest_meshperf.spec.params import Params
from pytest_meshperf.spec.thresholds import Threshold


def groups_by_round(params: Params) -> bool:
    """Whether a round of this test's pairs can run as one group: one process per pair (pinned instances
    reserve cores per pair, which a group does not do yet)."""
    return params.instances == 1


@dataclasses.dataclass
class _RanRound:
    name: str
    thresholds: Sequence[Threshold]
    measurements: dict[str, Measurement]
    taken: set[str]


class RoundRunner:
    """Per run and process: runs each round of each test once (across xdist workers) and hands out the shares."""

    def __init__(self, run_path: str, get_pool: Callable[[], Pool], schedule: Schedule) -> None:
        self.dir = os.path.join(run_path, GROUP_DIR)
        self.get_pool = get_pool
        self.schedule = schedule
        self._groups: dict[str, dict[str, Any]] = {}
        self._ran: dict[str, _RanRound] = {}   # the rounds this process ran, for journal_unreported()

    def share(self, members: list[Pair], pair: Pair, params: Params, thresholds: Sequence[Threshold], test: str,
              name: str, nodeids: dict[str, str], holder: str) -> Measurement | None:
        """``pair``'s measurement from its round (``members``: the round's selected pairs, this one included),
        not yet judged; None when this pair must be measured on its own (other parameters than its round's)."""
        if not groups_by_round(params):
            return None
        digest = hashlib.sha256(f"{test}\0round {pair.round}".encode()).hexdigest()[:20]
        group = self._groups.get(digest)
        if group is None:
            def run() -> dict[str, Any]:
                measured = run_group(self.get_pool(), members, params, self.schedule, test, nodeids, holder)
                self._ran[digest] = _RanRound(name, thresholds, measured, set())
                return {"test": test, "round": pair.round, "params": params.to_dict(),
                        "measurements": {pid: m.as_dict() for pid, m in measured.items()}}
            group = self._groups[digest] = group_file(self.dir, digest, f"round {pair.round} of {test}", run)
        data = group["measurements"].get(pair.id)
        if group["params"] != params.to_dict() or data is None:
            return None
        if digest in self._ran:
            self._ran[digest].taken.add(pair.id)
        return measurement_from_dict(data)

    def journal_unreported(self, record: Callable[[dict[str, Any]], None], baseline: Any = None) -> None:
        """Judge and ``record`` every share of a round this process ran that no pair test took, in the rounds'
        order (an interrupted run: measured, not yet reported), with the thresholds of the test that ran it."""
        for ran in self._ran.values():
            for pair_id, measurement in ran.measurements.items():
                if pair_id not in ran.taken:
                    judge(measurement, ran.thresholds, baseline)
                    record(record_of(measurement, ran.name))
