"""The rounds' pipeline: the rounds of one test measured back to back, each round's set-up and the previous
round's collection done while flows run.

One round after another, a round costs T plus its set-up (leases, a server on every destination), its start
calls and lead, its collection (every server's output), and pytest reporting its pair tests before the next
round starts: at 64 nodes on two cores, about 1 s per round.  Here one thread per process runs a test's rounds
in order::

    round k     fire -- flows -- |barrier|            collect k, write k, hand k to its tests
    round k+1      leases, servers          fire -- flows -- |barrier| ...

- round k+1's leases are taken, its servers started and its clients forked and held on their nodes
  (flight.Flight.hold) while round k's flows run.  A node's lease that
  round k holds and round k+1 needs is kept (renewed), never released in between, so that another xdist
  worker cannot take it for a moment; the others are taken without waiting (busy: no round k+1 now);
- round k+1's clients are released for one planned moment (flight.Flight.fire) only once every client of
  round k has ended: no node sends or receives twice at once;
- round k is collected after round k+1's planned start, written to its group file and handed to its pair
  tests while round k+1's flows run.

It never runs ahead of pytest by more than three rounds: round k+1 starts only if a pair test of round k-2
has asked for its share (one round ahead was too little at 64 nodes on two cores: pytest, reporting round k-1's
64 tests, had not reached round k by its end every other round, and each such round ran without the pipeline;
two were too little at 32 nodes: pytest, journaling 32 tests per round on the cores the flows use, fell
behind now and then, and two rounds of 31 ran without the pipeline, 2-3 s late).  A round prepared while
pytest is further behind waits up to CATCH_UP_S for it (at 64 nodes pytest's 64 reports a round kept pace
on average but not every round: the pipeline ended and restarted 13 times in 63 rounds, 1.6-3.4 s each);
then (a slow test body, tests in another order, -x) the pipeline ends and the next share starts another.  Across xdist
workers the group files' locks decide who measures a round, as before: the pipeline takes round k+1's lock
without waiting and stops when another process holds it.  ``abort`` (Ctrl-C, the session's end) stops the
clients of every round in flight; a round cut short is not handed out.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, Protocol

from pytest_meshperf.errors import AgentError, MeasurementError
from pytest_meshperf.measure.flight import Flight
from pytest_meshperf.measure.group_files import lock_group, read_group, write_group
from pytest_meshperf.measure.measurement import STATUS_ERROR, Measurement
from pytest_meshperf.measure.runner import LEASE_WAIT_S, HeldLease, Pool, release_leases, renew_leases, take_leases
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.plan.schedule import Schedule
from pytest_meshperf.spec.params import Params

#: A round's collection starts this long after the next round's planned start, so that its calls (and pytest
#: reporting its tests) do not compete with that round's clients setting up their connections: at 32 nodes on two
#: cores the releases arrive over about 0.1 s and each client takes 0.15 s more to get going (0.1 s here gave
#: clients 0.22 s beyond T, 0.35 s gave 0.18 s).
COLLECT_AFTER_START_S = 0.35
AHEAD = 3              # rounds the pipeline may measure beyond the last one a pair test has asked for
CATCH_UP_S = 3.0       # how long a prepared round waits for pytest to come within AHEAD rounds before the end
ABORT_JOIN_S = 60.0   # an abort waits this long at most for the rounds in flight to stop


@dataclasses.dataclass
class Round:
    """One round of a test: its number and its selected pairs (with their pytest node ids)."""

    number: int
    members: list[Pair]
    nodeids: dict[str, str]


class Owner(Protocol):
    """What the pipeline uses of its RoundRunner (measure/rounds.py)."""

    dir: str

    def digest(self, test: str, number: int) -> str: ...
    def asked(self, test: str) -> int: ...
    def wait_asked(self, test: str, index: int, timeout_s: float, cancelled: Any) -> bool: ...
    def publish(self, digest: str, group: dict[str, Any], measured: dict[str, Measurement] | None) -> None: ...
    def wake(self) -> None: ...


@dataclasses.dataclass
class _Leg:
    """A round in the pipeline: its flight, its group file's lock, and how far it got."""

    flight: Flight
    lock: IO[str]
    index: int
    digest: str
    kept: list[HeldLease] = dataclasses.field(default_factory=list)   # leases the previous round handed over
    fired: bool = False
    interrupted: bool = False
    closed: bool = False


