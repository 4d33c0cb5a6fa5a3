"""Run-wide agent lifecycle: start an agent per node, keep their leases, stop them.

Exactly one ``Controller`` exists per run, in the process that owns the run
(plain pytest, or the xdist controller); workers get only the endpoints and
open their own connections through an ``AgentPool``.  A node that cannot be
reached is recorded in ``failed`` with the reason; the others go on.
"""
from __future__ import annotations

import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pytest_meshperf import transport
from pytest_meshperf.cluster.model import Cluster
from pytest_meshperf.control.pool import AgentPool
from pytest_meshperf.control.resources import raise_open_files_limit
from pytest_meshperf.errors import AgentError
from pytest_meshperf.transport.options import SshOptions
from pytest_meshperf.transport.rpc import AgentClient, clock_offset, tcp_connector

log = logging.getLogger("meshperf")

DEFAULT_LEASE_S = 60.0
# One wave for up to 64 nodes: a start is mostly waiting on the node; each costs the controller ~10 ms of CPU.
MAX_PARALLEL_STARTS = 64


def new_secret() -> str:
    return secrets.token_hex(32)


class Controller:
    def __init__(self, cluster: Cluster, log_dir: str, run_id: str, secret: str | None = None,
                 lease_s: float = DEFAULT_LEASE_S, ssh_options: SshOptions | None = None) -> None:
        self.cluster = cluster
        self.log_dir = log_dir
        self.run_id = run_id
        self.secret = secret or new_secret()
        self.lease_s = lease_s
        self.ssh_options = ssh_options
        self.handles = {}
        self.failed: dict[str, str] = {}
        self.node_info = {}
        self.pool = None
        self._stop_keepalive = threading.Event()
        self._keepalive = None
        self._lock = threading.Lock()

    def _start_one(self, node):
        nodes_by_name = {n.name: n for n in self.cluster.nodes}
        handle = transport.start_agent(node, self.secret, self.log_dir, self.lease_s, self.run_id,
                                       self.ssh_options, nodes_by_name)
        # Learnt at once, while other nodes still start: no second round over all nodes.
        try:
            return handle, self._learn(node.name, handle)
        except Exception as exc:  # the handle must come back, or nothing would stop this agent
            return handle, f"{node.name}: {type(exc).__name__}: {exc}"

    def start(self) -> None:
        """Start every node's agent (bounded fan-out) and learn what each node has."""
        with self._lock:
            if self.pool is not None:
                return
            nodes = list(self.cluster.nodes)
            raise_open_files_limit()  # this process holds every node's SSH link and tunnel
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_STARTS, len(nodes))) as executor:
                futures = {node.name: executor.submit(self._start_one, node) for node in nodes}
            for name, future in futures.items():
                try:
                    self.handles[name], learnt = future.result()
                    if isinstance(learnt, str):
                        self.failed[name] = learnt
                    else:
                        self.node_info[name] = learnt
                except AgentError as exc:
                    self.failed[name] = str(exc)
                    log.warning("%s", exc)
                except Exception as exc:  # a surprise on one node must not orphan the others' agents
                    self.failed[name] = f"{name}: {type(exc).__name__}: {exc}"
                    log.warning("%s", self.failed[name])
            self.pool = AgentPool(self.endpoints(), self.secret, self.failed)
            self._keepalive = threading.Thread(target=self._keep_leases, name="meshperf-keepalive", daemon=True)
            self._keepalive.start()

    def _learn(self, name, handle):
        """What the node's agent says of itself, and its clock offset; the error message if it cannot say."""
        client = AgentClient(name, tcp_connector(handle.endpoint["host"], handle.endpoint["port"]), self.secret)
        try:
            info = client.call("agent.info")
            info["facts"] = handle.info.get("facts")
            info["clock_offset_s"] = round(clock_offset(client)[0], 6)
            return info
        except AgentError as exc:
            return str(exc)
        finally:
            client.close()

    def endpoints(self) -> dict[str, dict[str, Any]]:
        return {name: handle.endpoint for name, handle in self.handles.items()}

    def _keep_leases(self):
        pool = AgentPool(self.endpoints(), self.secret, self.failed)
        try:
            while not self._stop_keepalive.wait(self.lease_s / 4):
                for name in self.handles:
                    if name in self.failed:
                        continue
                    try:
                        pool.client(name).call("agent.ping", timeout_s=5.0)
                    except AgentError as exc:
                        log.warning("keep-alive: %s", exc)
        finally:
            pool.close()

    def stop(self) -> None:
        """Stop every agent; each stops all the tool processes it started."""
        self._stop_keepalive.set()
        if self.pool is not None:
            self.pool.close()
        with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_STARTS, len(self.handles)))) as executor:
            list(executor.map(self._stop_one, self.handles.values()))

    def _stop_one(self, handle):
        # A node's log fetched and its exit seen over RPC: one call, not a remote command per node (3.6 s at
        # 32 nodes on two cores).  Without that answer, the transport stops the agent its own way.
        reply = None
        if handle.log_on_node and handle.node not in self.failed:
            reply = AgentClient(handle.node, handle.connect, self.secret).shutdown_agent()
        handle.stop(reply)
