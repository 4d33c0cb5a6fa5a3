"""One group of pairs measured at once from one synchronized start: burst and incast (every pair of a test,
measure/burst.py) and each round of ``rounds`` (measure/rounds.py, measure/pipeline.py).

A ``Flight`` holds the group's leases (burst, incast: the cluster's, nothing else
runs meanwhile; a round: its nodes' send and receive leases), starts a
one-off server per flow on every destination, then asks every source's agent to
start its clients at one planned moment (each node's clock corrected by its
measured offset), so all flows start together; the skew between the first and
the last flow's start is measured from the process start times and recorded.
``run_group`` runs its phases one after another.
"""
from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from pytest_meshperf.errors import AgentError, ClientRun, MeasurementError
from pytest_meshperf.measure.measurement import STATUS_ERROR, Measurement, combine_metrics
from pytest_meshperf.measure.runner import (
    LEASE_MARGIN_S,
    SERVER_GRACE_S,
    HeldLease,
    NodeFailed,
    Pool,
    client_timeout_s,
    collect_server,
    instance_from,
    reason,
    release_client,
    release_leases,
    start_client,
    start_server,
    stop_process,
    take_leases,
    wait_client,
)
from pytest_meshperf.measure.validity import assess
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.plan.schedule import Schedule
from pytest_meshperf.spec.params import Params
from pytest_meshperf.tools import get_tool

START_LEAD_S = 0.5          # from the planned start's announcement to the start itself
ROUND_START_LEAD_S = 0.2    # a round: one flow per source, its start calls arrive within milliseconds
START_LEAD_PER_FLOW_S = 0.005   # each source's agent gets one call per flow before that moment
MIN_START_LEAD_S = 0.03
# pool -> {(held, flows per source): how long the last such group's start calls took}: the next one's lead
_CALLS_S: weakref.WeakKeyDictionary[Any, dict[tuple[bool, int], float]] = weakref.WeakKeyDictionary()


def flows_per_pair(params: Params) -> int:
    return 1 if params.instances == "auto" else params.instances


def group_leases(pool: Pool, pairs: Sequence[Pair], schedule: Schedule) -> list[tuple[str, str]]:
    """The leases a group holds while it runs: burst and incast the cluster (nothing else runs meanwhile); a
    round its nodes' send and receive leases (another xdist worker may measure elsewhere, never on them)."""
    if schedule.kind == "rounds":
        return [lease for pair in pairs for lease in ((pair.src.name, "send"), (pair.dst.name, "recv"))]
    return [(pool.coordinator(), "cluster")]


def run_group(pool: Pool, pairs: Sequence[Pair], params: Params, schedule: Schedule, test: str,
              nodeids: dict[str, str], holder: str) -> dict[str, Measurement]:
    """Measure ``pairs`` all at once; a Measurement per pair id (errors included, never raised)."""
    flight = Flight(pool, pairs, params, schedule, test, nodeids)
    flight.reach()
    flight.lease_up(holder)
    if flight.live:
        try:
            try:
                flight.start_servers()
                flight.fire()
                flight.wait()
            finally:
                flight.stop_clients()
                flight.collect()
            flight.build()
        finally:
            release_leases(pool, flight.lease)
    flight.end()
    return flight.results


def start_lead_s(pool: Pool, schedule: Schedule, most: int, held: bool = False) -> float:
    """From the start calls' announcement to the planned start: at first a fixed lead per flow, then twice what
    the last group of that shape took to make its calls (a round's calls take 20-50 ms; its lead is T's overhead);
    a pipelined round's releases the least lead.  A call that still arrives late starts its flow at once, and the
    skew shows it."""
    fixed = (ROUND_START_LEAD_S if schedule.kind == "rounds" else START_LEAD_S) + START_LEAD_PER_FLOW_S * most
    last = _CALLS_S.get(pool, {}).get((held, most))
    if held and schedule.kind == "rounds":
        # A round's flows share no node, so a release that arrives after the planned moment harms nothing (its
        # flow starts at once, and the round's flows still overlap): a longer lead is idle time in every round.
        return MIN_START_LEAD_S
    return fixed if last is None else min(fixed, max(MIN_START_LEAD_S, 2 * last + 0.02))


