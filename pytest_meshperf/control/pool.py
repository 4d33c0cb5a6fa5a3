"""A process's connections to the run's agents: ``AgentPool``.

Connections are not thread-safe, so each thread has its own.  Work that must
reach many nodes at once (a round's server starts, client starts, leases,
collections) runs in the node's *lane*: one long-lived thread per node (at
most ``MAX_LANES``, shared round-robin above that), whose connection to that
node is opened once per run and reused by every round.  Before lanes, every
round opened and closed a connection per node and per phase through the SSH
tunnels; at 64 nodes that is hundreds of channels and threads per round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from pytest_meshperf.agent.protocol import node_key
from pytest_meshperf.errors import AgentError
from pytest_meshperf.tools import get_tool
from pytest_meshperf.transport.rpc import AgentClient, clock_offset, tcp_connector

#: Threads that reach nodes at once: one per node up to a 64-node round (the testbed's largest); a larger
#: inventory shares them, each lane serving every 64th node.
MAX_LANES = 64
WAIT_SLICE_S = 0.2

T = TypeVar("T")
R = TypeVar("R")


class AgentPool:
    """Agent clients by node name, one connection per thread, and a lane per node for fan-out."""

    def __init__(self, endpoints: dict[str, dict], secret: str, failed: dict[str, str] | None = None) -> None:
        self.endpoints = endpoints
        self.failed = dict(failed or {})
        self._secret = secret
        self._local = threading.local()
        self._all: list[AgentClient] = []
        self._lock = threading.Lock()
        self._lanes: list[ThreadPoolExecutor] = []
        self._lane_of = {name: index % MAX_LANES for index, name in enumerate(endpoints)}
        self._offsets: dict[str, float] = {}

    def coordinator(self) -> str:
        """The node whose agent holds the cluster-wide lease (sequential schedule): the first reachable one."""
        for name in self.endpoints:
            if name not in self.failed:
                return name
        raise AgentError("no agent is reachable")

    def data_address(self, node: str) -> str:
        """The address other nodes use to reach ``node`` in tests."""
        return self.endpoints[node]["data_address"]

    def client(self, node: str) -> AgentClient:
        """This thread's client of ``node``'s agent (opened on first use, kept)."""
        if node in self.failed:
            raise AgentError(self.failed[node])
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        if node not in clients:
            endpoint = self.endpoints.get(node)
            if endpoint is None:
                raise AgentError(f"{node}: no agent is running for this node")
            clients[node] = AgentClient(node, tcp_connector(endpoint["host"], endpoint["port"]), self._secret)
            with self._lock:
                self._all.append(clients[node])
        return clients[node]

    def close_thread(self) -> None:
        """Close this thread's connections (a thread that ends: kept, they would stay open, each a tunnel pump,
        for the rest of the run)."""
        clients = getattr(self._local, "clients", None) or {}
        self._local.clients = {}
        with self._lock:
            self._all = [c for c in self._all if all(c is not mine for mine in clients.values())]
        for client in clients.values():
            client.close()

    def passphrase(self, tool: str, node: str) -> str | None:
        """``node``'s server passphrase for ``tool`` in this run (netperf: its netserver's ``-Z``), None when the
        tool's servers take none.  Each agent derives its own from the run's secret; a client is given it."""
        module = get_tool(tool)
        return module.passphrase(node_key(self._secret, node), node) if hasattr(module, "passphrase") else None

    def on_nodes(self, work: Callable[[str, T], R], items: Mapping[str, T]) -> dict[str, R | Exception]:
        """``work(node, item)`` for every node of ``items`` at once, each in its node's lane; waits for all and
        returns each node's result, or the exception it raised."""
        futures = {node: self._lane(node).submit(work, node, item) for node, item in items.items()}
        # In short slices: a SIGINT that the kernel hands to a lane's thread only flags the signal; the waiting
        # thread runs the handler (Ctrl-C) when its wait returns, so it must return often.
        pending = set(futures.values())
        while pending:   # bounded by the lanes' own calls, each with its time-out
            _, pending = wait(pending, timeout=WAIT_SLICE_S)
        results: dict[str, R | Exception] = {}
        for node, future in futures.items():
            try:
                results[node] = future.result()
            except Exception as exc:  # handed back: the caller knows which node's pairs it fails
                results[node] = exc
        return results

    def _lane(self, node: str) -> ThreadPoolExecutor:
        index = self._lane_of.get(node, hash(node) % MAX_LANES)
        with self._lock:
            while len(self._lanes) <= index:
                self._lanes.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"meshperf-lane{len(self._lanes)}"))
            return self._lanes[index]

    def clock_offset(self, node: str) -> float:
        """``node``'s clock minus ours, measured once per process (clocks drift microseconds per minute, and a
        round started 64 nodes' pings each time); 0 when within the measurement's own uncertainty."""
        if node not in self._offsets:
            offset_s, rtt_s = clock_offset(self.client(node))
            # An offset within its own uncertainty (nodes sharing one clock, say) is no offset:
            # correcting by measurement noise would only add skew.
            self._offsets[node] = offset_s if abs(offset_s) > rtt_s / 2 else 0.0
        return self._offsets[node]

    def close(self) -> None:
        """Close every connection and end the lanes."""
        with self._lock:
            lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.shutdown(wait=True)
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()
        self._local = threading.local()

