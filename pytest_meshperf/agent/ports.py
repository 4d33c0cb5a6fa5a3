"""Port allocation for tool servers: never two live servers on one port."""

import socket
import threading


def _hex_address(bind):
    """The /proc/net/tcp spelling of an IPv4 address (little-endian hex), or None."""
    try:
        return socket.inet_aton(bind)[::-1].hex().upper() if bind and ":" not in bind else None
    except OSError:
        return None


def port_is_listening(port, bind=None):
    """True when a socket in this network namespace listens on TCP ``port``.

    With ``bind`` (IPv4), only a listener on that address or the wildcard counts:
    several local nodes share one namespace and may use the same port number.
    """
    wanted = _hex_address(bind)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) < 4 or fields[3] != "0A":
                        continue
                    address, _, hexport = fields[1].rpartition(":")
                    if int(hexport, 16) != port:
                        continue
                    if wanted is None or address in (wanted, "00000000") or table.endswith("6"):
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

    def __init__(self, low, high):
        if not 1 <= low <= high <= 65535:
            raise ValueError("bad port range %d-%d" % (low, high))
        self.low, self.high = low, high
        self._next = low
        self._held = set()
        self._lock = threading.Lock()

    def allocate(self, bind=None):
        with self._lock:
            for _ in range(self.high - self.low + 1):
                port = self._next
                self._next = self.low if port >= self.high else port + 1
                if port not in self._held and _can_bind(bind, port):
                    self._held.add(port)
                    return port
        return None

    def release(self, port):
        with self._lock:
            self._held.discard(port)

    @property
    def held(self):
        with self._lock:
            return sorted(self._held)
