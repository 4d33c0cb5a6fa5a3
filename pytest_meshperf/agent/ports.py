"""Port allocation for tool servers: never two live servers on one port."""
from __future__ import annotations

import os
import socket
import threading


def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def pid_is_listening(pid: int, port: int) -> bool:
    """True when process ``pid`` itself holds a listening TCP socket on ``port``.

    Matching the socket's inode to the process matters: several local nodes, or
    two runs on one machine, share a network namespace and may listen on the same
    port number at other addresses, or race for it.
    """
    inodes = _socket_inodes(pid)
    if not inodes:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port \
                            and fields[9] in inodes:
                        return True
        except OSError:
            continue
    return False


def _can_bind(bind, port):
    family = socket.AF_INET6 if bind and ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # iperf3 and netserver set SO_REUSEADDR too: a port in TIME_WAIT is usable, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind or "", port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


class PortAllocator:
    """Hands out ports from ``[low, high]`` round-robin, so a just-freed port rests before reuse."""

    def __init__(self, low: int, high: int) -> None:
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"bad port range {low}-{high}")
        self.low, self.high = low, high
        self._next = low
        self._held = set()
        self._lock = threading.Lock()

    def allocate(self, bind: str | None = None) -> int | None:
        with self._lock:
            for _ in range(self.high - self.low + 1):
                port = self._next
                self._next = self.low if port >= self.high else port + 1
                if port not in self._held and _can_bind(bind, port):
                    self._held.add(port)
                    return port
        return None

    def release(self, port: int) -> None:
        with self._lock:
            self._held.discard(port)

    @property
    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._held)
