"""Agents as child processes of the controller, for nodes on this machine.

The agent gets the secret on stdin and keeps the pipe open: when the controller
dies for any reason, the pipe closes and the agent stops all it started.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

from pytest_meshperf.agent import protocol
from pytest_meshperf.agent.boot import locate_server
from pytest_meshperf.errors import AgentError
from pytest_meshperf.transport.base import AgentHandle
from pytest_meshperf.transport.rpc import tcp_connector
from pytest_meshperf.vocabulary import TOOL_BINARIES

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def limit_args(node):
    """The node's limits (inventory max_send, max_recv, max_processes, ports) as agent arguments."""
    for key in ("max_send", "max_recv", "max_processes"):
        if getattr(node, key, None):
            yield "--%s" % key.replace("_", "-")
            yield str(int(getattr(node, key)))
    if getattr(node, "ports", None):
        yield "--port-range"
        yield node.ports   # validated by the inventory: digits and one dash


def agent_argv(node, log_path, lease_s, extra=()):
    return [sys.executable, "-m", "pytest_meshperf.agent", "--node", node.name, "--listen", "127.0.0.1",
            "--lease", str(lease_s), "--log", log_path, "--watch-stdin", *extra]


def start_agent(node, secret, log_dir, lease_s=60.0, extra_args=()):
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, "agent-%s.log" % node.name)
    env = dict(os.environ)
    # The agent must import this very package, wherever it is installed or checked out.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    extra_args = tuple(limit_args(node)) + tuple(extra_args)
    for binary in TOOL_BINARIES:
        if getattr(node, binary, None):
            extra_args = ("--tool", "%s=%s" % (binary, getattr(node, binary))) + extra_args
    try:
        proc = subprocess.Popen(agent_argv(node, log_path, lease_s, extra_args), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # a terminal's Ctrl-C reaches the controller only
    except OSError as exc:
        raise AgentError("%s: cannot start the local agent: %s" % (node.name, exc))
    proc.stdin.write((secret + "\n").encode("ascii"))
    proc.stdin.flush()
    ready = _read_ready_line(proc, node, log_path)

    def stop():
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
            raise AgentError("%s: the local agent did not start (see %s)" % (node.name, log_path))
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
            raise ValueError("protocol %r" % ready.get("meshperf_agent"))
    except (ValueError, KeyError, TypeError):
        _stop(proc)
        raise AgentError("%s: the local agent's ready line is malformed: %r" % (node.name, buffer[:200]))
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

    def __init__(self, node):
        self.node = node

    @property
    def where(self):
        return "%s (%s)" % (self.node.name, self.node.address)

    def connect(self):
        return None

    def close(self):
        pass

    def check(self, clock=False, prepare=False):
        import shutil
        import time

        from pytest_meshperf.tools import TOOLS, get_tool
        facts = {"host_key_check": None, "python": "%d.%d.%d" % sys.version_info[:3], "clock_offset_s": None,
                 "hostname": os.uname().nodename, "rtt_s": 0.0, "tools": {}}
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
                entry["error"] = "%s not found; install it (%s)" % (given or name, module.INSTALL_HINT)
            elif server and not entry["server_version"]:
                entry["error"] = "%s %s not found; install it (%s)" % (
                    server, getattr(self.node, server, None) or "(beside %s nor on PATH)" % path, module.INSTALL_HINT)
            facts["tools"][name] = entry
            facts["rtt_s"] = round(time.time() - started, 4)
        return facts

    def deploy(self):
        return {"agent": {"path": "(this installation)", "transferred_bytes": 0}}

    def launch_agent(self, secret, lease_s, run_id):
        """A detached local agent (for ``meshperf start``); returns its ready line."""
        log_dir = os.path.expanduser(os.path.join("~", ".meshperf", "logs"))
        os.makedirs(log_dir, exist_ok=True)
        argv = [sys.executable, "-m", "pytest_meshperf.agent", "--node", self.node.name, "--listen", "127.0.0.1",
                "--lease", "%g" % lease_s, "--daemon", "--log",
                os.path.join(log_dir, "agent-%s-%s.log" % (run_id, self.node.name))]
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        out = subprocess.run(argv, input=(secret + "\n").encode("ascii"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=READY_TIMEOUT_S, env=env)
        if out.returncode != 0:
            raise AgentError("%s: the agent did not start: %s" % (self.where, out.stderr.decode().strip()[-300:]))
        return json.loads(out.stdout.decode().strip().splitlines()[-1])

    def channel_connector(self, port):
        return tcp_connector("127.0.0.1", port)

    def stop_agents(self, pids, everything=False):
        """As SshNode.stop_agents: (PIDs stopped, other agents' PIDs)."""
        others = [p for p in self.agent_pids() if p not in pids]
        return [p for p in list(pids) + (others if everything else []) if self.kill_agent(p)], others

    def kill_agent(self, pid):
        try:
            with open("/proc/%d/cmdline" % int(pid), "rb") as handle:
                if b"pytest_meshperf.agent" not in handle.read():
                    return False
            os.kill(int(pid), signal.SIGTERM)
        except OSError:
            return False
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and os.path.exists("/proc/%d" % int(pid)):
            time.sleep(0.05)
        return True

    def agent_pids(self):
        out = subprocess.run(["pgrep", "-u", str(os.getuid()), "-f", "pytest_meshperf.agent --node %s " % self.node.name],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        return [int(p) for p in out.stdout.split()]


def _version(module, path):
    """The tool's version as ``path`` reports it; None without a path or a version."""
    if not path:
        return None
    out = subprocess.run(module.version_argv(path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=10, stdin=subprocess.DEVNULL)
    return module.parse_version(out.stdout.decode("utf-8", "replace"))
