"""The agent's listener: one thread per connection, admitted by the gate (agent/gate.py), authenticated by the
handshake (protocol.py), then serving one request at a time until the caller goes."""
from __future__ import annotations

import errno
import logging
import select
import socket
import socketserver
import time
from typing import Any

from pytest_meshperf.agent import protocol

log = logging.getLogger("meshperf.agent")

HANDSHAKE_TIMEOUT_S = 10.0   # the whole handshake, from accept to the caller's proof checked
ACCEPT_BACKOFF_S = 0.1
EXIT_HOLD_S = 30.0
POLL_S = 0.5   # a safety net: wake() ends the wait for the next connection at once
ACCEPT_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def listening_server(agent: Any, listen: str, port: int) -> socketserver.ThreadingTCPServer:
    """A bound server for ``agent`` (agent/server.Agent: its secret, node, gate, dispatch, leases)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            try:
                # One deadline for the whole handshake, and small frames until it is done.
                session = protocol.agent_handshake(sock, agent.secret, agent.node,
                                                   time.monotonic() + HANDSHAKE_TIMEOUT_S)
                agent.gate.authenticated(sock)
                # An authenticated caller may stay idle as long as it likes (a pool keeps one
                # connection per node for the whole run); keep-alive notices a vanished peer.
                sock.settimeout(None)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                agent._caller.conn = self
                while not agent.stopping.is_set():
                    request = session.recv(sock)
                    session.send(sock, agent.dispatch(request))
                if getattr(self, "exit_after_reply", False):
                    # agent.shutdown {"log": true}: the process ends with this connection still open, so the
                    # caller's EOF means the agent has exited (bounded: a stuck exit ends the wait, not the agent).
                    agent.stop_serving()
                    time.sleep(EXIT_HOLD_S)
            except (protocol.ProtocolError, OSError) as exc:
                log.debug("connection from %s ended: %s", self.client_address, exc)
            finally:
                agent.gate.closed(sock)
                # A vanished caller (a killed xdist worker): its processes first, then its leases, so that
                # the next measurement on this node never overlaps one of its flows.
                agent.drop_owned(self)
                agent.leases.release_owner(self)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        # server_close() must not join handlers: one blocked on an idle caller's connection would keep a
        # stopping agent alive; its processes are stopped by then, and the handler threads end with the process.
        block_on_close = False
        allow_reuse_address = True
        request_queue_size = 128

        def get_request(self):
            try:
                return super().get_request()
            except OSError as exc:
                # Out of descriptors (or buffers): the connection waits in the backlog; sleeping here keeps
                # the accept loop from spinning on a socket that stays readable.
                if exc.errno in ACCEPT_EXHAUSTED:
                    agent.gate.exhausted(exc)
                    time.sleep(ACCEPT_BACKOFF_S)
                raise

        def verify_request(self, request, client_address):
            return agent.gate.admit(request)

        def handle_error(self, request, client_address):
            log.exception("connection from %s: the handler failed", client_address)

    return Server((listen, port), Handler)


def serve_until(server: socketserver.BaseServer, stopping: Any) -> None:
    """Accept connections until ``stopping`` (an Event) is set and wake() has been called, or POLL_S later."""
    server.timeout = POLL_S
    while not stopping.is_set():
        server.handle_request()


def wake(server: socketserver.BaseServer) -> None:
    """End serve_until's wait now (``stopping`` already set): a connection makes the listener's select() return.
    serve_forever() would notice only at its next poll: that was the controller's wait for every agent to exit
    (0.2 s per run, on the critical path)."""
    try:
        socket.create_connection(server.server_address[:2], timeout=1.0).close()
    except OSError:
        pass  # the poll ends the wait anyway


def peer_closed(sock: socket.socket) -> bool:
    """Whether the other end of ``sock`` has closed it (readable, and nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
