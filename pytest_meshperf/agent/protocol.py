"""Wire protocol between controller and agent (see docs/agent-api.md).

Frames are a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
A connection starts with a mutual HMAC-SHA256 challenge-response over the
per-run secret, so only a caller that knows the secret gets any method, and the
caller knows it reached the agent of its own run.  The secret never crosses the
wire.  Used over plain sockets and over SSH channels alike (anything with
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

PROTOCOL_VERSION = 1
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


def recv_frame(sock: socket.socket, limit: int = MAX_FRAME_BYTES, deadline: float | None = None) -> dict[str, Any]:
    """One frame of at most ``limit`` bytes, all of it by ``deadline`` (time.monotonic()) if given."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if size > limit:
        raise ProtocolError(f"frame of {size} bytes exceeds the {limit} byte limit")
    try:
        message = json.loads(_recv_exact(sock, size, deadline).decode("utf-8"))
    except ValueError as exc:
        raise ProtocolError(f"malformed frame: {exc}")
    if not isinstance(message, dict):
        raise ProtocolError("a frame must hold a JSON object")
    return message


def new_nonce() -> str:
    return os.urandom(32).hex()


def mac(secret: str | bytes, role: str, nonce: str) -> str:
    """HMAC of one side's proof: role is 'client' or 'agent', nonce the other side's challenge."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, (f"meshperf/{PROTOCOL_VERSION}/{role}/{nonce}").encode("ascii"), hashlib.sha256).hexdigest()


def macs_equal(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a, b)


def agent_handshake(sock: socket.socket, secret: str | bytes, deadline: float | None = None) -> None:
    """Agent side: challenge the caller, check its proof, prove ourselves, all by ``deadline``
    (time.monotonic()); the caller's frame may be HANDSHAKE_FRAME_BYTES at most. Raises ProtocolError."""
    nonce = new_nonce()
    send_frame(sock, {"meshperf_agent": PROTOCOL_VERSION, "nonce": nonce})
    hello = recv_frame(sock, HANDSHAKE_FRAME_BYTES, deadline)
    if hello.get("protocol") != PROTOCOL_VERSION:
        send_frame(sock, {"ok": False, "error": {"code": "protocol_mismatch",
                                                 "message": f"agent speaks protocol {PROTOCOL_VERSION}"}})
        raise ProtocolError(f"caller speaks protocol {hello.get('protocol')!r}")
    if not macs_equal(hello.get("mac"), mac(secret, "client", nonce)):
        send_frame(sock, {"ok": False, "error": {"code": "auth_failed", "message": "authentication failed"}})
        raise ProtocolError("caller failed authentication")
    client_nonce = str(hello.get("nonce", ""))
    send_frame(sock, {"ok": True, "mac": mac(secret, "agent", client_nonce)})


def client_handshake(sock: socket.socket, secret: str | bytes) -> None:
    """Caller side: answer the agent's challenge and check the agent's proof."""
    challenge = recv_frame(sock)
    if challenge.get("meshperf_agent") != PROTOCOL_VERSION:
        raise ProtocolError(f"peer is not a meshperf agent of protocol {PROTOCOL_VERSION} (got "
                            f"{challenge.get('meshperf_agent')!r})")
    nonce = new_nonce()
    send_frame(sock, {"protocol": PROTOCOL_VERSION, "mac": mac(secret, "client", challenge.get("nonce", "")),
                      "nonce": nonce})
    answer = recv_frame(sock)
    if not answer.get("ok"):
        error = answer.get("error") or {}
        raise ProtocolError(f"agent refused the connection: {error.get('message', 'unknown reason')}")
    if not macs_equal(answer.get("mac"), mac(secret, "agent", nonce)):
        raise ProtocolError("agent failed to prove it knows the run secret")
