"""Per-node exclusivity: who may send from, or receive on, this node right now.

A measurement holds a ``send`` lease on its source's agent and a ``recv`` lease
on its destination's agent, so parallel pytest-xdist workers never overlap on a
node whatever order they run tests in.  ``cluster`` (on one agent) serialises a
whole run.  A lease is bound to the connection that took it and ends with it: a
worker that dies drops its connection, and its leases are free at once; a TTL
bounds a holder that hangs.
"""

import threading
import time

ROLES = ("send", "recv", "cluster")


class Leases:
    def __init__(self, capacity=None):
        # role -> how many holders at once (max_send / max_recv in the inventory)
        self.capacity = {"send": 1, "recv": 1, "cluster": 1}
        self.capacity.update(capacity or {})
        self._held = {}          # lease id -> (role, holder, owner, expires)
        self._lock = threading.Lock()
        self._counter = 0

    def _expire(self, now):
        for ident in [i for i, (_, _, _, expires) in self._held.items() if expires < now]:
            del self._held[ident]

    def acquire(self, role, holder, owner, ttl_s):
        """A lease id, or None when the role is at capacity. ``owner`` is the connection."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if sum(1 for r, _, _, _ in self._held.values() if r == role) >= self.capacity[role]:
                return None
            self._counter += 1
            ident = "l%d" % self._counter
            self._held[ident] = (role, holder, owner, now + ttl_s)
            return ident

    def release(self, ident, owner=None):
        with self._lock:
            entry = self._held.get(ident)
            if entry is not None and (owner is None or entry[2] is owner):
                del self._held[ident]
                return True
            return False

    def release_owner(self, owner):
        """Everything a connection held: called when it closes."""
        with self._lock:
            for ident in [i for i, (_, _, o, _) in self._held.items() if o is owner]:
                del self._held[ident]

    def holders(self):
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            return [{"id": i, "role": r, "holder": h, "expires_in_s": round(e - now, 3)}
                    for i, (r, h, _, e) in sorted(self._held.items())]
