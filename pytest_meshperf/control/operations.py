"""Cluster operations behind the ``meshperf`` command: check, deploy, start, status, stop.

Each runs on every node in parallel (bounded fan-out) and returns one
``HostResult`` per node, in inventory order; ``cli.py`` only formats them.
Agents started by ``meshperf start`` outlive the command: their secret, PIDs
and ports are kept in a state file readable by this user only
(``~/.meshperf/state/``), which ``status`` and ``stop`` use.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from pytest_meshperf.cluster.model import Cluster, Node
from pytest_meshperf.control.controller import new_secret
from pytest_meshperf.errors import AgentError
from pytest_meshperf.tools import get_tool
from pytest_meshperf.transport import is_local
from pytest_meshperf.transport.local import LocalNode
from pytest_meshperf.transport.options import SshOptions
from pytest_meshperf.transport.rpc import AgentClient

if TYPE_CHECKING:
    from pytest_meshperf.transport.ssh import SshNode

MAX_FAN_OUT = 16
WAIT_SLICE_S = 0.2   # the main thread wakes this often to run signal handlers (Ctrl-C)
DEFAULT_CLI_LEASE_S = 3600.0


@dataclass
class HostResult:
    node: Any
    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def backend(node: Node, options: SshOptions, nodes_by_name: dict[str, Node]) -> LocalNode | SshNode:
    if is_local(node):
        return LocalNode(node)
    from pytest_meshperf.transport.ssh import SshNode  # the SSH stack (paramiko, ~0.2 s) only for remote nodes
    return SshNode(node, options, nodes_by_name)


def for_each(cluster: Cluster, options: SshOptions, action: Callable, fan_out: int = MAX_FAN_OUT) -> list[HostResult]:
    nodes_by_name = {n.name: n for n in cluster.nodes}

    def one(node):
        remote = backend(node, options, nodes_by_name)
        try:
            return action(node, remote)
        except AgentError as exc:
            return HostResult(node, False, _short(str(exc), node))
        except Exception as exc:  # one host's surprise must not end the others' results
            return HostResult(node, False, f"{type(exc).__name__}: {exc}")
        finally:
            remote.close()

    executor = ThreadPoolExecutor(max_workers=max(1, min(fan_out, len(cluster.nodes))))
    futures = [executor.submit(one, node) for node in cluster.nodes]
    try:
        # Waited for in short slices: a SIGINT the kernel hands to another thread (one in an SSH connect) only
        # flags the signal, and a main thread blocked in one long wait would run its handler when that wait
        # ends, a connect time-out later.  Bounded by the hosts' own time-outs.
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=WAIT_SLICE_S)
        results = [future.result() for future in futures]
    except BaseException:   # Ctrl-C: do not wait for hosts still connecting (the CLI exits at once)
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return results


def _short(message, node):
    """Errors name the node already in the output's first column."""
    for prefix in (f"{node.name} ({node.address}): ", f"{node.name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


# -- check -------------------------------------------------------------------------
def check(cluster: Cluster, options: SshOptions, required: Iterable[str] = ()) -> list[HostResult]:
    """Every host's facts.  A host fails when a ``required`` tool is missing there, or when no tool works
    at all; a missing tool nobody requires is reported (with its install hint) without failing the host:
    a cluster measured with iperf3 only needs no netperf."""
    def action(node, remote):
        remote.connect()
        facts = remote.check(clock=True)
        errors = {name: t["error"] for name, t in facts["tools"].items() if t["error"]}
        usable = len(errors) < len(facts["tools"])
        problems = [errors[name] for name in required if name in errors] if usable else list(errors.values())
        notes = [] if problems else [f"{name} missing: {error}" for name, error in errors.items()]
        tools = describe_tools(facts["tools"])
        parts = [f"python {facts['python']}"] + ([tools] if tools else [])
        if not is_local(node):
            if facts["clock_offset_s"] is not None:
                parts.append(f"clock {facts['clock_offset_s']:+.3f} s")
            parts.append({"yes": "host key verified", "accept-new": "host key verified or added (accept-new)",
                          "off": "HOST KEY NOT CHECKED"}[facts["host_key_check"]])
        else:
            parts.append("local")
        return HostResult(node, not problems, "; ".join(problems) if problems else "; ".join([", ".join(parts)]
                                                                                              + notes), facts)
    return for_each(cluster, options, action)


def describe_tools(tools: dict[str, dict[str, Any]]) -> str:
    """The binaries a node uses: 'iperf3 3.12 /usr/bin/iperf3, netperf 2.7.0 /usr/bin/netperf (netserver 2.7.0
    /usr/bin/netserver)'; a tool not found is left out (its error says why)."""
    shown = []
    for name, t in tools.items():
        if t.get("version"):
            server = f" ({get_tool(name).SERVER_BINARY} {t.get('server_version') or '?'} {t['server_path']})" \
                if t.get("server_path") else ""
            shown.append(f"{name} {t['version']} {t['path']}{server}")
    return ", ".join(shown)


def clock_spread_s(results: list[HostResult]) -> float | None:
    offsets = [r.details["clock_offset_s"] for r in results
               if r.ok and r.details.get("clock_offset_s") is not None and not is_local(r.node)]
    return max(offsets) - min(offsets) if len(offsets) > 1 else None


# -- deploy ------------------------------------------------------------------------
def deploy(cluster: Cluster, options: SshOptions) -> list[HostResult]:
    def action(node, remote):
        remote.connect()
        if is_local(node):
            return HostResult(node, True, "local node: runs this installation, nothing to deploy")
        shipped = remote.deploy()
        parts = []
        for name, item in shipped.items():
            sent = item["transferred_bytes"]
            shipped_how = f"{sent} bytes sent" if sent else "up to date"
            parts.append(f"{name} {item['path']} ({shipped_how})")
        return HostResult(node, True, ", ".join(parts), shipped)
    return for_each(cluster, options, action)


# -- state of started agents -------------------------------------------------------
def state_path(cluster: Cluster) -> str:
    key = hashlib.sha256((cluster.source or cluster.spec).encode("utf-8")).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".meshperf", "state", f"{key}.json")


