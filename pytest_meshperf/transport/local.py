"""Agents as child processes of the controller, for nodes on this machine.

The agent gets the secret on stdin and keeps the pipe open: when the controller
dies for any reason, the pipe closes and the agent stops all it started.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pytest_meshperf.agent import protocol
from pytest_meshperf.agent.boot import locate_server
from pytest_meshperf.cluster.model import Node
from pytest_meshperf.errors import AgentError
from pytest_meshperf.tools import TOOLS, get_tool
from pytest_meshperf.transport.base import AgentHandle
from pytest_meshperf.transport.rpc import Connector, tcp_connector
from pytest_meshperf.vocabulary import TOOL_BINARIES

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def limit_args(node: Node) -> Iterator[str]:
    """The node's limits (inventory max_send, max_recv, max_processes, ports) as agent arguments."""
    for key in ("max_send", "max_recv", "max_processes"):
        if getattr(node, key, None):
            yield f"--{key.replace('_', '-')}"
            yield str(int(getattr(node, key)))
    if getattr(node, "ports", None):
        yield "--port-range"
        yield node.ports   # validated by the inventory: digits and one dash


def agent_argv(node: Node, log_path: str, lease_s: float, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "pytest_meshperf.agent", "--node", node.name, "--listen", "127.0.0.1",
            "--lease", str(lease_s), "--log", log_path, "--watch-stdin", *extra]


