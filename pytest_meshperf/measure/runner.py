"""Runs one measurement of one pair on the agents and returns its instances.

Sequence (docs/architecture.md): the destination's agent starts a one-off tool
server on a port it allocates; the source's agent runs the client against it;
the server's own output is collected; both are bounded in time on the node.
Anything that prevents a result raises MeasurementError with the tool's own words,
and with what the client did (ClientRun) when one ran.
"""
from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pytest_meshperf.errors import AgentError, ClientRun, MeasurementError
from pytest_meshperf.measure.measurement import STATUS_ERROR, Instance, Measurement, combine_metrics
from pytest_meshperf.measure.validity import assess
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.spec.params import MAX_INSTANCES, Params
from pytest_meshperf.tools import get_tool
from pytest_meshperf.tools.errors import ToolFailure
from pytest_meshperf.transport.rpc import AgentClient

CONNECT_GRACE_S = 15.0     # client start-up, connection set-up and result exchange
SERVER_GRACE_S = 10.0      # the server outlives its client by this much at most
SERVER_JSON_WAIT_S = 2.0   # how long a one-off server that served a client may take to write its JSON
LEASE_MARGIN_S = 30.0      # a lease outlives its measurement's time limits by this much at most
LEASE_WAIT_S = 3600.0      # how long a test waits for its nodes to be free

# The run's AgentPool (control/controller.py; measure/ sits below control/ and does not import it): a
# ``client(node)`` for each node, its ``failed`` nodes and its ``coordinator()``.
Pool = Any


def client_timeout_s(module: ModuleType, params: Params) -> float:
    runtime = module.expected_runtime_s(params.tool_params())
    return runtime + CONNECT_GRACE_S + 0.1 * runtime


def measure_pair(get_pool: Callable[[], Pool], pair: Pair, params: Params, test: str, nodeid: str,
                 schedule: str = "rounds", holder: str = "") -> Measurement:
    """Measure ``pair``: a Measurement with its instances and metrics, or with status error and the reason.

    ``get_pool`` returns the AgentPool (reaching the agents may itself fail, and that is this pair's error).
    """
    result = Measurement(src=pair.src.name, dst=pair.dst.name, test=test, nodeid=nodeid, tool=params.tool,
                         params=params.to_dict(), round=pair.round, started=time.time())
    try:
        result.instances, result.tool_version, result.node_load = run_measurement(get_pool(), pair, params,
                                                                                  schedule, holder)
        result.metrics = combine_metrics([inst.metrics for inst in result.instances])
        assess(result)
    except (MeasurementError, AgentError) as exc:
        result.status, result.error, result.client = STATUS_ERROR, str(exc), getattr(exc, "client", None)
    result.finished = time.time()
    return result


def run_measurement(pool: Pool, pair: Pair, params: Params, schedule: str = "rounds",
                    holder: str = "") -> tuple[list[Instance], str | None, dict[str, Any]]:
    """Returns (instances, tool version, node load by end).

    Both ends bind to their data address: nodes sharing one network stack (the
    local cluster) stay distinct flows, and remote nodes use their data network.
    The source's send lease and the destination's receive lease are held for the
    whole measurement (with ``sequential``, the cluster lease too); with several
    instances they also reserve the cores the instances are pinned to.
    """
    module = get_tool(params.tool)
    try:
        src, dst = pool.client(pair.src.name), pool.client(pair.dst.name)
    except AgentError as exc:
        raise MeasurementError(reason(exc))
    timeout_s = client_timeout_s(module, params)
    wanted = 0 if params.instances == 1 else (MAX_INSTANCES if params.instances == "auto" else params.instances)
    leases = take_leases(pool, pair_leases(pool, pair, schedule), timeout_s + SERVER_GRACE_S + LEASE_MARGIN_S,
                         holder or pair.id, cores=wanted)
    try:
        return _measure(module, src, dst, pool, pair, params, timeout_s, instance_pins(params.instances, leases))
    finally:
        release_leases(pool, leases)


