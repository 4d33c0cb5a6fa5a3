"""Run-wide agent lifecycle: start an agent per node, keep their leases, stop them.

Exactly one ``Controller`` exists per run, in the process that owns the run
(plain pytest, or the xdist controller); workers get only the endpoints and
open their own connections through an ``AgentPool``.
"""

import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict

from .errors import AgentError
from .rpc import AgentClient, tcp_connector
from . import transport

log = logging.getLogger("meshperf")

DEFAULT_LEASE_S = 60.0
MAX_PARALLEL_STARTS = 16


def new_secret() -> str:
    return secrets.token_hex(32)


class AgentPool:
    """Agent clients by node name, one connection per thread (connections are not thread-safe)."""

    def __init__(self, connectors: Dict[str, object], secret: str):
        self._connectors = connectors
        self._secret = secret
        self._local = threading.local()
        self._all = []
        self._lock = threading.Lock()

    @classmethod
    def from_endpoints(cls, endpoints, secret):
        return cls({name: tcp_connector(ep["host"], ep["port"]) for name, ep in endpoints.items()}, secret)

    def client(self, node: str) -> AgentClient:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        if node not in clients:
            if node not in self._connectors:
                raise AgentError("%s: no agent is running for this node" % node)
            clients[node] = AgentClient(node, self._connectors[node], self._secret)
            with self._lock:
                self._all.append(clients[node])
        return clients[node]

    def close(self):
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()
        self._local = threading.local()


class Controller:
    def __init__(self, cluster, log_dir, secret=None, lease_s=DEFAULT_LEASE_S):
        self.cluster = cluster
        self.log_dir = log_dir
        self.secret = secret or new_secret()
        self.lease_s = lease_s
        self.handles = {}
        self.node_info = {}
        self.pool = None
        self._stop_keepalive = threading.Event()
        self._keepalive = None
        self._lock = threading.Lock()

    @property
    def started(self):
        return self.pool is not None

    def start(self):
        """Start every node's agent (in parallel) and learn what each node has."""
        with self._lock:
            if self.pool is not None:
                return
            nodes = list(self.cluster.nodes)
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_STARTS, len(nodes))) as executor:
                futures = {node.name: executor.submit(transport.start_agent, node, self.secret, self.log_dir,
                                                      self.lease_s) for node in nodes}
            errors = []
            for name, future in futures.items():
                try:
                    self.handles[name] = future.result()
                except AgentError as exc:
                    errors.append(str(exc))
            if errors:
                self._stop_handles()
                raise AgentError("; ".join(errors))
            self.pool = AgentPool({name: h.connect for name, h in self.handles.items()}, self.secret)
            for name in self.handles:
                self.node_info[name] = self.pool.client(name).call("agent.info")
            self._keepalive = threading.Thread(target=self._keep_leases, name="meshperf-keepalive", daemon=True)
            self._keepalive.start()

    def endpoints(self):
        return {name: handle.endpoint for name, handle in self.handles.items()}

    def _keep_leases(self):
        pool = AgentPool({name: h.connect for name, h in self.handles.items()}, self.secret)
        try:
            while not self._stop_keepalive.wait(self.lease_s / 4):
                for name in self.handles:
                    try:
                        pool.client(name).call("agent.ping", timeout_s=5.0)
                    except AgentError as exc:
                        log.warning("keep-alive: %s", exc)
        finally:
            pool.close()

    def stop(self):
        """Stop every agent; each stops all the tool processes it started."""
        self._stop_keepalive.set()
        if self.pool is not None:
            self.pool.close()
        self._stop_handles()

    def _stop_handles(self):
        with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_STARTS, len(self.handles)))) as executor:
            list(executor.map(lambda handle: handle.stop(), self.handles.values()))
