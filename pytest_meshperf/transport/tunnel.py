"""A loopback port on this machine forwarded through an SSH connection (direct-tcpip).

Fabric's ``Connection.forward_local`` does this too, but it cannot carry a test
run: its listener comes up in a thread after the context manager returned
(connections race it), it accepts with a backlog of one, its thread dies on the
first exception (the tunnel stays dead for the rest of the run), and a refused
remote port leaves the local socket open, so a caller waits out its time-out
instead of seeing the agent is gone.  This forwarder binds before it returns,
serves each connection on its own thread, and closes the local side as soon as
the remote side cannot be reached.
"""
from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import threading
import time
from typing import Any, Callable

log = logging.getLogger("meshperf.ssh")

CHUNK_BYTES = 64 * 1024
ACCEPT_POLL_S = 0.5
ACCEPT_RETRY_S = 0.1
# accept() failures that pass: out of descriptors (EMFILE, ENFILE), buffers, memory; a peer that gave up first
TRANSIENT_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED}
#: Connections one tunnel serves at once (each costs about three descriptors): a run needs a few per process
#: (lanes, the pipeline, the keep-alive) times its xdist workers; past this a new one is closed at once, so that
#: a flood of connections to this machine's loopback port cannot take the controller's descriptors.
MAX_CONNECTIONS = 256
WARN_EVERY_S = 10.0


class Tunnel:
    def __init__(self, open_channel: Callable[..., Any], remote_host: str, remote_port: int, name: str = "tunnel") -> None:
        """``open_channel(dest, origin)`` opens a direct-tcpip channel (a paramiko Transport method, bound)."""
        self._open_channel = open_channel
        self._remote = (remote_host, remote_port)
        self._name = name
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._open = set()
        self._serving = 0          # connections being served (at most MAX_CONNECTIONS)
        self._warned_full = -WARN_EVERY_S
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))   # the OS picks a free port: no race with other tunnels
        self._listener.listen(64)
        self._listener.settimeout(ACCEPT_POLL_S)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True)
        self._thread.start()

    def _accept_loop(self):
        warned = False
        while not self._closing.is_set():
            try:
                conn, origin = self._listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self._closing.is_set():
                    break
                # Out of descriptors or memory for a moment (or anything else accept() may say): the caller
                # waits in the backlog, the tunnel lives for the rest of the run.
                if not warned:
                    why = os.strerror(exc.errno) if exc.errno in TRANSIENT_ERRNOS else str(exc)
                    log.warning("%s: cannot accept a connection now (%s); retrying every %.1f s",
                                self._name, why, ACCEPT_RETRY_S)
                warned = True
                self._closing.wait(ACCEPT_RETRY_S)
                continue
            warned = False
            with self._lock:
                full = self._serving >= MAX_CONNECTIONS
                if not full:
                    self._serving += 1
            if full:
                conn.close()
                self._warn_full()
                continue
            try:
                threading.Thread(target=self._serve, args=(conn, origin), name=f"{self._name}-conn",
                                 daemon=True).start()
            except RuntimeError:   # no thread to be had: this connection only
                conn.close()
                with self._lock:
                    self._serving -= 1

    def _warn_full(self):
        now = time.monotonic()
        if now - self._warned_full >= WARN_EVERY_S:
            self._warned_full = now
            log.warning("%s: %d connections open: closing new ones until some end", self._name, MAX_CONNECTIONS)

    def _serve(self, conn, origin):
        try:
            self._serve_one(conn, origin)
        finally:
            with self._lock:
                self._serving -= 1

    def _serve_one(self, conn, origin):
        try:
            channel = self._open_channel(self._remote, origin)
        except Exception as exc:  # refused, transport gone: the caller learns at once
            log.debug("%s: cannot open a channel to %s:%d: %s", self._name, self._remote[0], self._remote[1], exc)
            conn.close()
            return
        with self._lock:
            self._open.update((conn, channel))
        try:
            self._pump(conn, channel)
        finally:
            with self._lock:
                self._open.discard(conn)
                self._open.discard(channel)
            for end in (channel, conn):
                try:
                    end.close()
                except Exception:
                    pass

    def _pump(self, conn, channel):
        # The selector, and a channel's fileno() (a pipe), can meet EMFILE too: then only this connection ends.
        try:
            selector = selectors.DefaultSelector()
        except OSError as exc:
            log.warning("%s: cannot serve a connection: %s", self._name, exc)
            return
        with selector:
            try:
                selector.register(conn, selectors.EVENT_READ, channel)
                selector.register(channel, selectors.EVENT_READ, conn)
            except OSError as exc:
                log.warning("%s: cannot serve a connection: %s", self._name, exc)
                return
            while not self._closing.is_set():
                try:
                    for key, _ in selector.select(timeout=ACCEPT_POLL_S):
                        data = key.fileobj.recv(CHUNK_BYTES)
                        if not data:
                            return
                        key.data.sendall(data)
                except (OSError, ValueError):   # an end closed under us (close(), a reset peer): this one is over
                    return

    def close(self) -> None:
        self._closing.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop now, not at its next poll
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            ends = list(self._open)
        for end in ends:
            try:
                end.close()
            except Exception:
                pass
        self._thread.join(timeout=2 * ACCEPT_POLL_S + 1)
