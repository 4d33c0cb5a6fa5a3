"""Remote nodes over SSH, with Fabric: check, deploy, start and stop agents.

One ``SshNode`` holds one SSH connection per node and uses it for everything
(commands, file transfer, the agent's channel); it is never opened per command.
Every remote command is an argument list joined with ``shlex.quote``: nothing
from an inventory reaches a remote shell unquoted.

Host keys: Fabric accepts any key out of the box (paramiko's AutoAddPolicy, no
known_hosts loaded).  Here keys are verified against known_hosts unless the user
opts out explicitly (``--ssh-host-keys``, the inventory's ``host_key_check``, or
ssh_config's ``StrictHostKeyChecking``): ``yes`` (default), ``accept-new`` (add
unknown keys, refuse changed ones, as OpenSSH means it) or ``off``.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import shlex
import socket
import time
from collections.abc import Iterable
from typing import Any

import paramiko
from fabric import Config, Connection

from pytest_meshperf.agent import protocol
from pytest_meshperf.agent.boot import CANNOT_RUN, NEEDS_UPLOAD
from pytest_meshperf.cluster.model import Node
from pytest_meshperf.errors import TransportError
from pytest_meshperf.tools import TOOLS, get_tool
from pytest_meshperf.transport import bundle as agent_bundle
from pytest_meshperf.transport.base import AgentHandle
from pytest_meshperf.transport.commands import (
    AGENTS_SCRIPT,
    LAUNCH_REFUSED,
    LAUNCH_SCRIPT,
    CommandResult,
    facts_line,
    read_to_eof,
)
from pytest_meshperf.transport.deploy import Shipment, shipments, upload
from pytest_meshperf.transport.local import limit_args
from pytest_meshperf.transport.options import CONNECT_TIMEOUT_S, REMOTE_HOME_DIR, SshOptions  # noqa: F401  (SshOptions re-exported)
from pytest_meshperf.transport.rpc import Connector, tcp_connector
from pytest_meshperf.transport.ssh_auth import apply_host_key_policy, explain
from pytest_meshperf.transport.tunnel import Tunnel

log = logging.getLogger("meshperf.ssh")

COMMAND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 60.0   # from launch to ready line: 64 nodes sharing two slow cores took 30-40 s


def _shown_arg(arg):
    """An argument as --echo-commands shows it: a script by its size, anything else as the shell reads it."""
    return f"'<script: {arg.count(chr(10)) + 1} lines>'" if "\n" in arg else shlex.quote(arg)


class SshNode:
    def __init__(self, node: Node, options: SshOptions, nodes_by_name: dict[str, Node] | None = None) -> None:
        self.node = node
        self.options = options
        self._nodes_by_name = nodes_by_name or {}
        self.conn: Connection | None = None
        self.host_key_check = None
        self.known_hosts = None
        self._forward = None
        self.agent_pid = None

    # -- connecting ------------------------------------------------------------
    def _config(self):
        overrides = {"load_ssh_configs": True, "timeouts": {"connect": int(self.options.connect_timeout_s)}}
        if self.options.ssh_config:
            overrides["ssh_config_path"] = self.options.ssh_config
        return Config(overrides=overrides)

    def _connection(self, node, gateway=None):
        kwargs = {"banner_timeout": self.options.connect_timeout_s, "auth_timeout": self.options.connect_timeout_s}
        if node.ssh_key:
            kwargs["key_filename"] = [node.ssh_key]
        conn = Connection(node.address, user=node.ssh_user, port=node.ssh_port, config=self._config(),
                          connect_kwargs=kwargs, connect_timeout=int(self.options.connect_timeout_s),
                          gateway=gateway)
        return conn, apply_host_key_policy(conn, node, self.options)

    def _gateway(self):
        jump = self.node.ssh_jump
        if not jump:
            return None  # Fabric reads ProxyJump from ssh_config by itself
        if jump in self._nodes_by_name:
            return self._connection(self._nodes_by_name[jump])[0]
        user, _, rest = jump.rpartition("@")
        host, port = rest, None
        if rest.count(":") == 1:
            host, port = rest.split(":")
            port = int(port)
        hop = type(self.node)(name=self.node.name + "-jump", address=host, ssh_user=user or self.node.ssh_user,
                              ssh_port=port, ssh_key=self.node.ssh_key, host_key_check=self.node.host_key_check)
        return self._connection(hop)[0]

    @property
    def where(self) -> str:
        return f"{self.node.name} ({self.node.address})"

    def connect(self) -> Connection:
        if self.conn is not None and self.conn.is_connected:
            return self.conn
        self.conn, (self.host_key_check, self.known_hosts) = self._connection(self.node, gateway=self._gateway())
        try:
            self.conn.open()
        except paramiko.BadHostKeyException as exc:
            self.close()
            raise TransportError(
                f"{self.where}: HOST KEY CHANGED: the {exc.key.get_name()} key it presents is not the one "
                f"{self.known_hosts} holds for {exc.hostname}; no connection was made. If the host was reinstalled, "
                f"remove the old key (ssh-keygen -f {shlex.quote(self.known_hosts)} -R {shlex.quote(exc.hostname)}) "
                "and connect again; otherwise someone may be intercepting the connection")
        except paramiko.SSHException as exc:
            message = f"{self.where}: {explain(exc, self)}"
            self.close()
            raise TransportError(message)
        except (OSError, EOFError) as exc:
            self.close()
            raise TransportError(f"{self.where}: cannot connect to port {self.node.ssh_port or 22}: "
                                 f"{getattr(exc, 'strerror', None) or exc or type(exc).__name__}")
        transport = self.conn.transport
        transport.set_keepalive(15)
        return self.conn

    # -- commands ----------------------------------------------------------------
    def run(self, argv: list[str], timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True,
            stdin: bytes = b"") -> CommandResult:
        """Run ``argv`` on the node (quoted, never a shell string from the inventory); returns a CommandResult.
        ``stdin`` is written to the command and closed (secrets go there, never into argv)."""
        command = " ".join(shlex.quote(str(a)) for a in argv)
        if self.options.echo:
            shown = " ".join(_shown_arg(str(a)) for a in argv)
            secret = "   (secret on stdin)" if stdin else ""
            self.options.echo(f"{self.node.name}$ {shown}{secret}")
        result = self._exec(command, timeout_s, stdin)
        if check and result.exited != 0:
            raise TransportError(f"{self.where}: {command!r} exited {result.exited}: "
                                 f"{(result.stderr or result.stdout).strip()[-300:]}")
        return result

    def _exec(self, command: str, timeout_s: float, stdin: bytes):
        """One exec channel, read to EOF: a bare paramiko channel, not Fabric's runner (its IO threads poll
        every 10 ms, which costs controller CPU on every node at once)."""
        transport = self.connect().transport
        try:
            channel = transport.open_session(timeout=timeout_s)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"{self.where}: {command!r} failed: {exc}")
        try:
            channel.settimeout(timeout_s)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            deadline = time.monotonic() + timeout_s
            out = read_to_eof(channel.recv, deadline)
            err = read_to_eof(channel.recv_stderr, deadline)  # buffered by paramiko meanwhile
            status = channel.recv_exit_status()
        except socket.timeout:
            raise TransportError(f"{self.where}: {command!r} failed: no answer within {timeout_s:.0f} s")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"{self.where}: {command!r} failed: {exc}")
        finally:
            channel.close()
        return CommandResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    # -- node facts ---------------------------------------------------------------
    def python(self) -> str:
        return self.node.python or getattr(self, "_python", None) or "python3"

    def _probe(self, tools=(), expect=()):
        """boot.py's facts, sent as source: needs no bundle on the node.  Returns (facts line, sent, arrived)."""
        argv = [self.python(), "-I", "-S", "-c", agent_bundle.boot_source(), "--probe"]
        for path, digest in expect:
            argv += ["--expect", f"{path}={digest}"]
        for name, path in tools:
            argv += ["--tool", f"{name}={path}"]
        started = time.time()
        result = self.run(argv, check=False)
        arrived = time.time()
        data = facts_line(result.stdout)
        if data is None:
            self._no_python(result)
            raise TransportError(f"{self.where}: python3 probe failed: "
                                 f"{(result.stderr or result.stdout).strip()[-300:]}")
        return data, started, arrived

    def _no_python(self, result):
        text = (result.stderr or result.stdout).strip()
        if result.exited == 127 or "not found" in text:
            raise TransportError(f"{self.where}: {self.python()} not found; install python3 (3.9 or newer) on the node "
                                 "or set the inventory key python")

    def check(self, clock: bool = False) -> dict[str, Any]:
        """What a node offers: python3 version, tool versions (and with ``clock``, its clock offset), from one
        remote command.  Raises TransportError."""
        data, started, arrived = self._probe(tools=self.tool_args(TOOLS, {}))
        return self._facts(data, started, arrived, clock)

    def _facts(self, data, started, arrived, clock):
        """boot.py's facts line as the node's facts; raises TransportError if its python is too old."""
        facts = {"host_key_check": self.host_key_check, "rtt_s": round(arrived - started, 4)}
        facts["python"] = ".".join(str(p) for p in data["python"])
        if tuple(data["python"][:2]) < (3, 9):
            raise TransportError(f"{self.where}: python {facts['python']} is too old; the agent needs 3.9 or newer")
        facts["hostname"] = data["hostname"]
        # The node read its clock as the probe ended: compare with when the answer arrived (biased by the
        # return latency only, milliseconds). Runs measure it precisely with agent.ping.
        facts["clock_offset_s"] = round(data["time"] - arrived, 4) if clock else None
        if data.get("executable") and not self.node.python:
            # Later commands run the real interpreter, not a wrapper found on PATH (pyenv shims cost 0.1 s each).
            self._python = data["executable"]
        facts["tools"] = {name: self._tool_facts(name, info) for name, info in data["tools"].items()}
        return facts

    def _tool_facts(self, name, info):
        """One tool of boot.py's facts: path, version, error (with the way out), and its server's if probed."""
        module = get_tool(name)
        version = module.parse_version(info["version_output"]) if info["path"] else None
        entry = {"path": info["path"], "version": version, "error": None}
        if not info["path"]:
            entry["error"] = (f"{self.tool_path(name)} not found on the node; install it ({module.INSTALL_HINT}) or "
                              f"upload one with --local-{name}")
        elif not version:
            entry["error"] = f"{info['path']} does not look like {name}"
        server = info.get("server")
        if server is not None:
            entry["server_path"] = server["path"]
            entry["server_version"] = module.parse_version(server["version_output"]) if server["path"] else None
            if not entry["error"] and not server["path"]:
                server_binary = module.SERVER_BINARY
                missing = info.get("server_given") or f"(beside {info['path']} nor on PATH)"
                entry["error"] = (f"{server_binary} {missing} not found on the node; install it ({module.INSTALL_HINT}) "
                                  f"or upload one with --local-{server_binary}")
            elif not entry["error"] and not entry["server_version"]:
                entry["error"] = f"{server['path']} does not look like {module.SERVER_BINARY}"
        return entry

    def tool_path(self, binary: str) -> str:
        """Where ``binary`` is on the node: --BINARY, else the inventory's key, else its name (found on PATH)."""
        return self.options.tool_paths.get(binary) or getattr(self.node, binary, None) or binary

    def tool_args(self, tools: Iterable[str], uploaded: dict[str, str]) -> list[tuple[str, str]]:
        """(binary, path) for boot.py's and the agent's ``--tool``: each tool's client and, only when one was
        given or uploaded, its server (else the agent looks beside the client, then on PATH)."""
        args = []
        for name in tools:
            args.append((name, uploaded.get(name) or self.tool_path(name)))
            server = getattr(get_tool(name), "SERVER_BINARY", None)
            if server and (uploaded.get(server) or self.tool_path(server) != server):
                args.append((server, uploaded.get(server) or self.tool_path(server)))
        return args

    # -- deploy (transport/deploy.py) -----------------------------------------------
    def shipments(self) -> list[Shipment]:
        """What deploy puts on the node; computed here, no round trip."""
        return shipments(self.options)

    def log_dir(self) -> str:
        return posixpath.join(self.options.remote_dir, "logs")

    def deploy(self) -> dict[str, dict[str, Any]]:
        """Ship the agent (and --local-TOOL binaries) into the remote dir; a second deploy transfers nothing.
        One remote command compares the hashes; SFTP uploads what differs."""
        items = self.shipments()
        data, _, _ = self._probe(expect=[(item.remote_path, item.sha256) for item in items])
        return self._upload(items, set(data["deploy"]))

    def _upload(self, items: list[Shipment], needed: set[str]) -> dict[str, dict[str, Any]]:
        return upload(self, items, needed)   # a method of its own: bench/setup_bench.py times it

    # -- the agent ----------------------------------------------------------------
    def launch_agent(self, secret: str, lease_s: float, run_id: str) -> dict[str, Any]:
        """Start the agent as a daemon on the node's loopback, in one remote command (agent/boot.py checks the
        node and the shipped files first); uploads and tries once more when something is missing or outdated.
        Returns its ready line (port, pid) with the node's facts and what was uploaded."""
        items = self.shipments()
        log_path = posixpath.join(self.log_dir(), f"agent-{run_id}-{self.node.name}.log")
        # LAUNCH_SCRIPT (sent from here) checks who can write the remote dir and the bundle's hash before the
        # bundle runs: nothing from the node's disk runs unchecked.
        argv = [self.python(), "-I", "-S", "-c", LAUNCH_SCRIPT, self.options.remote_dir, items[0].remote_path,
                items[0].sha256]
        for _, _, sha256, remote_path, _ in items:
            argv += ["--expect", f"{remote_path}={sha256}"]
        argv += ["--node", self.node.name, "--listen", "127.0.0.1", "--lease", f"{lease_s:g}", "--daemon",
                 "--log", log_path]
        local = {item.name: item.remote_path for item in items[1:]}
        for binary, path in self.tool_args(TOOLS, local):
            argv += ["--tool", f"{binary}={path}"]
        argv += list(limit_args(self.node))
        deployed = self._upload(items, set())
        for attempt in range(2):  # the second only after an upload
            started = time.time()
            # The node gets its own key (protocol.node_key), never the run's secret.
            result = self.run(argv, timeout_s=START_TIMEOUT_S, check=False,
                              stdin=(protocol.node_key(secret, self.node.name) + "\n").encode("ascii"))
            arrived = time.time()
            data = facts_line(result.stdout)
            if result.exited == LAUNCH_REFUSED:
                raise TransportError(f"{self.where}: {_refusal(result.stdout)}")
            if data is None:
                self._no_python(result)
            if attempt == 0 and (data is None or result.exited == NEEDS_UPLOAD):
                # No facts: the bundle is missing (python cannot open it) or broken; else boot named the files.
                needed = {item.remote_path for item in items} if data is None else set(data["deploy"])
                deployed = self._upload(items, needed)
                continue
            break
        if data is None:
            raise TransportError(f"{self.where}: the agent did not start (exit {result.exited}): "
                                 f"{(result.stderr or result.stdout).strip()[-300:]}")
        facts = self._facts(data, started, arrived, clock=False)
        if result.exited == NEEDS_UPLOAD:
            raise TransportError(f"{self.where}: {', '.join(data['deploy'])} still missing or different on the node "
                                 "after the upload")
        if result.exited == CANNOT_RUN:
            errors = [t["error"] for t in facts["tools"].values() if t["error"]]
            raise TransportError(f"{self.where}: {'; '.join(errors) or 'the node cannot run the agent'}")
        if result.exited != 0:
            raise TransportError(f"{self.where}: the agent did not start (exit {result.exited}): "
                                 f"{result.stderr.strip()[-300:]}")
        try:
            ready = json.loads(result.stdout.strip().splitlines()[-1])
            int(ready["port"])
            self.agent_pid = int(ready["pid"])
        except (ValueError, KeyError, IndexError):
            raise TransportError(f"{self.where}: the agent's ready line is malformed: {result.stdout[-200:]!r}")
        ready["deploy"] = deployed
        ready["log"] = log_path
        ready["facts"] = facts
        return ready

    def channel_connector(self, port: int) -> Connector:
        """Connections to the agent on the node's loopback ``port``, as direct-tcpip channels of this SSH link."""
        def connect():
            transport = self.connect().transport
            return transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                          timeout=self.options.connect_timeout_s)
        return connect

    def start_agent(self, secret: str, lease_s: float, run_id: str, log_dir: str | None = None) -> AgentHandle:
        """Start the agent for a run; returns an AgentHandle reached through a tunnel on this machine's loopback.
        At stop, the agent's log is fetched into ``log_dir`` (the run directory) and removed from the node."""
        ready = self.launch_agent(secret, lease_s, run_id)
        self._logs = (ready["log"], log_dir)
        port = int(ready["port"])
        local_port = self._tunnel(port)
        ready["remote_port"] = port
        return AgentHandle(node=self.node.name, endpoint={"kind": "tcp", "host": "127.0.0.1", "port": local_port,
                                                          "data_address": self.data_address()},
                           connect=tcp_connector("127.0.0.1", local_port), info=ready, stop=self.stop_agent,
                           log_on_node=True)

    def _tunnel(self, remote_port):
        """A loopback port here tunnelled to the agent's loopback port there, through this SSH connection,
        so xdist workers reach remote agents without SSH of their own."""
        transport = self.connect().transport

        def open_channel(dest, origin):
            return transport.open_channel("direct-tcpip", dest, origin, timeout=self.options.connect_timeout_s)
        self._forward = Tunnel(open_channel, "127.0.0.1", remote_port, name=f"tunnel-{self.node.name}")
        return self._forward.port

    def data_address(self) -> str:
        """Where tests reach this node: data_address, or the address SSH resolved (an ssh_config alias's HostName)."""
        if self.node.data_address != self.node.address:
            return self.node.data_address
        return self.conn.host if self.conn is not None else self.node.address

    def stop_agent(self, reply: dict[str, Any] | None = None) -> None:
        """Ask the agent to stop (it stops its tools); make sure it is gone; close the tunnel and the connection.
        ``reply``: agent.shutdown's answer, its log in it, from an agent that has exited (Controller.stop)."""
        if self._forward is not None:
            self._forward.close()
            self._forward = None
        remote, log_dir = getattr(self, "_logs", (None, None))
        if reply is not None:
            self.agent_pid = None
            if log_dir and reply.get("log") is not None:
                self._keep_log(reply["log"], log_dir)
        if self.agent_pid is not None and self.conn is not None and self.conn.is_connected:
            # The same command returns the agent's log and deletes it: no SFTP session (one login shell less).
            _, _, text = self._agents([self.agent_pid], "-", remote if log_dir else None)
            self.agent_pid = None
            if text is not None:
                self._keep_log(text, log_dir)
            elif remote and log_dir:
                log.warning("%s: could not fetch the agent log %s", self.where, remote)
        self.close()

    def _keep_log(self, text, log_dir):
        try:
            os.makedirs(log_dir, exist_ok=True)
            with open(os.path.join(log_dir, f"agent-{self.node.name}.log"), "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            log.warning("%s: could not keep the agent log in %s: %s", self.where, log_dir, exc)

    def stop_agents(self, pids: Iterable[int], everything: bool = False) -> tuple[list[int], list[int]]:
        """Stop the agents ``pids`` (only this node's meshperf agents) and find this user's others here, in one
        command; with ``everything``, stop those too.  Returns (PIDs stopped, other agents' PIDs)."""
        stopped, others, _ = self._agents(pids, "all" if everything else "find")
        return stopped, others

    def _agents(self, pids, mode, remote_log=None):
        """commands.AGENTS_SCRIPT; returns (PIDs stopped, other agents' PIDs, the log's text or None)."""
        argv = [self.python(), "-I", "-S", "-c", AGENTS_SCRIPT, self.node.name, ",".join(str(int(p)) for p in pids),
                mode] + ([remote_log] if remote_log else [])
        try:
            result = self.run(argv, timeout_s=30, check=False)
            head, _, rest = result.stdout.partition("\n")
            found = json.loads(head) if result.exited == 0 else {}
        except (TransportError, ValueError) as exc:
            log.warning("%s: stopping agents: %s", self.where, exc)
            return [], [], None
        fetched, _, text = rest.partition("\n")
        return found.get("stopped", []), found.get("others", []), text if fetched == "log" else None

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


def _refusal(stdout: str) -> str:
    """LAUNCH_SCRIPT's reason for refusing to run the agent (its one JSON line)."""
    for line in stdout.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("meshperf_refused"):
            return str(data["meshperf_refused"])
    return "refusing to run the agent from the remote dir (no reason given)"