def start_agent(node: Node, secret: str, log_dir: str, lease_s: float = 60.0,
                extra_args: Sequence[str] = ()) -> AgentHandle:
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, f"agent-{node.name}.log")
    env = dict(os.environ)
    # The agent must import this very package, wherever it is installed or checked out.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    extra_args = tuple(limit_args(node)) + tuple(extra_args)
    for binary in TOOL_BINARIES:
        if getattr(node, binary, None):
            extra_args = ("--tool", f"{binary}={getattr(node, binary)}") + extra_args
    try:
        proc = subprocess.Popen(agent_argv(node, log_path, lease_s, extra_args), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # a terminal's Ctrl-C reaches the controller only
    except OSError as exc:
        raise AgentError(f"{node.name}: cannot start the local agent: {exc}")
    proc.stdin.write((protocol.node_key(secret, node.name) + "\n").encode("ascii"))   # its key, not the secret
    proc.stdin.flush()
    ready = _read_ready_line(proc, node, log_path)

    def stop(reply=None):   # its log is already here: the agent is stopped by closing its stdin
        _stop(proc)

    return AgentHandle(node=node.name, endpoint={"kind": "tcp", "host": "127.0.0.1", "port": ready["port"],
                                                    "data_address": node.data_address},
                       connect=tcp_connector("127.0.0.1", ready["port"]), info=ready, stop=stop)


def _read_ready_line(proc, node, log_path):
    deadline = time.monotonic() + READY_TIMEOUT_S
    buffer = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            _stop(proc)
            raise AgentError(f"{node.name}: the local agent did not start (see {log_path})")
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buffer += chunk
    try:
        ready = json.loads(buffer.split(b"\n", 1)[0])
        int(ready["port"])
        if ready.get("meshperf_agent") != protocol.PROTOCOL_VERSION:
            raise ValueError(f"protocol {ready.get('meshperf_agent')!r}")
    except (ValueError, KeyError, TypeError):
        _stop(proc)
        raise AgentError(f"{node.name}: the local agent's ready line is malformed: {buffer[:200]!r}")
    return ready


def _stop(proc):
    if proc.poll() is None:
        try:
            proc.stdin.close()  # the agent stops on EOF
        except OSError:
            pass
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except (OSError, AttributeError):
            pass


class LocalNode:
    """A node on this machine, with the operations SshNode offers (for the meshperf CLI)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def where(self) -> str:
        return f"{self.node.name} ({self.node.address})"

    def connect(self) -> None:
        return None

    def close(self) -> None:
        pass

    def check(self, clock: bool = False, prepare: bool = False) -> dict[str, Any]:
        facts = {"host_key_check": None, "python": ".".join(map(str, sys.version_info[:3])),
                 "clock_offset_s": None, "hostname": os.uname().nodename, "rtt_s": 0.0, "tools": {}}
        for name in TOOLS:
            module, started = get_tool(name), time.time()
            given = getattr(self.node, name, None)   # the inventory's path, as the agent would use it
            path = shutil.which(given or module.DEFAULT_BINARY)
            entry = {"path": path, "version": _version(module, path), "error": None}
            server = getattr(module, "SERVER_BINARY", None)
            if server and path:
                entry["server_path"] = locate_server(path, server, getattr(self.node, server, None))
                entry["server_version"] = _version(module, entry["server_path"])
            if not entry["version"]:
                entry["error"] = f"{given or name} not found; install it ({module.INSTALL_HINT})"
            elif server and not entry["server_version"]:
                missing = getattr(self.node, server, None) or f"(beside {path} nor on PATH)"
                entry["error"] = f"{server} {missing} not found; install it ({module.INSTALL_HINT})"
            facts["tools"][name] = entry
            facts["rtt_s"] = round(time.time() - started, 4)
        return facts

    def deploy(self) -> dict[str, dict[str, Any]]:
        return {"agent": {"path": "(this installation)", "transferred_bytes": 0}}

    def launch_agent(self, secret: str, lease_s: float, run_id: str) -> dict[str, Any]:
        """A detached local agent (for ``meshperf start``); returns its ready line."""
        log_dir = os.path.expanduser(os.path.join("~", ".meshperf", "logs"))
        os.makedirs(log_dir, exist_ok=True)
        argv = [sys.executable, "-m", "pytest_meshperf.agent", "--node", self.node.name, "--listen", "127.0.0.1",
                "--lease", f"{lease_s:g}", "--daemon", "--log",
                os.path.join(log_dir, f"agent-{run_id}-{self.node.name}.log")]
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        out = subprocess.run(argv, input=(protocol.node_key(secret, self.node.name) + "\n").encode("ascii"),
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=READY_TIMEOUT_S, env=env)
        if out.returncode != 0:
            raise AgentError(f"{self.where}: the agent did not start: {out.stderr.decode().strip()[-300:]}")
        return json.loads(out.stdout.decode().strip().splitlines()[-1])

    def channel_connector(self, port: int) -> Connector:
        return tcp_connector("127.0.0.1", port)

    def stop_agents(self, pids: Iterable[int], everything: bool = False) -> tuple[list[int], list[int]]:
        """As SshNode.stop_agents: (PIDs stopped, other agents' PIDs)."""
        others = [p for p in self.agent_pids() if p not in pids]
        return [p for p in list(pids) + (others if everything else []) if self.kill_agent(p)], others

    def kill_agent(self, pid: int) -> bool:
        try:
            with open(f"/proc/{int(pid)}/cmdline", "rb") as handle:
                if b"pytest_meshperf.agent" not in handle.read():
                    return False
            os.kill(int(pid), signal.SIGTERM)
        except OSError:
            return False
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and os.path.exists(f"/proc/{int(pid)}"):
            time.sleep(0.05)
        return True

    def agent_pids(self) -> list[int]:
        """This user's agents of this node: their command line read from /proc and compared word by word
        (a node name is no pattern: ``pgrep -f`` took ``n.1`` for a regex and matched ``nX1`` too)."""
        found, me = [], os.getuid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != me:
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    words = handle.read().decode("utf-8", "replace").split("\0")
            except OSError:   # gone meanwhile
                continue
            if "pytest_meshperf.agent" in words and any(words[i:i + 2] == ["--node", self.node.name]
                                                        for i in range(len(words))):
                found.append(int(entry))
        return sorted(found)


def _version(module, path):
    """The tool's version as ``path`` reports it; None without a path or a version."""
    if not path:
        return None
    out = subprocess.run(module.version_argv(path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=10, stdin=subprocess.DEVNULL)
    return module.parse_version(out.stdout.decode("utf-8", "replace"))
