"""Wire protocol between controller and agent (see docs/agent-api.md).

Frames are a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
A connection starts with a mutual HMAC-SHA256 challenge-response over the
node's key (derived from the run's secret and the node's name), so only a
caller that knows it gets any method, and the caller knows it reached the
agent of its own run and node.  Neither key nor secret crosses the wire; every
frame after the handshake carries a MAC (``Session``).  Used over plain sockets and over SSH channels alike (anything with
``sendall`` and ``recv``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
import time
from typing import Any

PROTOCOL_VERSION = 2
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Before a caller has authenticated it may send nothing bigger than this: a hello is about 200 bytes, and
#: a caller without the secret must not make the agent read (or parse) megabytes.
HANDSHAKE_FRAME_BYTES = 4096
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer broke the protocol, closed the connection or failed to authenticate."""


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock, size, deadline=None):
    chunks = []
    remaining = size
    while remaining:
        if deadline is not None:   # one deadline for the whole exchange, not one per recv (a byte a second)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("timed out")
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(remaining, 1 << 20))
        except socket.timeout:
            raise ProtocolError("timed out")
        if not chunk:
            raise ProtocolError("connection closed by peer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _loads(data: bytes) -> Any:
    """JSON as the protocol allows it: no NaN or Infinity (Python's json takes them, and a number check would let
    them through)."""
    return json.loads(data.decode("utf-8"), parse_constant=_no_constant)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def recv_frame(sock: socket.socket, limit: int = MAX_FRAME_BYTES, deadline: float | None = None) -> dict[str, Any]:
    """One frame of at most ``limit`` bytes, all of it by ``deadline`` (time.monotonic()) if given."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if size > limit:
        raise ProtocolError(f"frame of {size} bytes exceeds the {limit} byte limit")
    try:
        message = _loads(_recv_exact(sock, size, deadline))
    except ValueError as exc:
        raise ProtocolError(f"malformed frame: {exc}")
    if not isinstance(message, dict):
        raise ProtocolError("a frame must hold a JSON object")
    return message


def new_nonce() -> str:
    return os.urandom(32).hex()


def node_key(secret: str, node: str) -> str:
    """The key of ``node``'s agent in this run, from the run's secret: what the agent is given and knows (a node
    learns neither the secret nor another node's key), lowercase hex."""
    return hmac.new(secret.encode("utf-8"), f"meshperf/node/{node}".encode("utf-8"), hashlib.sha256).hexdigest()


def mac(key: str | bytes, role: str, node: str, nonce: str) -> str:
    """HMAC of one side's proof: role is 'client' or 'agent', node the agent's node name (a proof for one node
    is none for another), nonce the other side's challenge."""
    key = key.encode("utf-8") if isinstance(key, str) else key
    return hmac.new(key, f"meshperf/{PROTOCOL_VERSION}/{role}/{node}/{nonce}".encode("utf-8"),
                    hashlib.sha256).hexdigest()


def macs_equal(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a, b)


class Session:
    """The frames after the handshake, each authenticated: its payload is followed by 32 bytes of
    HMAC-SHA256(session key, direction + sequence number + payload), so a frame cannot be forged, replayed,
    reordered or moved to another connection.  The session key comes from the node's key and both nonces."""

    MAC_BYTES = 32

    def __init__(self, key: str | bytes, agent_nonce: str, client_nonce: str, agent_side: bool) -> None:
        key = key.encode("utf-8") if isinstance(key, str) else key
        self._key = hmac.new(key, f"meshperf/{PROTOCOL_VERSION}/session/{agent_nonce}/{client_nonce}".encode(),
                             hashlib.sha256).digest()
        self._out, self._in = (b"a", b"c") if agent_side else (b"c", b"a")
        self._sent = self._received = 0

    def _mac(self, direction, number, payload):
        return hmac.new(self._key, direction + number.to_bytes(8, "big") + payload, hashlib.sha256).digest()

    def send(self, sock: socket.socket, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode("utf-8")
        if len(data) + self.MAC_BYTES > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
        self._sent += 1
        sock.sendall(_HEADER.pack(len(data) + self.MAC_BYTES) + data + self._mac(self._out, self._sent, data))

    def recv(self, sock: socket.socket, deadline: float | None = None) -> dict[str, Any]:
        (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
        if not self.MAC_BYTES <= size <= MAX_FRAME_BYTES:
            raise ProtocolError(f"frame of {size} bytes is not an authenticated frame of at most {MAX_FRAME_BYTES}")
        frame = _recv_exact(sock, size, deadline)
        data, tag = frame[:-self.MAC_BYTES], frame[-self.MAC_BYTES:]
        self._received += 1
        if not hmac.compare_digest(tag, self._mac(self._in, self._received, data)):
            raise ProtocolError("a frame failed authentication")   # checked before a byte of it is parsed
        try:
            message = _loads(data)
        except ValueError as exc:
            raise ProtocolError(f"malformed frame: {exc}")
        if not isinstance(message, dict):
            raise ProtocolError("a frame must hold a JSON object")
        return message


def agent_handshake(sock: socket.socket, key: str | bytes, node: str, deadline: float | None = None) -> Session:
    """Agent side: challenge the caller, check its proof (for this node), prove ourselves, all by ``deadline``
    (time.monotonic()); the caller's frame may be HANDSHAKE_FRAME_BYTES at most. Raises ProtocolError."""
    nonce = new_nonce()
    send_frame(sock, {"meshperf_agent": PROTOCOL_VERSION, "nonce": nonce, "node": node})
    hello = recv_frame(sock, HANDSHAKE_FRAME_BYTES, deadline)
    if hello.get("protocol") != PROTOCOL_VERSION:
        send_frame(sock, {"ok": False, "error": {"code": "protocol_mismatch",
                                                 "message": f"agent speaks protocol {PROTOCOL_VERSION}"}})
        raise ProtocolError(f"caller speaks protocol {hello.get('protocol')!r}")
    if not macs_equal(hello.get("mac"), mac(key, "client", node, nonce)):
        send_frame(sock, {"ok": False, "error": {"code": "auth_failed", "message": "authentication failed"}})
        raise ProtocolError("caller failed authentication")
    client_nonce = hello.get("nonce")
    if not isinstance(client_nonce, str) or not 32 <= len(client_nonce) <= 128:
        raise ProtocolError("the caller's nonce is missing or malformed")
    send_frame(sock, {"ok": True, "mac": mac(key, "agent", node, client_nonce)})
    return Session(key, nonce, client_nonce, agent_side=True)


def client_handshake(sock: socket.socket, key: str | bytes, node: str) -> Session:
    """Caller side: answer the agent's challenge and check the agent's proof for ``node``."""
    challenge = recv_frame(sock, HANDSHAKE_FRAME_BYTES)
    if challenge.get("meshperf_agent") != PROTOCOL_VERSION:
        raise ProtocolError(f"peer is not a meshperf agent of protocol {PROTOCOL_VERSION} (got "
                            f"{challenge.get('meshperf_agent')!r})")
    if challenge.get("node") != node:
        raise ProtocolError(f"reached the agent of node {challenge.get('node')!r}, not of {node!r}")
    agent_nonce = challenge.get("nonce")
    if not isinstance(agent_nonce, str) or not 32 <= len(agent_nonce) <= 128:
        raise ProtocolError("the agent's nonce is missing or malformed")
    nonce = new_nonce()
    send_frame(sock, {"protocol": PROTOCOL_VERSION, "mac": mac(key, "client", node, agent_nonce), "nonce": nonce})
    answer = recv_frame(sock, HANDSHAKE_FRAME_BYTES)
    if not answer.get("ok"):
        error = answer.get("error") or {}
        raise ProtocolError(f"agent refused the connection: {error.get('message', 'unknown reason')}")
    if not macs_equal(answer.get("mac"), mac(key, "agent", node, nonce)):
        raise ProtocolError("agent failed to prove it knows this run's key for the node")
    return Session(key, agent_nonce, nonce, agent_side=False)
