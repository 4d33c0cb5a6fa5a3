"""The agent's RPC server: authenticated JSON frames on a loopback TCP port.

Methods are listed in ``METHODS`` and documented in docs/agent-api.md.  Any
request renews the controller's lease; when the lease runs out (the controller
died or the network to it was cut) the agent stops everything and exits.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from typing import Any

from pytest_meshperf import __version__
from pytest_meshperf.agent import protocol, resources
from pytest_meshperf.agent.boot import locate_server
from pytest_meshperf.agent.gate import Gate
from pytest_meshperf.agent.leases import ROLES as LEASE_ROLES
from pytest_meshperf.agent.leases import Leases
from pytest_meshperf.agent.listener import listening_server, peer_closed, serve_until, wake
from pytest_meshperf.agent.monitor import CpuMonitor
from pytest_meshperf.agent.ports import PortAllocator, pid_is_listening
from pytest_meshperf.agent.supervisor import Supervisor, TooManyProcesses
from pytest_meshperf.tools import TOOLS, get_tool

log = logging.getLogger("meshperf.agent")

READY_TIMEOUT_S = 5.0
START_ATTEMPTS = 3
MAX_WAIT_S = 30.0
WAIT_SLICE_S = 0.25   # process.wait checks this often whether its caller is still there
MAX_START_DELAY_S = 60.0     # how far ahead a timed start (a burst) may be scheduled
MAX_LOG_BYTES = 16 * 1024 * 1024   # of its log, handed over at the controller's stop (a frame holds 64 MiB)
MAX_SERVER_LIFE_S = 86400.0 + 600   # a shared server's deadline: it ends with the agent (lease) long before


class RpcError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Agent:
    def __init__(self, node: str, secret: str, state_dir: str, port_range: tuple[int, int] = (5201, 5999),
                 lease_s: float = 60.0, max_processes: int = 64, tool_paths: dict[str, str] | None = None,
                 max_send: int = 1, max_recv: int = 1, log_path: str | None = None) -> None:
        self.node = node
        self.log_path = log_path          # its log file, handed over by agent.shutdown {"log": true}
        self.secret = secret
        self.state_dir = state_dir
        self.lease_s = float(lease_s)
        self.started = time.time()
        self.started_monotonic = time.monotonic()
        self.last_contact = time.monotonic()
        self.ports = PortAllocator(*port_range)
        self.monitor = CpuMonitor().start()
        # A shared server (netserver) lives as long as the agent: no monitoring window (it would keep the
        # sampler running all the time, and its forked children do the work, not it).
        self.supervisor = Supervisor(state_dir, max_processes=max_processes,
                                     on_start=lambda proc: None if proc.shared else self.monitor.open(
                                         proc.id, proc.pid, proc.cpu),
                                     on_end=lambda proc: None if proc.shared else self.monitor.close(proc.id))
        self._shared = {}                  # (tool, bind) -> its running shared server
        self._shared_lock = threading.Lock()
        self.tools = self._probe_tools(tool_paths or {})
        self.cores = resources.usable_cores()
        self.leases = Leases({"send": max_send, "recv": max_recv}, cores=self.cores)
        self.gate = Gate()   # connections: few unauthenticated ones, a cap on all (agent/gate.py)
        self._caller = threading.local()   # the connection serving the current request (owns its leases)
        self.stopping = threading.Event()
        self._halt_lock = threading.Lock()
        self.server = None

    # -- tools ----------------------------------------------------------------
    @staticmethod
    def _probe_tools(tool_paths):
        """Each tool's binary and version; a tool with a server (netserver) also its server's: the given
        ``tool_paths[server]``, else the one beside the client, else on PATH."""
        found = {}
        for name in TOOLS:
            module = get_tool(name)
            given = tool_paths.get(name)
            binary = shutil.which(given or module.DEFAULT_BINARY)
            entry = {"path": binary, "version": None, "error": None}
            if not binary:
                where = "" if given else " (PATH)"
                entry["error"] = f"{given or name} not found on the node{where}; install it ({module.INSTALL_HINT})"
            else:
                entry["version"], entry["error"] = _version(module, name, binary)
            server = getattr(module, "SERVER_BINARY", None)
            if server and not entry["error"]:
                given_server = tool_paths.get(server)
                entry["server_path"] = locate_server(binary, server, given_server)
                if not entry["server_path"]:
                    missing = given_server or f"(beside {binary} nor on PATH)"
                    entry["error"] = f"{server} {missing} not found on the node; install it ({module.INSTALL_HINT})"
                else:
                    entry["server_version"], entry["error"] = _version(module, server, entry["server_path"])
            found[name] = entry
        return found

    def _binary(self, tool):
        entry = self.tools.get(tool)
        if entry is None:
            raise RpcError("bad_request", f"unknown tool {tool!r}")
        if entry["error"]:
            raise RpcError("tool_missing", f"node {self.node}: {entry['error']}")
        return entry["path"]

    # -- methods ------------------------------------------------------------------
    def m_agent_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"agent_version": __version__, "protocol": protocol.PROTOCOL_VERSION, "node": self.node,
                "pid": os.getpid(), "hostname": socket.gethostname(), "started": self.started,
                "uptime_s": round(time.monotonic() - self.started_monotonic, 3), "lease_s": self.lease_s,
                "tools": self.tools, "resources": resources.node_resources(),
                "limits": {"max_processes": self.supervisor.max_processes, "max_send": self.leases.capacity["send"],
                           "max_recv": self.leases.capacity["recv"], "ports": [self.ports.low, self.ports.high]}}

    def m_agent_health(self, params: dict[str, Any]) -> dict[str, Any]:
        info = self.m_agent_info(params)
        info.update({"time": time.time(), "processes": self.supervisor.running(), "leases": self.leases.holders(),
                     "ports_held": self.ports.held, "load": resources.node_load(),
                     "agent_usage": resources.own_usage(self.started_monotonic)})
        return info

    def m_agent_ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"time": time.time()}

    def m_agent_shutdown(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("log"):
            threading.Thread(target=self.shutdown, args=("asked by the controller",), daemon=True).start()
            return {"stopping": True}
        # The controller's stop: tools stopped before the answer, the log in it, and this connection held
        # until the process exits (listener.py), so its EOF says the agent is gone: no SSH command needed.
        stopped = self.halt("asked by the controller")
        self._caller.conn.exit_after_reply = True
        return {"stopping": True, "stopped": stopped, "log": self._hand_over_log()}

    def _hand_over_log(self):
        """The log's text (its last MAX_LOG_BYTES), removed from the node: the caller keeps it."""
        if not self.log_path:
            return None
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - MAX_LOG_BYTES))
                text = handle.read().decode("utf-8", "replace")
            os.remove(self.log_path)   # still open for the last lines: they go nowhere
        except OSError as exc:
            log.warning("cannot hand over the log %s: %s", self.log_path, exc)
            return None
        return text

    def m_process_start(self, params: dict[str, Any]) -> dict[str, Any]:
        tool = _field(params, "tool", str)
        role = _field(params, "role", str)
        timeout_s = _field(params, "timeout_s", (int, float))
        if not 0 < timeout_s <= 86400 + 600:
            raise RpcError("bad_request", "timeout_s must be in (0, 87000]")
        bind = params.get("bind")
        if bind is not None and not isinstance(bind, str):
            raise RpcError("bad_request", "bind must be a string")
        cpu = params.get("cpu")
        if cpu is not None and (not isinstance(cpu, int) or isinstance(cpu, bool) or cpu not in self.cores):
            raise RpcError("bad_request", f"node {self.node}: cpu must be one of its usable cores {self.cores}, not "
                                          f"{cpu!r}")
        start_in_s = self._start_in_s(params)
        hold = params.get("hold", False)
        if not isinstance(hold, bool) or (hold and (role != "client" or start_in_s is not None)):
            raise RpcError("bad_request", "hold must be true or false, and only for a client without start_at")
        binary = self._binary(tool)
        module = get_tool(tool)
        if role == "server":
            return self._start_server(module, binary, bind, timeout_s, cpu)
        if role == "client":
            target = _field(params, "target", str)
            port = _field(params, "port", int)
            if not isinstance(params.get("params", {}), dict):
                raise RpcError("bad_request", "params.params must be an object")
            passphrase = params.get("passphrase")   # the destination netserver's, from the controller
            try:
                argv = module.client_argv(binary, target, port, params.get("params") or {}, bind=bind,
                                          passphrase=passphrase)
            except ValueError as exc:
                raise RpcError("bad_request", str(exc))
            proc = self._start(tool, role, argv, timeout_s, None, cpu, start_in_s,
                               secrets=(passphrase,) if passphrase else (), hold=hold)
            return proc.summary() | {"command": proc.shown_argv()}
        raise RpcError("bad_request", "role must be server or client")

    def _start_in_s(self, params, late_s=1.0):
        """``start_at`` (epoch seconds on this node's clock) as seconds from now, None without it."""
        start_at = params.get("start_at")
        if start_at is None:
            return None
        if isinstance(start_at, bool) or not isinstance(start_at, (int, float)):
            raise RpcError("bad_request", "start_at must be a number (epoch seconds on the node's clock)")
        start_in_s = start_at - time.time()
        if not -late_s <= start_in_s <= MAX_START_DELAY_S:
            raise RpcError("bad_request", f"node {self.node}: start_at is {start_in_s:.1f} s from now; it must lie "
                                          f"within -{late_s:.0f} s and {MAX_START_DELAY_S:.0f} s (are the clocks far "
                                          "apart?)")
        return start_in_s

    def m_process_release(self, params: dict[str, Any]) -> dict[str, Any]:
        """A held client (process.start with hold) started now, or at ``start_at``."""
        ident = _field(params, "id", str)
        try:
            # Late is now: a release's flows share no node with anything still running (the caller waited).
            proc = self.supervisor.release(ident, max(0.0, self._start_in_s(params, late_s=86400.0) or 0.0))
        except KeyError:
            raise RpcError("unknown_process", f"node {self.node} has no process {ident}")
        except ValueError as exc:
            raise RpcError("bad_request", f"node {self.node}: {exc}")
        return proc.summary()

    def _start(self, tool, role, argv, timeout_s, port, cpu=None, start_in_s=None, shared=False, secrets=(),
               hold=False):
        try:
            return self.supervisor.start(tool, role, argv, timeout_s, port=port, cpu=cpu, start_in_s=start_in_s,
                                         shared=shared, secrets=secrets, owner=getattr(self._caller, "conn", None),
                                         hold=hold)
        except TooManyProcesses:
            raise RpcError("too_many_processes", f"node {self.node} runs its maximum of {self.supervisor.max_processes}"
                                                 " tool processes")
        except OSError as exc:
            raise RpcError("tool_failed_to_start", f"node {self.node}: {argv[0]}: {exc}")

    def _start_server(self, module, binary, bind, timeout_s, cpu=None):
        if getattr(module, "SHARED_SERVER", False):
            return self._shared_server(module, bind)
        return self._listening_server(module, binary, bind, timeout_s, cpu)

    def _shared_server(self, module, bind):
        """The node's one server of ``module`` for ``bind`` (netserver takes concurrent clients), started on
        first use and again if it died; it lives until the agent stops (stop_all).  Not pinned to a core."""
        with self._shared_lock:
            proc = self._shared.get((module.NAME, bind))
            if proc is not None and proc.done.is_set():
                result = self.supervisor.wait(proc.id, 0)
                log.warning("shared %s server pid %s on port %s had ended (exit %s, signal %s): starting another; "
                            "its output: %s", module.NAME, proc.pid, proc.port, result["exit_code"], result["signal"],
                            (result["stdout"] + result["stderr"]).strip()[-300:])
                self.ports.release(proc.port)
                proc = None
            if proc is None:
                binary = self.tools[module.NAME]["server_path"]
                proc = self.supervisor.get(self._listening_server(module, binary, bind, MAX_SERVER_LIFE_S, None,
                                                                  shared=True)["id"])
                self._shared[(module.NAME, bind)] = proc
            return proc.summary() | {"command": proc.shown_argv(), "shared": True}

    def _listening_server(self, module, binary, bind, timeout_s, cpu=None, shared=False):
        last_error = "no attempt made"
        for _ in range(START_ATTEMPTS):
            port = self.ports.allocate(bind)
            if port is None:
                raise RpcError("no_free_port", f"node {self.node}: no free port in {self.ports.low}-{self.ports.high}")
            # A shared server (netserver) serves nothing to a client without this node's passphrase.
            secret = module.passphrase(self.secret, self.node) if hasattr(module, "passphrase") else None
            proc = self._start(module.NAME, "server", module.server_argv(binary, port, bind, passphrase=secret),
                               timeout_s, port, cpu, shared=shared, secrets=(secret,) if secret else ())
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline and not proc.done.is_set():
                if pid_is_listening(proc.pid, port):
                    return proc.summary() | {"command": proc.shown_argv()}
                time.sleep(0.002)
            result = self.supervisor.stop(proc.id)
            self.ports.release(port)
            last_error = (result["stdout"] + result["stderr"]).strip()[-300:] or f"did not listen within {READY_TIMEOUT_S:.0f} s"
            log.warning("server on port %d failed to start: %s", port, last_error)
        raise RpcError("tool_failed_to_start", f"node {self.node}: {module.NAME} server failed to start: {last_error}")

    def m_process_wait(self, params: dict[str, Any]) -> dict[str, Any]:
        ident = _field(params, "id", str)
        timeout_s = params.get("timeout_s", MAX_WAIT_S)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
            raise RpcError("bad_request", "timeout_s must be a number")
        timeout_s = min(float(timeout_s), MAX_WAIT_S, self.lease_s / 2)
        conn = getattr(self._caller, "conn", None)
        deadline = time.monotonic() + timeout_s
        try:
            # In slices, watching the caller: a long wait must not hide that its caller is gone (a killed
            # xdist worker), whose processes are then stopped at once (drop_owned), not when they end.
            while True:
                result = self.supervisor.wait(ident, max(0.0, min(WAIT_SLICE_S, deadline - time.monotonic())))
                if result is not None or time.monotonic() >= deadline:
                    break
                if conn is not None and peer_closed(conn.request):
                    raise ConnectionAbortedError("the caller closed its connection during process.wait")
        except KeyError:
            raise RpcError("unknown_process", f"node {self.node} has no process {ident}")
        if result is None:
            return {"done": False}
        if result["port"] is not None:
            self.ports.release(result["port"])
        return {"done": True, "result": result}

    def m_process_stop(self, params: dict[str, Any]) -> dict[str, Any]:
        ident = _field(params, "id", str)
        try:
            result = self.supervisor.stop(ident)
        except KeyError:
            raise RpcError("unknown_process", f"node {self.node} has no process {ident}")
        if result["port"] is not None:
            self.ports.release(result["port"])
        return {"done": True, "result": result}

    def m_process_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"processes": self.supervisor.running()}

    def m_lease_acquire(self, params: dict[str, Any]) -> dict[str, Any]:
        role = _field(params, "role", str)
        if role not in LEASE_ROLES:
            raise RpcError("bad_request", f"role must be one of {', '.join(LEASE_ROLES)}")
        ttl_s = _field(params, "ttl_s", (int, float))
        if not 0 < ttl_s <= 86400 + 600:
            raise RpcError("bad_request", "ttl_s must be in (0, 87000]")
        holder = str(params.get("holder", ""))[:200]
        cores = params.get("cores", 0)
        if isinstance(cores, bool) or not isinstance(cores, int) or not 0 <= cores <= 4096:
            raise RpcError("bad_request", "cores must be a whole number from 0 to 4096")
        ident, reserved = self.leases.acquire(role, holder, getattr(self._caller, "conn", None), float(ttl_s), cores)
        return {"granted": ident is not None, "id": ident, "cores": reserved,
                "holders": [] if ident else [h for h in self.leases.holders() if h["role"] == role]}

    def drop_owned(self, owner: object) -> None:
        """Stop and forget every process ``owner`` (a connection now closed) started and did not collect, and
        free their ports: nobody is left to collect them."""
        for proc in self.supervisor.owned_by(owner):
            try:
                result = self.supervisor.stop(proc.id)
            except KeyError:   # collected meanwhile
                continue
            if result["port"] is not None:
                self.ports.release(result["port"])
            log.info("stopped %s %s pid %s: the connection that started it closed", proc.role, proc.tool, proc.pid)

    def m_lease_renew(self, params: dict[str, Any]) -> dict[str, Any]:
        ttl_s = _field(params, "ttl_s", (int, float))
        if not 0 < ttl_s <= 86400 + 600:
            raise RpcError("bad_request", "ttl_s must be in (0, 87000]")
        return {"renewed": self.leases.renew(_field(params, "id", str), float(ttl_s),
                                             getattr(self._caller, "conn", None))}

    def m_lease_release(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"released": self.leases.release(_field(params, "id", str), getattr(self._caller, "conn", None))}

    METHODS = {
        "agent.info": m_agent_info,
        "agent.health": m_agent_health,
        "agent.ping": m_agent_ping,
        "agent.shutdown": m_agent_shutdown,
        "process.start": m_process_start,
        "process.release": m_process_release,
        "process.wait": m_process_wait,
        "process.stop": m_process_stop,
        "process.list": m_process_list,
        "lease.acquire": m_lease_acquire,
        "lease.renew": m_lease_renew,
        "lease.release": m_lease_release,
    }

    def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        self.last_contact = time.monotonic()
        try:
            method = request.get("method")
            handler = self.METHODS.get(method)
            if handler is None:
                raise RpcError("unknown_method", f"no method {method!r}")
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise RpcError("bad_request", "params must be an object")
            return {"id": request.get("id"), "result": handler(self, params)}
        except RpcError as exc:
            return {"id": request.get("id"), "error": {"code": exc.code, "message": exc.message}}
        except ConnectionAbortedError:   # the caller is gone: nobody to answer, the connection ends
            raise
        except Exception as exc:  # an agent bug must not kill the connection silently
            log.exception("internal error in %r", request.get("method"))
            return {"id": request.get("id"), "error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}}
        finally:
            self.last_contact = time.monotonic()

    # -- serving --------------------------------------------------------------
    def serve(self, listen: str = "127.0.0.1", port: int = 0) -> int:
        """Listen (agent/listener.py); returns the port."""
        self.server = listening_server(self, listen, port)
        return self.server.server_address[1]

    def run_forever(self) -> None:
        threading.Thread(target=self._lease_watch, name="lease", daemon=True).start()
        try:
            serve_until(self.server, self.stopping)
        finally:
            self.supervisor.close()
            self.server.server_close()

    def _lease_watch(self):
        while not self.stopping.wait(0.5):
            idle = time.monotonic() - self.last_contact
            if idle > self.lease_s:
                self.shutdown(f"lease expired: no word from the controller for {idle:.0f} s")

    def shutdown(self, reason: str) -> None:
        self.halt(reason)
        self.stop_serving()

    def halt(self, reason: str) -> int:
        """Refuse new requests and stop every tool process; returns how many were running (0 if halted before)."""
        with self._halt_lock:
            if self.stopping.is_set():
                return 0
            self.stopping.set()
            log.info("shutting down: %s", reason)
            stopped = self.supervisor.stop_all()
            self.monitor.stop()
            log.info("stopped %d tool processes", stopped)
            return stopped

    def stop_serving(self) -> None:
        """run_forever() returns, and with it the process (daemon.py); after halt(), from any thread."""
        if self.server is not None:
            wake(self.server)


def _field(params, name, kinds):
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise RpcError("bad_request", f"field {name!r} is missing or has the wrong type")
    return value


def _version(module, name, binary):
    """(version, None) or (None, why ``binary`` is not a usable ``name``)."""
    try:
        out = subprocess.run(module.version_argv(binary), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{binary} does not run: {exc}"
    text = out.stdout.decode("utf-8", "replace")
    version = module.parse_version(text)
    if version is None:
        return None, f"{binary} does not look like {name} (its --version said {text.strip()[:80]!r})"
    return version, None