class RoundPipeline:
    """Measures ``rounds[index:]`` of ``test`` in a thread of its own, three rounds ahead of pytest at most."""

    def __init__(self, owner: Owner, pool: Pool, schedule: Schedule, test: str, rounds: Sequence[Round],
                 index: int, params: Params, holder: str) -> None:
        self.owner, self.pool, self.schedule, self.test = owner, pool, schedule, test
        self.rounds, self.params, self.holder = list(rounds), params, holder
        self.index = index            # the round it measures now
        self.stopping = False         # measure no further round than the one in flight
        self.aborted = False          # stop the rounds in flight (Ctrl-C, the session's end)
        self.finished = False
        self.error: BaseException | None = None
        self._state = threading.Lock()   # firing a round and aborting exclude each other
        self._flying: list[_Leg] = []    # fired, clients not all ended
        self._thread = threading.Thread(target=self._main, name=f"meshperf-rounds {test}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def may_reach(self, test: str, index: int) -> bool:
        """Whether this pipeline will measure round ``index`` of ``test`` if asked (the one in flight or the next)."""
        return not self.stopping and test == self.test and self.index <= index <= self.index + 1

    def abort(self) -> None:
        """Stop the clients of every round in flight, from this thread, and wait (bounded) for the pipeline to end."""
        with self._state:
            self.aborted = self.stopping = True
            flying = list(self._flying)
            for leg in flying:
                leg.interrupted = True
        for leg in flying:
            leg.flight.stop_clients()
        self._thread.join(ABORT_JOIN_S)

    # -- the pipeline's thread ------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the pair test waiting for it (a bug, or an agent's surprise)
            self.error = exc
        finally:
            # A test's rounds may take several pipelines (pytest fell behind): each one's connections end with it,
            # or 64 nodes gathered 1,655 idle tunnelled connections and their pumps, which slowed every round.
            self.pool.close_thread()
            self.finished = True
            self.owner.wake()   # whoever waits for a round learns that this pipeline has ended

    def _run(self) -> None:
        current = self._first()
        if current is None:
            return
        pending = None
        try:
            while True:
                pending = None
                if current.fired and not self.stopping and current.index + 1 < len(self.rounds):
                    pending = self._prepare(current)
                if current.fired:
                    current.flight.wait()
                    with self._state:
                        self._flying.remove(current)
                going = pending is not None and self._pytest_near(current) and self._fire(pending)
                if pending is not None and not going:
                    self._cancel(pending)
                    pending = None
                self._complete(current, pending)
                if pending is None:
                    return
                current, self.index = pending, pending.index
        finally:
            # Only after an error: whatever is still in flight is stopped, collected and released.
            for leg in (pending, current):
                if leg is not None and not leg.closed:
                    self._scrap(leg)

    def _pytest_near(self, current: _Leg) -> bool:
        """Whether a pair test of round ``current`` - AHEAD + 1 has asked for its share, or does within CATCH_UP_S:
        pytest a little behind costs the next round that wait, where ending the pipeline costs it a start of its
        own (1.6-3.4 s at 64 nodes)."""
        return self.owner.wait_asked(self.test, current.index - AHEAD + 1, CATCH_UP_S,
                                     lambda: self.stopping or self.aborted)

    def _first(self) -> _Leg | None:
        """The first round: its lock and leases waited for (nothing of this pipeline is held yet), then fired."""
        number = self.rounds[self.index].number
        digest = self.owner.digest(self.test, number)
        lock = lock_group(self.owner.dir, digest, f"round {number} of {self.test}", LEASE_WAIT_S,
                          cancelled=lambda: self.aborted)
        if lock is None:
            return None
        group = read_group(self.owner.dir, digest)
        if group is not None:   # another process (an xdist worker) measured it
            lock.close()
            self.owner.publish(digest, group, None)
            return None
        leg = _Leg(self._flight(self.index), lock, self.index, digest)
        try:
            leg.flight.reach()
            leg.flight.lease_up(self.holder, cancelled=lambda: self.aborted)
            if leg.flight.live:
                leg.flight.start_servers()
                self._fire(leg)
        except BaseException:
            self._scrap(leg)
            raise
        return leg

    def _flight(self, index: int) -> Flight:
        ran = self.rounds[index]
        return Flight(self.pool, ran.members, self.params, self.schedule, self.test, ran.nodeids)

    def _prepare(self, current: _Leg) -> _Leg | None:
        """The next round's lock, leases (``current``'s kept where both need them) and servers; None when it
        cannot be had at once (another process holds its lock or a lease, or measured it; a node failed)."""
        index = current.index + 1
        number = self.rounds[index].number
        digest = self.owner.digest(self.test, number)
        lock = lock_group(self.owner.dir, digest, f"round {number} of {self.test}", 0)
        if lock is None:
            return None
        if read_group(self.owner.dir, digest) is not None:
            lock.close()
            return None
        leg = _Leg(self._flight(index), lock, index, digest)
        flight = leg.flight
        flight.pipelined = True
        # Its servers start now and serve only after ``current``'s flows: without this wait in their life, a round
        # at T >= 28 s lost every pipelined pair ("the server has terminated" at 1.1 T + 25 s).
        flight.wait_s = current.flight.timeout_s + CATCH_UP_S
        try:
            flight.reach()
            if not flight.live or len(flight.live) < len(flight.pairs):
                leg.lock.close()
                return None   # a node failed: the next round's own start handles it
            wanted = collections.Counter(flight.wanted_leases())
            for lease in current.flight.lease:
                if wanted[(lease.node, lease.role)] > 0:
                    leg.kept.append(lease)
                    wanted[(lease.node, lease.role)] -= 1
            new = take_leases(self.pool, list(wanted.elements()), flight.lease_ttl_s, self.holder,
                              wait_s=0) if +wanted else []
            if leg.kept and not renew_leases(self.pool, leg.kept, flight.lease_ttl_s):
                release_leases(self.pool, new)
                leg.lock.close()
                return None
            flight.lease = leg.kept + new
            flight.phases["prepare"] = time.time() - flight.started
            flight.start_servers()
            if not any(flight.results[pair.id].status == STATUS_ERROR for pair in flight.pairs):
                flight.hold()
            if any(flight.results[pair.id].status == STATUS_ERROR for pair in flight.pairs):
                # A server or client that cannot start now (the node's ports held by the round in flight: a
                # small ``ports`` range) fails no pair: the round runs on its own once this one has ended.
                self._cancel(leg)
                return None
        except (MeasurementError, AgentError):
            self._cancel(leg)
            return None
        except BaseException:
            self._cancel(leg)
            raise
        return leg

    def _fire(self, leg: _Leg) -> bool:
        with self._state:
            if self.aborted:
                leg.interrupted = True
                return False
            leg.flight.fire()
            leg.fired = True
            self._flying.append(leg)
            return True

    def _complete(self, leg: _Leg, following: _Leg | None) -> None:
        """``leg``'s clients have ended: collect it (after ``following``'s planned start, if that one was fired),
        release the leases ``following`` does not keep, write its group file and hand it out."""
        flight = leg.flight
        try:
            try:
                flight.stop_clients()   # none, unless a wait failed
                flight.collect(None if following is None else following.flight.start_at + COLLECT_AFTER_START_S)
                if not leg.interrupted:
                    flight.build()
            finally:
                _release_unkept(self.pool, flight.lease, following.kept if following is not None else [])
            flight.end()
            if leg.interrupted:
                return
            ran = self.rounds[leg.index]
            group = {"test": self.test, "round": ran.number, "params": self.params.to_dict(),
                     "measurements": {pid: m.as_dict() for pid, m in flight.results.items()}}
            write_group(self.owner.dir, leg.digest, group)
        finally:
            leg.closed = True
            leg.lock.close()
        self.owner.publish(leg.digest, group, flight.results)

    def _cancel(self, leg: _Leg) -> None:
        """A prepared round that will not run now: its held clients and servers stopped, its own leases (not the
        kept) released."""
        try:
            leg.flight.stop_clients()
            leg.flight.discard_servers()
        finally:
            _release_unkept(self.pool, leg.flight.lease, leg.kept)
            leg.closed = True
            leg.lock.close()

    def _scrap(self, leg: _Leg) -> None:
        """After an error: ``leg``'s clients stopped, servers collected, every lease it holds released."""
        try:
            leg.flight.stop_clients()
            leg.flight.discard_servers()
        finally:
            release_leases(self.pool, leg.flight.lease)
            leg.closed = True
            leg.lock.close()


def _release_unkept(pool: Pool, leases: Sequence[HeldLease], kept: Sequence[HeldLease]) -> None:
    """``leases`` released but for those the next round keeps."""
    keep = {lease.key for lease in kept}
    release_leases(pool, [lease for lease in leases if lease.key not in keep])
