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

from ..agent import protocol
from ..errors import AgentError
from ..rpc import tcp_connector
from . import AgentHandle

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


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