class Flight:
    """One group's measurement, phase by phase: ``run_group`` runs them one after another; the rounds' pipeline
    (measure/pipeline.py) runs one round's ``collect`` and the next round's ``lease_up``/``start_servers``
    while flows are running.  Errors of a pair fail that pair (``results``); other errors are bugs, raised."""

    def __init__(self, pool: Pool, pairs: Sequence[Pair], params: Params, schedule: Schedule, test: str,
                 nodeids: dict[str, str]) -> None:
        self.pool, self.pairs, self.params, self.schedule = pool, list(pairs), params, schedule
        self.module = get_tool(params.tool)
        self.timeout_s = client_timeout_s(self.module, params)
        self.per_pair = flows_per_pair(params)
        self.started = time.time()
        self.results = {pair.id: Measurement(src=pair.src.name, dst=pair.dst.name, test=test,
                                             nodeid=nodeids.get(pair.id, ""), tool=params.tool,
                                             params=params.to_dict(), round=pair.round, started=self.started)
                        for pair in pairs}
        self.live: list[Pair] = []    # the pairs still being measured
        self.offsets: dict[str, float] = {}
        self.lease: list[HeldLease] = []
        self.servers: dict[str, list[dict[str, Any]]] = {}    # pair id -> its server processes
        self.clients: dict[str, list[dict[str, Any]]] = {}    # pair id -> its client processes
        self.done: dict[str, list[dict[str, Any]]] = {}       # pair id -> its clients' results, all ended
        self.collected: dict[str, list[dict[str, Any] | None]] = {}   # pair id -> its servers' results
        self.phases: dict[str, float] = {}
        self.start_at: float | None = None
        self.pipelined = False     # its set-up ran during the previous round's flows
        # How long its servers and leases may wait for the fire: a pipelined round's wait for the round in flight,
        # then for pytest (pipeline.CATCH_UP_S).
        self.wait_s = 0.0
        self.held = False          # its clients are forked and held on their nodes: fire releases them

    @property
    def lease_ttl_s(self) -> float:
        return self.wait_s + self.timeout_s + SERVER_GRACE_S + LEASE_MARGIN_S

    def fail(self, pair: Pair, message: str, client: ClientRun | None = None) -> None:
        result = self.results[pair.id]
        if result.status != STATUS_ERROR:
            result.status, result.error, result.client = STATUS_ERROR, message, client

    def _drop_failed(self) -> None:
        self.live = [p for p in self.live if self.results[p.id].status != STATUS_ERROR]

    def reach(self) -> None:
        """Every pair whose two agents can be reached, with each node's clock offset, is live."""
        for pair in self.pairs:
            try:
                self.pool.client(pair.src.name), self.pool.client(pair.dst.name)
                self.live.append(pair)
            except AgentError as exc:
                self.fail(pair, reason(exc))
        self.offsets = _clock_offsets(self.pool, self.live, self.fail)
        self._drop_failed()

    def lease_up(self, holder: str, cancelled: Callable[[], bool] | None = None) -> None:
        """Take the group's leases, waiting for them.  A node whose agent does not answer fails its own pairs,
        not the whole group: the leases are taken again without it (bounded: each pass drops a node)."""
        for _ in range(len(self.pairs) * 2 + 1):
            if not self.live:
                break
            try:
                self.lease = take_leases(self.pool, self.wanted_leases(), self.lease_ttl_s, holder,
                                         cancelled=cancelled)
                break
            except NodeFailed as exc:
                for pair in self.live:
                    if exc.node in (pair.src.name, pair.dst.name):
                        self.fail(pair, reason(exc))
                self._drop_failed()
            except (MeasurementError, AgentError) as exc:
                for pair in self.live:
                    self.fail(pair, reason(exc))
                self.live = []
        self.phases["prepare"] = time.time() - self.started

    def wanted_leases(self) -> list[tuple[str, str]]:
        return group_leases(self.pool, self.live, self.schedule)

    def start_servers(self) -> None:
        """A server per flow on every destination, all destinations at once, each start waiting until it listens."""
        pool, params = self.pool, self.params

        def start(destination, group):
            for pair in group:
                try:
                    for _ in range(self.per_pair):
                        self.servers.setdefault(pair.id, []).append(start_server(
                            pool.client(destination), pair, params, pool.data_address(destination),
                            self.wait_s + self.timeout_s + SERVER_GRACE_S))
                except (MeasurementError, AgentError) as exc:
                    self.fail(pair, reason(exc))

        servers_from = time.time()
        _raise_surprises(pool.on_nodes(start, _by_node(self.live, "dst")))
        self.phases["servers"] = time.time() - servers_from

    def hold(self) -> None:
        """Every ready pair's clients forked on their sources and held (the rounds' pipeline does this while the
        previous round's flows run): ``fire`` then only releases them, a light call each and one exec on the node,
        so the start calls and their lead cost the next round less."""
        pool, params = self.pool, self.params

        def hold_from(source, group):
            for pair in group:
                try:
                    for server in self.servers[pair.id]:
                        self.clients.setdefault(pair.id, []).append(start_client(
                            pool.client(source), pair, params, pool.data_address(pair.dst.name), server["port"],
                            pool.data_address(source), self.timeout_s, hold=True,
                            passphrase=pool.passphrase(params.tool, pair.dst.name)))
                except (MeasurementError, AgentError) as exc:
                    self.fail(pair, reason(exc))

        held_from = time.time()
        _raise_surprises(pool.on_nodes(hold_from, _by_node(self._ready(), "src")))
        self.phases["hold"] = time.time() - held_from
        self.held = True

    def _ready(self) -> list[Pair]:
        return [p for p in self.live if self.results[p.id].status != STATUS_ERROR]

    def fire(self) -> None:
        """Every ready pair's clients started at one planned moment, the calls made in every source's lane."""
        if not self.held and self.schedule.kind == "rounds":
            # Held first, then released: a release that arrives late starts its flow at once, where a timed start
            # more than a second late is refused (agent/server.py), and a round's flows share no node.
            self.hold()
        pool, params = self.pool, self.params
        by_source = _by_node(self._ready(), "src")
        most = max((len(group) for group in by_source.values()), default=0) * self.per_pair
        self.phases["lead"] = lead_s = start_lead_s(pool, self.schedule, most, self.held)
        calls_from = time.time()
        self.start_at = start_at = calls_from + lead_s

        def start_from(source, group):
            for pair in group:
                try:
                    if self.held:
                        for client in self.clients.get(pair.id, []):
                            release_client(pool.client(source), pair, params, client["id"],
                                           start_at + self.offsets[source])
                        continue
                    for server in self.servers[pair.id]:
                        self.clients.setdefault(pair.id, []).append(start_client(
                            pool.client(source), pair, params, pool.data_address(pair.dst.name),
                            server["port"], pool.data_address(source), self.timeout_s,
                            start_at=start_at + self.offsets[source],
                            passphrase=pool.passphrase(params.tool, pair.dst.name)))
                except (MeasurementError, AgentError) as exc:
                    self.fail(pair, reason(exc))

        _raise_surprises(pool.on_nodes(start_from, by_source))
        self.phases["calls"] = time.time() - calls_from
        _CALLS_S.setdefault(pool, {})[(self.held, most)] = self.phases["calls"]

    def wait(self) -> None:
        """Until every client has ended: each source's waits in its lane (one call each, not one after another)."""
        pool, params = self.pool, self.params

        def wait_from(source, group):
            for pair in group:
                try:
                    self.done[pair.id] = [wait_client(pool.client(source), pair, params, c["id"],
                                                      self.timeout_s + self.start_at - time.time())
                                          for c in self.clients.get(pair.id, [])]
                except MeasurementError as exc:
                    self.fail(pair, str(exc))

        _raise_surprises(pool.on_nodes(wait_from, _by_node([p for p in self.live if p.id in self.clients], "src")))

    def stop_clients(self) -> None:
        """Stray clients (Ctrl-C, a failed wait) stopped from the calling thread, at once: the lanes may still be
        waiting for them, and are freed as they end."""
        for pair in self.live:
            for client in self.clients.get(pair.id, [])[len(self.done.get(pair.id, [])):]:
                stop_process(self.pool.client(pair.src.name), client["id"])

    def discard_servers(self) -> None:
        """Servers no client will use (a round that will not run now): stopped at once, in their nodes' lanes."""
        pool = self.pool

        def discard(node, group):
            for pair in group:
                for server in self.servers.get(pair.id, []):
                    if not server.get("shared"):
                        stop_process(pool.client(node), server["id"])

        _raise_surprises(pool.on_nodes(discard, _by_node([p for p in self.live if p.id in self.servers], "dst")))

    def collect(self, not_before: float | None = None) -> None:
        """Every destination's servers collected at once, in its lane; ``not_before``: not before that moment
        (the next round's planned start: its start calls go first, and the start itself is not disturbed)."""
        pool = self.pool

        def collect(node, group):
            if not_before is not None:
                time.sleep(max(0.0, not_before - time.time()))
            for pair in group:
                if pair.id in self.servers:
                    served = len(self.clients.get(pair.id, []))
                    self.collected[pair.id] = [collect_server(pool.client(node), s, served=i < served)
                                               for i, s in enumerate(self.servers[pair.id])]

        _raise_surprises(pool.on_nodes(collect, _by_node([p for p in self.live if p.id in self.servers], "dst")))

    def build(self) -> None:
        """Each measured pair's instances, metrics and group record from its clients' and servers' results."""
        module, offsets, results = self.module, self.offsets, self.results
        starts = {pair_id: [c["started"] - offsets[results[pair_id].src] for c in finished if c.get("started")]
                  for pair_id, finished in self.done.items()}
        first = min((s for values in starts.values() for s in values), default=None)
        last = max((s for values in starts.values() for s in values), default=None)
        flows = sum(len(values) for values in self.clients.values())
        for pair in self.live:
            result = results[pair.id]
            if result.status == STATUS_ERROR or pair.id not in self.done:
                continue
            done = self.done[pair.id]
            collected = self.collected.get(pair.id) or [None] * len(done)
            try:
                result.instances = [instance_from(module, number, client, server, self.timeout_s)
                                    for number, (client, server) in enumerate(zip(done, collected), 1)]
            except MeasurementError as exc:
                self.fail(pair, str(exc), exc.client)
                continue
            result.tool_version = module.tool_version(result.instances[0].raw)
            result.metrics = combine_metrics([inst.metrics for inst in result.instances])
            result.node_load = {k: v for k, v in (("src", done[0].get("node_load")),
                                                  ("dst", (collected[0] or {}).get("node_load"))) if v}
            assess(result)
            result.group = {"schedule": self.schedule.kind, "target": self.schedule.target, "flows": flows,
                            "start_at": self.start_at, "skew_s": None if first is None else round(last - first, 6),
                            "start_offset_s": round(min(starts[pair.id]) - first, 6) if starts[pair.id] else None,
                            "phases_s": {name: round(value, 4) for name, value in self.phases.items()}}
            if self.pipelined:
                result.group["pipelined"] = True

    def end(self) -> None:
        finished = time.time()
        for result in self.results.values():
            result.finished = finished


def _clock_offsets(pool, pairs, fail):
    """Each node's clock minus ours (measured once per run, in the nodes' lanes); a node that does not answer
    fails the pairs it is in."""
    nodes = sorted({p.src.name for p in pairs} | {p.dst.name for p in pairs})
    offsets = {}
    for name, answer in pool.on_nodes(lambda node, _: pool.clock_offset(node), dict.fromkeys(nodes)).items():
        if isinstance(answer, AgentError):
            for pair in pairs:
                if name in (pair.src.name, pair.dst.name):
                    fail(pair, reason(answer))
        elif isinstance(answer, Exception):
            raise answer
        else:
            offsets[name] = answer
    return offsets


def _by_node(pairs, side):
    """The pairs by their source (``side`` "src") or destination ("dst") node's name, in order."""
    grouped = {}
    for pair in pairs:
        grouped.setdefault(getattr(pair, side).name, []).append(pair)
    return grouped


def _raise_surprises(answers):
    """The lanes' work catches every error it expects and fails that pair; anything else is a bug: raised."""
    for answer in answers.values():
        if isinstance(answer, Exception):
            raise answer