def instance_pins(instances: int, leases: Sequence[HeldLease]) -> list[tuple[int | None, int | None]]:
    """[(client core, server core)] per instance, from the cores the send and receive leases reserved.

    ``auto``: as many instances as both ends have free cores (at least one); a number:
    that many, sharing the reserved cores round-robin (unpinned if none was free).
    """
    src_cores = next((lease.cores for lease in leases if lease.role == "send"), [])
    dst_cores = next((lease.cores for lease in leases if lease.role == "recv"), [])
    if instances == 1:
        return [(None, None)]
    count = max(1, min(len(src_cores), len(dst_cores))) if instances == "auto" else instances
    return [(src_cores[i % len(src_cores)] if src_cores else None,
             dst_cores[i % len(dst_cores)] if dst_cores else None) for i in range(count)]


@dataclass
class HeldLease:
    node: str
    role: str
    id: str
    cores: list[int]

    @property
    def key(self) -> tuple[str, str]:
        """Who the lease is: an id is its node's own (every agent counts from one), so (node, id)."""
        return self.node, self.id


def pair_leases(pool: Pool, pair: Pair, schedule: str) -> list[tuple[str, str]]:
    """The (node, role) leases one measurement of ``pair`` holds."""
    wanted = [(pair.src.name, "send"), (pair.dst.name, "recv")]
    if schedule == "sequential":
        wanted.insert(0, (pool.coordinator(), "cluster"))
    return wanted


class NodeFailed(MeasurementError):
    """A node's agent failed while the leases were taken (``node``): a group fails only that node's pairs."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(message)
        self.node = node


def take_leases(pool: Pool, wanted: Sequence[tuple[str, str]], ttl_s: float, holder: str, wait_s: float | None = None,
                cores: int = 0, cancelled: Callable[[], bool] | None = None) -> list[HeldLease]:
    """Hold-none-while-waiting: take every (node, role) lease of ``wanted`` or none, back off, retry;
    bounded by ``wait_s`` (0: one try) and by ``cancelled()``.  Send and receive leases also reserve up to
    ``cores`` cores each.  Every node is asked at once, in its lane: a lease belongs to the connection that
    took it, and that lane releases it."""
    wait_s = LEASE_WAIT_S if wait_s is None else wait_s
    by_node: dict[str, list[str]] = {}
    for node, role in wanted:
        by_node.setdefault(node, []).append(role)

    def acquire(node, roles):
        """(the leases taken, (node, role, holders) if one was busy, the AgentError if the agent failed)"""
        held = []
        try:
            for role in roles:
                answer = pool.client(node).call("lease.acquire", {
                    "role": role, "holder": holder, "ttl_s": ttl_s, "cores": 0 if role == "cluster" else cores})
                if not answer["granted"]:
                    return held, (node, role, ", ".join(h["holder"] for h in answer["holders"]) or "?"), None
                held.append(HeldLease(node, role, answer["id"], answer.get("cores") or []))
        except AgentError as exc:
            return held, None, exc
        return held, None, None

    deadline, delay = time.monotonic() + wait_s, 0.01
    while True:
        answers = pool.on_nodes(acquire, by_node)
        for answer in answers.values():
            if isinstance(answer, Exception):  # not the agent's: a bug, raised as itself
                raise answer
        held = [lease for taken, _, _ in answers.values() for lease in taken]
        failed = [(node, error) for node, (_, _, error) in answers.items() if error is not None]
        busy = next((busy for _, busy, _ in answers.values() if busy is not None), None)
        if not failed and busy is None:
            order = {lease: index for index, lease in enumerate(wanted)}
            return sorted(held, key=lambda lease: order[(lease.node, lease.role)])
        release_leases(pool, held)
        if failed:
            raise NodeFailed(failed[0][0], reason(failed[0][1]))
        if time.monotonic() > deadline or (cancelled is not None and cancelled()):
            doing = {"send": "send", "recv": "receive", "cluster": "run alone"}[busy[1]]
            raise MeasurementError(f"{busy[0]} could not {doing} for {wait_s:.0f} s: busy with {busy[2]}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def renew_leases(pool: Pool, held: Iterable[HeldLease], ttl_s: float) -> bool:
    """Extend every lease of ``held`` to ``ttl_s`` from now, each node's in its lane; False if any had ended or
    its agent did not answer."""
    by_node: dict[str, list[HeldLease]] = {}
    for lease in held:
        by_node.setdefault(lease.node, []).append(lease)

    def renew(node, leases):
        return all(pool.client(node).call("lease.renew", {"id": lease.id, "ttl_s": ttl_s})["renewed"]
                   for lease in leases)
    return all(answer is True for answer in pool.on_nodes(renew, by_node).values())


def release_leases(pool: Pool, held: Iterable[HeldLease]) -> None:
    """Release ``held``, each node's in its lane (the connection that took them)."""
    by_node: dict[str, list[HeldLease]] = {}
    for lease in held:
        by_node.setdefault(lease.node, []).append(lease)

    def release(node, leases):
        for lease in leases:
            try:
                pool.client(node).call("lease.release", {"id": lease.id})
            except AgentError:
                pass  # the lease ends with the connection or its TTL anyway
    pool.on_nodes(release, by_node)


