"""Groups of pairs measured at once from one synchronized start: burst and incast (all pairs of a test), and
each round of ``rounds`` (measure/rounds.py).

``run_group`` holds the group's leases (burst, incast: the cluster's, nothing else
runs meanwhile; a round: its nodes' send and receive leases), starts a
one-off server per flow on every destination, then asks every source's agent to
start its clients at one planned moment (each node's clock corrected by its
measured offset), so all flows start together; the skew between the first and
the last flow's start is measured from the process start times and recorded.

``GroupRunner`` makes one group out of many pair tests: the first test of a group
to arrive, in any xdist worker, runs the whole group under a file lock in the run
directory, judges every pair with the test's thresholds, journals them all at once
(so nothing measured is lost if the run stops before the other pair tests report)
and writes the group file; every pair test of the group then reports its own share
from there.  A worker killed mid-group drops the lock, and the next test of the
group runs it again.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from pytest_meshperf.errors import AgentError, ClientRun, MeasurementError
from pytest_meshperf.measure.measurement import (
    STATUS_ERROR,
    Instance,
    Measurement,
    combine_metrics,
    cpu_bound_warnings,
    judge,
    record_of,
)
from pytest_meshperf.measure.runner import (
    LEASE_MARGIN_S,
    LEASE_WAIT_S,
    SERVER_GRACE_S,
    NodeFailed,
    Pool,
    client_timeout_s,
    collect_server,
    instance_from,
    reason,
    release_leases,
    start_client,
    start_server,
    stop_process,
    take_leases,
    wait_client,
)
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.plan.schedule import Schedule
from pytest_meshperf.spec.params import Params
from pytest_meshperf.spec.thresholds import Threshold
from pytest_meshperf.tools import get_tool

GROUP_DIR = "groups"
START_LEAD_S = 0.5          # from the planned start's announcement to the start itself
ROUND_START_LEAD_S = 0.2    # a round: one flow per source, its start calls arrive within milliseconds
START_LEAD_PER_FLOW_S = 0.005   # each source's agent gets one call per flow before that moment
MIN_START_LEAD_S = 0.03
# pool -> {flows per source: how long the last such group's start calls took}: what the next one's lead is cut to
_CALLS_S: weakref.WeakKeyDictionary[Any, dict[int, float]] = weakref.WeakKeyDictionary()


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
    module = get_tool(params.tool)
    timeout_s = client_timeout_s(module, params)
    started = time.time()
    results = {pair.id: Measurement(src=pair.src.name, dst=pair.dst.name, test=test, nodeid=nodeids.get(pair.id, ""),
                                    tool=params.tool, params=params.to_dict(), round=pair.round, started=started)
               for pair in pairs}

    def fail(pair, message, client=None):
        if results[pair.id].status != STATUS_ERROR:
            results[pair.id].status, results[pair.id].error = STATUS_ERROR, message
            results[pair.id].client = client

    live = []
    for pair in pairs:
        try:
            pool.client(pair.src.name), pool.client(pair.dst.name)
            live.append(pair)
        except AgentError as exc:
            fail(pair, reason(exc))
    offsets = _clock_offsets(pool, live, fail)
    live = [p for p in live if results[p.id].status != STATUS_ERROR]
    lease = []
    # A node whose agent does not answer fails its own pairs, not the whole group: the leases are taken again
    # without it (bounded: each pass drops a node).
    for _ in range(len(pairs) * 2 + 1):
        if not live:
            break
        try:
            lease = take_leases(pool, group_leases(pool, live, schedule), timeout_s + SERVER_GRACE_S + LEASE_MARGIN_S,
                                holder)
            break
        except NodeFailed as exc:
            for pair in live:
                if exc.node in (pair.src.name, pair.dst.name):
                    fail(pair, reason(exc))
            live = [p for p in live if results[p.id].status != STATUS_ERROR]
        except (MeasurementError, AgentError) as exc:
            for pair in live:
                fail(pair, reason(exc))
            live = []
    if live:
        try:
            _run(module, pool, live, params, schedule, timeout_s, results, fail, offsets,
                 {"prepare": time.time() - started})
        finally:
            release_leases(pool, lease)
    finished = time.time()
    for result in results.values():
        result.finished = finished
    return results


def start_lead_s(pool: Pool, schedule: Schedule, most: int) -> float:
    """From the start calls' announcement to the planned start: at first a fixed lead per flow, then twice what
    the last group of that shape took to make its calls (a round's calls take 20-50 ms; its lead is T's overhead).
    A call that still arrives late starts its flow at once, and the skew shows it."""
    fixed = (ROUND_START_LEAD_S if schedule.kind == "rounds" else START_LEAD_S) + START_LEAD_PER_FLOW_S * most
    last = _CALLS_S.get(pool, {}).get(most)
    return fixed if last is None else min(fixed, max(MIN_START_LEAD_S, 2 * last + 0.02))


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


def _run(module, pool, pairs, params, schedule, timeout_s, results, fail, offsets, phases):
    per_pair = flows_per_pair(params)
    servers = {}   # pair id -> [server process]
    clients = {}   # pair id -> [client process]
    done = {}      # pair id -> [client result], every client of the pair ended
    collected = {}  # pair id -> [server result]
    try:
        def start_servers(destination, group):
            for pair in group:
                try:
                    for _ in range(per_pair):
                        servers.setdefault(pair.id, []).append(start_server(
                            pool.client(destination), pair, params, pool.data_address(destination),
                            timeout_s + SERVER_GRACE_S))
                except (MeasurementError, AgentError) as exc:
                    fail(pair, reason(exc))

        # In every destination's lane at once: each server start waits until it listens.
        servers_from = time.time()
        _raise_surprises(pool.on_nodes(start_servers, _by_node(pairs, "dst")))
        phases["servers"] = time.time() - servers_from
        ready = [p for p in pairs if results[p.id].status != STATUS_ERROR]
        by_source = _by_node(ready, "src")
        most = max((len(group) for group in by_source.values()), default=0) * per_pair
        phases["lead"] = lead_s = start_lead_s(pool, schedule, most)
        calls_from = time.time()
        start_at = calls_from + lead_s

        def start_from(source, group):
            for pair in group:
                try:
                    for server in servers[pair.id]:
                        clients.setdefault(pair.id, []).append(start_client(
                            pool.client(source), pair, params, pool.data_address(pair.dst.name),
                            server["port"], pool.data_address(source), timeout_s,
                            start_at=start_at + offsets[source]))
                except (MeasurementError, AgentError) as exc:
                    fail(pair, reason(exc))

        # In every source's lane, so a large group's calls all arrive before the planned start.
        _raise_surprises(pool.on_nodes(start_from, by_source))
        phases["calls"] = time.time() - calls_from
        _CALLS_S.setdefault(pool, {})[most] = phases["calls"]
        def wait_from(source, group):
            for pair in group:
                try:
                    done[pair.id] = [wait_client(pool.client(source), pair, params, c["id"],
                                                 timeout_s + start_at - time.time())
                                     for c in clients.get(pair.id, [])]
                except MeasurementError as exc:
                    fail(pair, str(exc))

        # The clients' ends, every source's in its lane (one call each, not one after another from here).
        _raise_surprises(pool.on_nodes(wait_from, by_source))
    finally:
        # Stray clients (Ctrl-C, a failed wait) stopped from this thread, at once: the lanes may still be
        # waiting for them, and are freed as they end.
        for pair in pairs:
            for client in clients.get(pair.id, [])[len(done.get(pair.id, [])):]:
                stop_process(pool.client(pair.src.name), client["id"])

        def collect(node, group):
            for pair in group:
                if pair.id in servers:
                    collected[pair.id] = [collect_server(pool.client(node), s) for s in servers[pair.id]]

        # Every destination's servers collected at once, in its lane.
        _raise_surprises(pool.on_nodes(collect, _by_node(pairs, "dst")))
    starts = {pair_id: [c["started"] - offsets[results[pair_id].src] for c in finished if c.get("started")]
              for pair_id, finished in done.items()}
    first = min((s for values in starts.values() for s in values), default=None)
    last = max((s for values in starts.values() for s in values), default=None)
    flows = sum(len(values) for values in clients.values())
    for pair in pairs:
        result = results[pair.id]
        if result.status == STATUS_ERROR or pair.id not in done:
            continue
        try:
            result.instances = [instance_from(module, number, client, server, timeout_s)
                                for number, (client, server) in enumerate(zip(done[pair.id], collected[pair.id]), 1)]
        except MeasurementError as exc:
            fail(pair, str(exc), exc.client)
            continue
        result.tool_version = module.tool_version(result.instances[0].raw)
        result.metrics = combine_metrics([inst.metrics for inst in result.instances])
        result.node_load = {k: v for k, v in (("src", done[pair.id][0].get("node_load")),
                                              ("dst", (collected[pair.id][0] or {}).get("node_load"))) if v}
        result.warnings = cpu_bound_warnings(result)
        result.group = {"schedule": schedule.kind, "target": schedule.target, "flows": flows, "start_at": start_at,
                        "skew_s": None if first is None else round(last - first, 6),
                        "start_offset_s": round(min(starts[pair.id]) - first, 6) if starts[pair.id] else None,
                        "phases_s": {name: round(value, 4) for name, value in phases.items()}}


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


# -- one group out of many pair tests -----------------------------------------------------------------

def measurement_from_dict(data: dict[str, Any]) -> Measurement:
    data = dict(data)
    data["instances"] = [Instance(**inst) for inst in data["instances"]]
    data["client"] = ClientRun(**data["client"]) if data.get("client") else None
    return Measurement(**data)


class GroupRunner:
    """Per run and process: runs a test's group once (across xdist workers) and hands out the shares."""

    def __init__(self, run_path: str, get_pool: Callable[[], Pool], schedule: Schedule, writer: str,
                 baseline: Any = None) -> None:
        self.dir = os.path.join(run_path, GROUP_DIR)
        self.baseline = baseline   # baseline.Baseline: judged with the thresholds
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
            judge(result, thresholds, self.baseline)
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
                judge(result, thresholds, self.baseline)
                record(record_of(result, name))   # every pair on disk at once, before any pair test reports
            return {"test": test, "asked": wanted, "writer": self.writer,
                    "measurements": {pid: m.as_dict() for pid, m in measured.items()}}
        return group_file(self.dir, digest, test, run)


def group_file(folder: str, digest: str, label: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The group ``digest``'s file in ``folder``: read if another process (an xdist worker) ran the group, else
    ``run()`` under the file's lock and written (fsynced) before any pair test of the group reports from it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, digest + ".json")
    with open(os.path.join(folder, digest + ".lock"), "w") as lock:
        _lock(lock, LEASE_WAIT_S, label)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        group = run()
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(group))  # json.dump encodes in Python, json.dumps in C: 5x faster here
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return group


def _lock(handle, wait_s, test):
    deadline, delay = time.monotonic() + wait_s, 0.01
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise MeasurementError(f"the group of {test} did not finish within {wait_s:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
