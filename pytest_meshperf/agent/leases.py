"""Per-node exclusivity: who may send from, or receive on, this node right now.

A measurement holds a ``send`` lease on its source's agent and a ``recv`` lease
on its destination's agent, so parallel pytest-xdist workers never overlap on a
node whatever order they run tests in.  ``cluster`` (on one agent) serialises a
whole run.  A lease is bound to the connection that took it and ends with it: a
worker that dies drops its connection, and its leases are free at once; a TTL
bounds a holder that hangs.

A lease may also reserve cores of the node (``cores``): the free ones, up to the
number asked for, so that pinned tool processes of different measurements do
not share a core while cores remain.  They are free again with the lease.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

ROLES = ("send", "recv", "cluster")


class Leases:
    def __init__(self, capacity: dict[str, int] | None = None, cores: Iterable[int] = ()) -> None:
        self.capacity = {"send": 1, "recv": 1, "cluster": 1}
        self.capacity.update(capacity or {})
        self.cores = list(cores)
        self._held = {}          # lease id -> (role, holder, owner, expires)
        self._cores = {}         # lease id -> the cores it reserved
        self._lock = threading.Lock()
        self._counter = 0

    def _expire(self, now):
        for ident in [i for i, (_, _, _, expires) in self._held.items() if expires < now]:
            self._drop(ident)

    def _drop(self, ident):
        del self._held[ident]
        self._cores.pop(ident, None)

    def acquire(self, role: str, holder: str, owner: object, ttl_s: float,
                cores: int = 0) -> tuple[str | None, list[int]]:
        """(lease id, reserved cores), or (None, []) when the role is at capacity. ``owner`` is the connection."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if sum(1 for r, _, _, _ in self._held.values() if r == role) >= self.capacity[role]:
                return None, []
            self._counter += 1
            ident = f"l{self._counter}"
            self._held[ident] = (role, holder, owner, now + ttl_s)
            taken = {core for reserved in self._cores.values() for core in reserved}
            self._cores[ident] = [core for core in self.cores if core not in taken][:max(0, cores)]
            return ident, list(self._cores[ident])

    def release(self, ident: str, owner: object = None) -> bool:
        with self._lock:
            entry = self._held.get(ident)
            if entry is not None and (owner is None or entry[2] is owner):
                self._drop(ident)
                return True
            return False

    def renew(self, ident: str, ttl_s: float, owner: object = None) -> bool:
        """Extend a held lease to ``ttl_s`` from now (the rounds' pipeline keeps a node's lease from one round to
        the next instead of releasing and taking it again: another worker could take it in between)."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            entry = self._held.get(ident)
            if entry is None or (owner is not None and entry[2] is not owner):
                return False
            self._held[ident] = entry[:3] + (now + ttl_s,)
            return True

    def release_owner(self, owner: object) -> None:
        """Everything a connection held: called when it closes."""
        with self._lock:
            for ident in [i for i, (_, _, o, _) in self._held.items() if o is owner]:
                self._drop(ident)

    def holders(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            return [{"id": i, "role": r, "holder": h, "expires_in_s": round(e - now, 3), "cores": self._cores.get(i, [])}
                    for i, (r, h, _, e) in sorted(self._held.items())]