def _measure(module, src, dst, pool, pair, params, timeout_s, pins):
    """Start one server per instance on the destination, then the clients, wait, collect the servers."""
    src_address, dst_address = pool.data_address(pair.src.name), pool.data_address(pair.dst.name)
    servers, clients, client_results, server_results = [], [], [], []
    try:
        for _, dst_cpu in pins:
            servers.append(start_server(dst, pair, params, dst_address, timeout_s + SERVER_GRACE_S, dst_cpu))
        for server, (src_cpu, _) in zip(servers, pins):
            clients.append(start_client(src, pair, params, dst_address, server["port"], src_address, timeout_s,
                                        src_cpu, passphrase=pool.passphrase(params.tool, pair.dst.name)))
        for client in clients:
            client_results.append(wait_client(src, pair, params, client["id"], timeout_s))
    finally:
        for client in clients[len(client_results):]:
            stop_process(src, client["id"])
        # A server whose client never started has nothing to write: stopped at once (waiting for its JSON made a
        # pair whose third server could not start take 4 s to say so).
        server_results = [collect_server(dst, server, served=index < len(clients))
                          for index, server in enumerate(servers)]
    instances = [instance_from(module, number, client, server, timeout_s)
                 for number, (client, server) in enumerate(zip(client_results, server_results), 1)]
    node_load = {"src": client_results[0].get("node_load"), "dst": (server_results[0] or {}).get("node_load")}
    return instances, module.tool_version(instances[0].raw), {k: v for k, v in node_load.items() if v}


def start_server(agent: AgentClient, pair: Pair, params: Params, bind: str | None, timeout_s: float,
                 cpu: int | None = None) -> dict[str, Any]:
    try:
        return agent.call("process.start", {"tool": params.tool, "role": "server", "bind": bind,
                                            "timeout_s": timeout_s, "cpu": cpu})
    except AgentError as exc:
        raise MeasurementError(f"cannot start the {params.tool} server on {pair.dst.name}: {reason(exc)}")


def start_client(agent: AgentClient, pair: Pair, params: Params, target: str, port: int, bind: str | None,
                 timeout_s: float, cpu: int | None = None, start_at: float | None = None,
                 passphrase: str | None = None, hold: bool = False) -> dict[str, Any]:
    """``passphrase``: the destination server's (pool.passphrase), for a tool whose servers take one;
    ``hold``: the agent forks it now and starts it on ``release_client``."""
    call = {"tool": params.tool, "role": "client", "target": target, "port": port, "bind": bind,
            "params": params.tool_params(), "timeout_s": timeout_s, "cpu": cpu, "start_at": start_at}
    if passphrase is not None:
        call["passphrase"] = passphrase
    if hold:
        call["hold"] = True
    try:
        return agent.call("process.start", call)
    except AgentError as exc:
        raise MeasurementError(f"{params.tool} client on {pair.src.name}: {reason(exc)}")


