"""The SSH tunnel's forwarder survives running out of file descriptors: a connection that arrives while the
process has none left waits in the backlog and is served once descriptors are free (before, the accept loop
ended and the node's agent stayed unreachable for the rest of the run).

The tunnel runs in a child process with a low RLIMIT_NOFILE, over real loopback sockets: the "SSH channel" is a
TCP connection to an echo server in that child."""

import json
import subprocess
import sys

CHILD = r"""
import errno, json, logging, os, resource, socket, sys, threading
from pytest_meshperf.transport.tunnel import Tunnel

records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("meshperf.ssh").addHandler(Keep())

echo = socket.socket(); echo.bind(("127.0.0.1", 0)); echo.listen(8); echo.settimeout(30)
def serve_echo():
    for _ in range(2):  # bounded: the two connections of this test
        conn, _ = echo.accept()
        threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")], daemon=True).start()
threading.Thread(target=serve_echo, daemon=True).start()

tunnel = Tunnel(lambda dest, origin: socket.create_connection(dest, timeout=10), "127.0.0.1", echo.getsockname()[1])

def talk(sock, text):
    sock.sendall(text.encode()); sock.settimeout(10)
    return sock.recv(4096).decode()

first = socket.create_connection(("127.0.0.1", tunnel.port), timeout=10)
out = {"before": talk(first, "one")}

resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
late = socket.socket()  # its descriptor exists before the process runs out
hoard = []
try:
    while len(hoard) < 1000:  # bounded: the limit is 256
        hoard.append(os.open(os.devnull, os.O_RDONLY))
except OSError as exc:
    out["exhausted"] = errno.errorcode[exc.errno]
late.connect(("127.0.0.1", tunnel.port))  # completes in the kernel's backlog; the tunnel cannot accept it
threading.Event().wait(0.5)
out["warned"] = [r for r in records if "cannot accept" in r]
for fd in hoard:
    os.close(fd)
out["after"] = talk(late, "two")
out["still"] = talk(first, "three")
tunnel.close()
print(json.dumps(out))
"""


def test_the_tunnel_accepts_again_once_descriptors_are_free():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["before"] == "one" and out["exhausted"] == "EMFILE"
    assert len(out["warned"]) == 1 and "Too many open files" in out["warned"][0], out["warned"]
    assert out["after"] == "two" and out["still"] == "three"


def test_a_flood_of_connections_to_the_tunnel_is_capped_and_it_serves_again_after(monkeypatch):
    import socket
    import threading
    import time

    from pytest_meshperf.transport import tunnel as tunnel_module

    monkeypatch.setattr(tunnel_module, "MAX_CONNECTIONS", 8)
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(64)
    served = []

    def serve_echo():
        while True:   # bounded: the listener is closed at the end
            try:
                conn, _ = echo.accept()
            except OSError:
                return
            served.append(conn)
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")],
                             daemon=True).start()
    threading.Thread(target=serve_echo, daemon=True).start()
    tunnel = tunnel_module.Tunnel(lambda dest, origin: socket.create_connection(dest, timeout=10), "127.0.0.1",
                                  echo.getsockname()[1])
    try:
        flood = [socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) for _ in range(20)]

        def alive(sock):
            try:
                sock.sendall(b"x")
                return sock.recv(1) == b"x"
            except OSError:   # closed by the tunnel: reset, or a broken pipe
                return False
        answered = [alive(sock) for sock in flood]
        assert answered.count(True) == 8 and answered[:8] == [True] * 8   # the first eight served, the rest closed
        for sock in flood:
            sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:   # bounded: the served ones end as their ends close
            fresh = socket.create_connection(("127.0.0.1", tunnel.port), timeout=10)
            if alive(fresh):
                fresh.close()
                break
            fresh.close()
            time.sleep(0.1)
        else:
            raise AssertionError("the tunnel did not serve again once the flood ended")
    finally:
        tunnel.close()
        echo.close()
