"""Controller-side RPC client of one agent (protocol: pytest_meshperf/agent/protocol.py).

A client holds one authenticated connection and is not thread-safe: use one per
thread.  ``connect`` is any callable returning a socket-like object, so the
same client works over loopback TCP (local nodes) and SSH channels (remote).
"""
from __future__ import annotations

import socket
import time
from typing import Any, Callable

from pytest_meshperf.agent import protocol
from pytest_meshperf.errors import AgentError

CALL_MARGIN_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0   # an agent answers its challenge in milliseconds

# Opens a fresh connection to an agent: a TCP socket, or an SSH channel that acts as one.
Connector = Callable[[], Any]


class RemoteError(AgentError):
    """The agent answered a call with an error."""

    def __init__(self, node: str, method: str, code: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node
        self.method = method
        self.code = code
        self.message = message


def tcp_connector(host: str, port: int, timeout_s: float = 10.0) -> Connector:
    def connect():
        return socket.create_connection((host, port), timeout=timeout_s)
    return connect


class AgentClient:
    def __init__(self, node: str, connect: Connector, secret: str) -> None:
        """``secret``: the run's; the client proves the node's key, derived from it (protocol.node_key)."""
        self.node = node
        self._connect = connect
        self._key = protocol.node_key(secret, node)
        self._sock = None
        self._session: protocol.Session | None = None
        self._ids = 0

    def _ensure(self):
        if self._sock is None:
            try:
                sock = self._connect()
                sock.settimeout(HANDSHAKE_TIMEOUT_S)
                self._session = protocol.client_handshake(sock, self._key, self.node)
            except (OSError, protocol.ProtocolError) as exc:
                raise AgentError(f"{self.node}: cannot reach the meshperf agent: {exc}")
            self._sock = sock
        return self._sock

    def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 30.0) -> Any:
        sock = self._ensure()
        self._ids += 1
        try:
            sock.settimeout(timeout_s + CALL_MARGIN_S)
            self._session.send(sock, {"id": self._ids, "method": method, "params": params or {}})
            answer = self._session.recv(sock)
        except (OSError, protocol.ProtocolError) as exc:
            self.close()
            raise AgentError(f"{self.node}: lost the meshperf agent during {method}: {exc}")
        if answer.get("id") != self._ids:
            self.close()
            raise AgentError(f"{self.node}: the agent answered request {answer.get('id')!r} to request {self._ids}")
        if "error" in answer:
            error = answer["error"] or {}
            raise RemoteError(self.node, method, error.get("code", "unknown"), error.get("message", "unknown error"))
        return answer.get("result")

    def wait_process(self, ident: str, timeout_s: float) -> dict[str, Any] | None:
        """Long-poll ``process.wait`` until the process ends; bounded by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            answer = self.call("process.wait", {"id": ident, "timeout_s": max(0.0, min(remaining, 20.0))},
                               timeout_s=max(1.0, min(remaining, 20.0)))
            if answer.get("done"):
                return answer["result"]
            if remaining <= 0:
                return None

    def shutdown_agent(self, timeout_s: float = 15.0, exit_wait_s: float = 5.0) -> dict[str, Any] | None:
        """``agent.shutdown`` with its log: the agent's answer (tools stopped, ``log``) once its process has
        exited (the connection's EOF); None if it could not be asked or has not exited in ``exit_wait_s``."""
        try:
            answer = self.call("agent.shutdown", {"log": True}, timeout_s=timeout_s)
            self._sock.settimeout(exit_wait_s)
            gone = self._sock.recv(1) == b""
        except (AgentError, OSError):
            return None
        finally:
            self.close()
        return answer if gone else None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


def clock_offset(client: AgentClient, samples: int = 3) -> tuple[float, float]:
    """(the node's clock minus ours, the round trip it was measured over), from agent.ping: the sample
    with the shortest round trip wins; the offset is known to within half that round trip."""
    best = None
    for _ in range(samples):
        sent = time.time()
        remote = client.call("agent.ping", timeout_s=5.0)["time"]
        received = time.time()
        if best is None or received - sent < best[1]:
            best = (remote - (sent + received) / 2, received - sent)
    return best