def release_client(agent: AgentClient, pair: Pair, params: Params, ident: str, start_at: float) -> None:
    try:
        agent.call("process.release", {"id": ident, "start_at": start_at})
    except AgentError as exc:
        raise MeasurementError(f"{params.tool} client on {pair.src.name}: {reason(exc)}")


def wait_client(agent: AgentClient, pair: Pair, params: Params, ident: str, timeout_s: float) -> dict[str, Any]:
    try:
        result = agent.wait_process(ident, timeout_s + SERVER_GRACE_S)
    except AgentError as exc:
        raise MeasurementError(f"{params.tool} client on {pair.src.name}: {reason(exc)}")
    if result is None:
        raise MeasurementError(f"the {params.tool} client on {pair.src.name} did not end within "
                               f"{timeout_s + SERVER_GRACE_S:.0f} s")
    return result


def stop_process(agent: AgentClient, ident: str) -> None:
    try:
        agent.call("process.stop", {"id": ident})
    except AgentError:
        pass  # its deadline, or the agent's end, stops it anyway


def collect_server(agent: AgentClient, server: dict[str, Any], served: bool = True) -> dict[str, Any] | None:
    """Give the one-off server a moment to write its JSON (if a client was ``served``), then stop it whatever
    state it is in.  A shared server (netserver) serves the next measurement too: left running, described as
    started."""
    if server.get("shared"):
        return dict(server, stdout="", exit_code=None, signal=None, stopped=False)
    try:
        result = agent.wait_process(server["id"], SERVER_JSON_WAIT_S) if served else None
        if result is None:
            result = agent.call("process.stop", {"id": server["id"]})["result"]
        return result
    except AgentError:
        return None


def _load(module, client, server, timeout_s):
    if client.get("spawn_error"):   # nothing ran: the reason is all there is
        raise MeasurementError(f"the {client['tool']} client did not start: {client['spawn_error']}")
    ran = ClientRun.from_process(client)
    if client["timed_out"]:
        raise MeasurementError(f"the {client['tool']} client (pid {client['pid']}) ran past its {timeout_s:.0f} s "
                               "limit and was killed", ran)
    if client["signal"] is not None:
        raise MeasurementError(f"the {client['tool']} client (pid {client['pid']}) was killed by signal "
                               f"{client['signal']}{_server_note(server)}", ran)
    try:
        return module.load_output(client["stdout"])
    except ToolFailure as exc:
        stderr = client["stderr"].strip()
        shown = f" (stderr: {stderr[-300:]})" if stderr else ""
        raise MeasurementError(f"{exc}{shown}{_server_note(server)}", ran)


def _server_note(server):
    if server and server.get("signal") is not None and not server.get("stopped"):
        return f"; the server (pid {server['pid']}) was killed by signal {server['signal']}"
    return ""


def instance_from(module: ModuleType, number: int, client: dict[str, Any], server: dict[str, Any] | None,
                  timeout_s: float) -> Instance:
    data = _load(module, client, server, timeout_s)
    try:
        metrics = module.metrics_from_json(data)
    except ToolFailure as exc:
        raise MeasurementError(str(exc), ClientRun.from_process(client))
    ports = module.client_ports(data)
    server_raw = None
    if server and server.get("stdout"):
        try:
            server_raw = module.load_output(server["stdout"])
        except ToolFailure:
            server_raw = {"unparsed": server["stdout"][-2000:]}
    return Instance(
        instance=number, pid=client["pid"], client_port=ports[0] if ports else None,
        server_port=server["port"] if server else None, start=client["started"], end=client["ended"],
        command=client["command"], metrics=metrics, raw=data, cpu=client.get("cpu"), exit_code=client.get("exit_code"),
        server={"pid": server.get("pid"), "port": server.get("port"), "command": _command(server.get("command")),
                "cpu": server.get("cpu"), "exit_code": server.get("exit_code"), "raw": server_raw,
                **({"shared": True} if server.get("shared") else {})} if server else {})


def _command(command):
    """A command as one shell-quoted line (the agent returns a list for a shared server's start)."""
    return " ".join(shlex.quote(a) for a in command) if isinstance(command, list) else command


def reason(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc)

