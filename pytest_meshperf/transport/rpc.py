"""Controller-side RPC client of one agent (protocol: pytest_meshperf/agent/protocol.py).

A client holds one authenticated connection and is not thread-safe: use one per
thread.  ``connect`` is any callable returning a socket-like object, so the
same client works over loopback TCP (local nodes) and SSH channels (remote).
"""

import socket
import time

from pytest_meshperf.agent import protocol
from pytest_meshperf.errors import AgentError

CALL_MARGIN_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0   # an agent answers its challenge in milliseconds


class RemoteError(AgentError):
    """The agent answered a call with an error."""

    def __init__(self, node, method, code, message):
        super().__init__("%s: %s" % (node, message))
        self.node = node
        self.method = method
        self.code = code
        self.message = message


def tcp_connector(host, port, timeout_s=10.0):
    def connect():
        return socket.create_connection((host, port), timeout=timeout_s)
    return connect


class AgentClient:
    def __init__(self, node, connect, secret):
        self.node = node
        self._connect = connect
        self._secret = secret
        self._sock = None
        self._ids = 0

    def _ensure(self):
        if self._sock is None:
            try:
                sock = self._connect()
                sock.settimeout(HANDSHAKE_TIMEOUT_S)
                protocol.client_handshake(sock, self._secret)
            except (OSError, protocol.ProtocolError) as exc:
                raise AgentError("%s: cannot reach the meshperf agent: %s" % (self.node, exc))
            self._sock = sock
        return self._sock

    def call(self, method, params=None, timeout_s=30.0):
        sock = self._ensure()
        self._ids += 1
        try:
            sock.settimeout(timeout_s + CALL_MARGIN_S)
            protocol.send_frame(sock, {"id": self._ids, "method": method, "params": params or {}})
            answer = protocol.recv_frame(sock)
        except (OSError, protocol.ProtocolError) as exc:
            self.close()
            raise AgentError("%s: lost the meshperf agent during %s: %s" % (self.node, method, exc))
        if answer.get("id") != self._ids:
            self.close()
            raise AgentError("%s: the agent answered request %r to request %d" % (self.node, answer.get("id"), self._ids))
        if "error" in answer:
            error = answer["error"] or {}
            raise RemoteError(self.node, method, error.get("code", "unknown"), error.get("message", "unknown error"))
        return answer.get("result")

    def wait_process(self, ident, timeout_s):
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

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


def clock_offset(client, samples=3):
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
