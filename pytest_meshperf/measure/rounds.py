"""rounds: the selected pairs of one round of a test measured at once, by one process, whatever ran the tests.

A round is a set of disjoint pairs (plan/schedule.py: every node sends at most once and receives at most
once), so its flows never share a node's send or receive side.  The first pair test of a round to arrive
(in plain pytest or in any xdist worker) runs the whole round as one group (flight.Flight: a server per
pair on its destination, the clients started together from one planned moment) while holding every send
and receive lease of the round; the round's file in the run directory then holds every pair's measurement.
It runs the following rounds of its test too, back to back, each one's set-up overlapping the flows of
the one before (measure/pipeline.py), so that pytest reports a round while the next one measures.

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
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pytest_meshperf.errors import MeasurementError
from pytest_meshperf.measure.group_files import GROUP_DIR, measurement_from_dict
from pytest_meshperf.measure.measurement import Measurement, judge, record_of
from pytest_meshperf.measure.pipeline import Round, RoundPipeline
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
    """Per run and process: runs each round of each test once (across xdist workers) and hands out the shares.
    With the test's rounds in order (``sequence``), its rounds run in a RoundPipeline (measure/pipeline.py)."""

    def __init__(self, run_path: str, get_pool: Callable[[], Pool], schedule: Schedule) -> None:
        self.dir = os.path.join(run_path, GROUP_DIR)
        self.get_pool = get_pool
        self.schedule = schedule
        self._groups: dict[str, dict[str, Any]] = {}
        self._ran: dict[str, _RanRound] = {}   # the rounds this process ran, for journal_unreported()
        self._cond = threading.Condition()
        self._asked: dict[str, int] = {}       # test -> the furthest round (index in its sequence) a pair asked for
        self._pipeline: RoundPipeline | None = None
        self._for: tuple[str, Sequence[Threshold]] = ("", ())   # the running pipeline's test name and thresholds

    @staticmethod
    def digest(test: str, number: int) -> str:
        return hashlib.sha256(f"{test}\0round {number}".encode()).hexdigest()[:20]

    def share(self, pair: Pair, params: Params, thresholds: Sequence[Threshold], test: str, name: str, holder: str,
              sequence: Sequence[Round]) -> Measurement | None:
        """``pair``'s measurement from its round (``sequence``: every round of the test, in order, its selected
        pairs each; the pipeline runs them), not yet judged; None when this pair must be measured on its own
        (other parameters than its round's)."""
        if not groups_by_round(params):
            return None
        digest = self.digest(test, pair.round)
        group = self._groups.get(digest)
        if group is None:
            group = self._from_pipeline(digest, pair, params, thresholds, test, name, holder, sequence)
        data = group["measurements"].get(pair.id)
        if group["params"] != params.to_dict() or data is None:
            return None
        if digest in self._ran:
            self._ran[digest].taken.add(pair.id)
        return measurement_from_dict(data)

    def _from_pipeline(self, digest, pair, params, thresholds, test, name, holder, sequence):
        index = next(i for i, ran in enumerate(sequence) if ran.number == pair.round)
        pool = self.get_pool()   # here: not reaching the agents is this pair's error, raised in its test
        try:
            with self._cond:
                self._asked[test] = max(self._asked.get(test, -1), index)
                self._cond.notify_all()
                # Bounded: a pipeline started at this round either hands it out or fails; another may have
                # stopped short of it (tests asked in another order) at most once per round in between.
                for _ in range(len(sequence) + 2):
                    if digest in self._groups:
                        return self._groups[digest]
                    running = self._pipeline
                    if running is not None and running.finished:
                        self._pipeline = None
                        self._ended(running)   # its error, raised once, in this test
                        running = None
                    if running is None:
                        self._pipeline = running = RoundPipeline(self, pool, self.schedule, test, sequence, index,
                                                                 params, holder)
                        self._for = (name, thresholds)
                        running.start()
                    elif not running.may_reach(test, index):
                        running.stopping = True
                    while digest not in self._groups and not running.finished:
                        self._cond.wait(1.0)
                raise MeasurementError(f"round {pair.round} of {test} was never measured")
        except BaseException:   # Ctrl-C (or a bug) while waiting: no round of ours may keep measuring
            self.close()
            raise

    @staticmethod
    def _ended(pipeline: RoundPipeline) -> None:
        """A pipeline that has ended: its error raised here, in the pair test that waits (a bug, or a surprise)."""
        if pipeline.error is not None:
            raise pipeline.error

    def asked(self, test: str) -> int:
        with self._cond:
            return self._asked.get(test, -1)

    def wait_asked(self, test: str, index: int, timeout_s: float, cancelled: Callable[[], bool]) -> bool:
        """Whether a pair test of ``test`` has asked for round ``index`` (or later), waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._asked.get(test, -1) < index:   # bounded by the deadline
                left = deadline - time.monotonic()
                if left <= 0 or cancelled():
                    return False
                self._cond.wait(min(left, 0.1))
            return True

    def publish(self, digest: str, group: dict[str, Any], measured: dict[str, Measurement] | None) -> None:
        """A round's group, from the pipeline (``measured``: ours, else read from another process's file)."""
        with self._cond:
            if measured is not None:
                self._ran[digest] = _RanRound(self._for[0], self._for[1], measured, set())
            self._groups[digest] = group
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the pipeline, if one runs: the rounds in flight are stopped and not handed out (the session's end,
        Ctrl-C).  What it had handed out stays, for journal_unreported()."""
        running, self._pipeline = self._pipeline, None
        if running is not None and not running.finished:
            running.abort()

    def journal_unreported(self, record: Callable[[dict[str, Any]], None], baseline: Any = None,
                           doubtful_fails: bool = False) -> None:
        """Judge and ``record`` every share of a round this process ran that no pair test took, in the rounds'
        order (an interrupted run: measured, not yet reported), with the thresholds of the test that ran it."""
        for ran in list(self._ran.values()):
            for pair_id, measurement in ran.measurements.items():
                if pair_id not in ran.taken:
                    judge(measurement, ran.thresholds, baseline, doubtful_fails)
                    record(record_of(measurement, ran.name))