def load_state(cluster: Cluster) -> dict[str, Any]:
    try:
        with open(state_path(cluster)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def save_state(cluster: Cluster, state: dict[str, Any]) -> None:
    """Write the state 0600 (it holds the agents' secret); a state without agents is removed, secret and all."""
    path = state_path(cluster)
    if not state.get("agents"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    os.chmod(os.path.dirname(path), 0o700)
    # A fresh file each time: O_EXCL, and a leftover .tmp (a crash) removed first, since O_CREAT would keep the
    # mode of a file that is already there.
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)   # whatever the umask
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=1)
    os.replace(tmp, path)


# -- start / status / stop ----------------------------------------------------------
def start(cluster: Cluster, options: SshOptions, lease_s: float = DEFAULT_CLI_LEASE_S) -> list[HostResult]:
    state = load_state(cluster)
    secret = state.get("secret") or new_secret()
    run_id = f"cli-{int(time.time())}"

    def action(node, remote):
        known = state.get("agents", {}).get(node.name)
        if known and _health(remote, known, secret) is not None:
            return HostResult(node, True, f"already running (PID {known['pid']})", known)
        remote.connect()
        ready = remote.launch_agent(secret, lease_s, run_id)  # checks the node and the bundle first
        entry = {"pid": ready["pid"], "port": ready["port"], "started": time.time(), "lease_s": lease_s}
        return HostResult(node, True, f"agent started (PID {ready['pid']}, lease {lease_s:.0f} s)", entry)

    results = for_each(cluster, options, action)
    agents = dict(state.get("agents", {}))
    agents.update({r.node.name: r.details for r in results if r.ok})
    save_state(cluster, {"cluster": cluster.source or cluster.spec, "secret": secret, "agents": agents})
    return results


def _health(remote, entry, secret):
    client = AgentClient(remote.node.name, remote.channel_connector(int(entry["port"])), secret)
    try:
        health = client.call("agent.health", timeout_s=10.0)
        started = time.monotonic()  # the round trip of a call on the open connection, not the connect
        client.call("agent.ping", timeout_s=10.0)
        health["rpc_rtt_s"] = time.monotonic() - started
        return health if health.get("pid") == entry["pid"] else None
    except AgentError:
        return None
    finally:
        client.close()


def status(cluster: Cluster, options: SshOptions) -> list[HostResult]:
    state = load_state(cluster)

    def action(node, remote):
        entry = state.get("agents", {}).get(node.name)
        if not entry:
            return HostResult(node, False, "not running (no agent started by meshperf start)")
        health = _health(remote, entry, state["secret"])
        if health is None:
            return HostResult(node, False, f"not running (agent PID {entry['pid']} is gone)", entry)
        return HostResult(node, True, describe_health(health), health)
    return for_each(cluster, options, action)


def describe_health(health: dict[str, Any]) -> str:
    procs = health.get("processes", [])
    tools = ", ".join(f"{p['tool']} {p['role']} pid {p['pid']} port {p['port'] or '-'}" for p in procs)
    usage, load = health.get("agent_usage", {}), health.get("load", {})
    rss = usage.get("rss_bytes")
    binaries = describe_tools(health.get("tools") or {})
    parts = [f"Running (PID {health['pid']})", f"up {_duration(health.get('uptime_s', 0))}",
             f"{len(procs)} tool processes" + (f" ({tools})" if tools else ""),
             *([binaries] if binaries else []),
             "node CPU " + ("?" if load.get("cpu_percent") is None else f"{load['cpu_percent']:.0f}") + "%",
             f"agent CPU {usage.get('cpu_seconds', 0):.2f} s",
             "RSS %s" % (f"{rss / 1e6:.1f} MB" if rss else "?"),
             f"RPC {1000 * health.get('rpc_rtt_s', 0):.1f} ms",
             "psutil" if health.get("resources", {}).get("psutil") else "no psutil (reduced figures)"]
    return ", ".join(parts)


def _duration(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def stop(cluster: Cluster, options: SshOptions, everything: bool = False) -> list[HostResult]:
    """Stop the agents ``start`` recorded (with ``everything``, every meshperf agent of this user on the node)."""
    state = load_state(cluster)

    def action(node, remote):
        entry = state.get("agents", {}).get(node.name)
        pids = [entry["pid"]] if entry else []
        remote.connect()
        stopped, others = remote.stop_agents(pids, everything)
        message = ("stopped " + ", ".join(f"PID {p}" for p in stopped)) if stopped else "no agent was running"
        if others and not everything:
            message += (f"; {len(others)} other meshperf agent(s) of this user run here (PIDs "
                        f"{', '.join(map(str, others))}): stop them with --all")
        return HostResult(node, True, message, {"stopped": stopped})

    results = for_each(cluster, options, action)
    agents = {name: e for name, e in state.get("agents", {}).items()
              if not any(r.node.name == name and r.ok for r in results)}
    if state:
        save_state(cluster, dict(state, agents=agents))
    return results
