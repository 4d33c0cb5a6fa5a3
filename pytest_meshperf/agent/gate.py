"""Who may hold a connection to the agent: a few callers still proving themselves, many authenticated ones.

Anyone who reaches the agent's loopback port can open connections; only the run's controller (and its
xdist workers) can authenticate.  So connections that have not authenticated yet are few and short-lived:
at most ``MAX_UNPROVEN`` at once, each within the handshake's deadline, and a new one evicts the oldest
(a flood of idle connections then only evicts itself, while a real caller's handshake, a millisecond's
work, goes through).  Authenticated connections are capped by what the agent's open-files limit leaves
(``MAX_CONNECTIONS`` at most), so the listener never runs out of descriptors for its own controller.
"""
from __future__ import annotations

import collections
import logging
import resource
import socket
import threading
import time

log = logging.getLogger("meshperf.agent")

MAX_UNPROVEN = 32
MAX_CONNECTIONS = 4096
FILES_KEPT = 128              # descriptors left for everything else: tool output files, pipes, the log
WARN_EVERY_S = 10.0


def connection_cap() -> int:
    """How many connections the agent holds at most: raised towards MAX_CONNECTIONS within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS + FILES_KEPT
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    limit = wanted if soft == resource.RLIM_INFINITY else soft
    return max(MAX_UNPROVEN + 8, min(MAX_CONNECTIONS, limit - FILES_KEPT))


class Gate:
    def __init__(self, cap: int | None = None) -> None:
        self.cap = connection_cap() if cap is None else cap
        self._lock = threading.Lock()
        self._unproven: collections.OrderedDict[int, socket.socket] = collections.OrderedDict()
        self._open = 0
        self._warned = {}   # what -> when it was last logged

    def admit(self, sock: socket.socket) -> bool:
        """A connection just accepted: admitted (False: closed at once, the agent is full)."""
        evict = None
        with self._lock:
            if self._open >= self.cap:
                admitted = False
            else:
                admitted = True
                if len(self._unproven) >= MAX_UNPROVEN:
                    _, evict = self._unproven.popitem(last=False)
                self._unproven[id(sock)] = sock
                self._open += 1
        if evict is not None:
            self._warn("evict", f"more than {MAX_UNPROVEN} connections without authentication at once: closing "
                                "the oldest (is something flooding the agent's port?)")
            try:
                evict.shutdown(socket.SHUT_RDWR)   # its handler's recv ends, and the handler with it
            except OSError:
                pass
        if not admitted:
            self._warn("full", f"{self.cap} connections open: refusing more")
        return admitted

    def authenticated(self, sock: socket.socket) -> None:
        with self._lock:
            self._unproven.pop(id(sock), None)

    def closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._unproven.pop(id(sock), None)
            self._open -= 1

    def exhausted(self, exc: OSError) -> None:
        self._warn("exhausted", f"accept: {exc}; backing off")

    def _warn(self, what, message):
        now = time.monotonic()
        with self._lock:
            if now - self._warned.get(what, -WARN_EVERY_S) < WARN_EVERY_S:
                return
            self._warned[what] = now
        log.warning("%s", message)
