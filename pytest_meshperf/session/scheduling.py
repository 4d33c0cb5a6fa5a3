"""How pytest-xdist hands pair tests to its workers: a source node's pairs at a time.

xdist's default (``load``) sends consecutive tests in batches, so one worker
would get the first pairs of a round and another the next ones: they share
senders, and the leases then make them wait for each other.  Here a worker
takes one source node's pairs, in collection order (which is round order),
until that source has none left, then a source no other worker has; so workers
side by side send from different nodes, and in each round to different
receivers: with as many workers as nodes a full mesh takes about N-1 durations.
It is xdist's ``load`` scheduler in everything else (batch sizes, a crashed
worker's tests going back to the queue); only which pending tests a worker
gets differs.  Tests that are not mesh tests go in collection order.  Check
items (checks.py) wait for the measurements of their test: none is handed out
while a measurement is still to be handed out, so a check never sits in a
worker's queue in front of a measurement it waits for.

Which tests are pair tests, and their source nodes, come from collection
(``mesh_items.MeshItems``), never from ids.  A run without mesh tests is
scheduled by xdist's own ``LoadScheduling`` code, untouched.  With mesh tests,
each pick costs O(batch + sources): queues per source in collection order, and
``pending`` kept as a set-like list with O(1) removal, so a run of many tests
is scheduled in time linear in their number.
"""
from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Callable

from pytest_meshperf.session.mesh_items import MeshItems

if TYPE_CHECKING:
    import pytest


def make_scheduler(config: pytest.Config, log: Any, mesh_items: Callable[[], MeshItems | None]) -> Any:
    """``mesh_items()``: the run's MeshItems, known once the first worker's collection arrived."""
    from xdist.scheduler import LoadScheduling  # here: xdist is optional; this runs only with -n

    class SourceScheduling(LoadScheduling):
        def __init__(self, config, log=None):
            super().__init__(config, log)
            self._queues: dict[str | None, collections.deque] | None = None  # source (None: plain) -> items
            self._held: collections.deque = collections.deque()      # check items, in collection order
            self._where: dict[int, int] = {}   # item index -> its position in self.pending
            self._owner: dict[object, str] = {}  # worker -> the source it takes pairs from
            self._mesh = None

        def _send_tests(self, node, num):
            if self._mesh is None:
                self._mesh = mesh_items()
            if not self._mesh:
                return super()._send_tests(node, num)   # no mesh test in this run: xdist's own load scheduling
            if self._queues is None or len(self._where) != len(self.pending):
                self._index()   # first pick, or xdist put tests back (a crashed worker's): rebuild in O(n)
            chosen = self._pick(node, num)
            if chosen:
                for index in chosen:
                    self._take(index)
                self.node2pending[node].extend(chosen)
                node.send_runtest_some(chosen)

        # -- the index over self.pending ---------------------------------------------------------------------
        def _index(self):
            sources, checks = self._mesh.sources, self._mesh.checks
            self._queues, self._held = {None: collections.deque()}, collections.deque()
            for index in sorted(self.pending):
                nodeid = self.collection[index]
                if nodeid in checks:
                    self._held.append(index)
                else:
                    self._queues.setdefault(sources.get(nodeid), collections.deque()).append(index)
            self._where = {index: position for position, index in enumerate(self.pending)}

        def _take(self, index):
            """Remove ``index`` from self.pending in O(1): the last entry takes its place (order is ours)."""
            position = self._where.pop(index)
            last = self.pending.pop()
            if last != index:
                self.pending[position] = last
                self._where[last] = position

        # -- what a worker gets --------------------------------------------------------------------------------
        def _pick(self, node, num) -> list[int]:
            measurements_left = any(self._queues.values())
            if not measurements_left:
                return [self._held.popleft() for _ in range(min(num, len(self._held)))]
            chosen = self._pick_measurements(node, num)
            # Checks only once every measurement is handed out.  The worker that takes the last measurements
            # gets checks behind them at once: a worker runs an item only when it has the next one (or is shut
            # down), so a last measurement alone in its queue would wait for the checks that wait for it.
            if not any(self._queues.values()):
                while self._held and len(chosen) < max(num, 2):
                    chosen.append(self._held.popleft())
            return chosen

        def _head(self, allowed) -> str | None:
            """The queue (a source, or None for plain tests) whose next item comes first in collection order."""
            best, best_index = False, None
            for source, queue in self._queues.items():
                if queue and allowed(source) and (best_index is None or queue[0] < best_index):
                    best, best_index = source, queue[0]
            return best

        def _pick_measurements(self, node, num) -> list[int]:
            chosen: list[int] = []
            source = self._owner.get(node)
            while len(chosen) < num:
                if source is not None:
                    queue = self._queues.get(source)
                    while queue and len(chosen) < num:
                        chosen.append(queue.popleft())
                    if len(chosen) >= num:
                        break
                others = {s for n, s in self._owner.items() if n is not node}
                fresh = self._head(lambda s: s is None or s not in others)
                if fresh is False:   # every source left is another worker's: help out (the leases keep it apart)
                    while len(chosen) < num:
                        busiest = self._head(lambda s: True)
                        if busiest is False:
                            break
                        chosen.append(self._queues[busiest].popleft())
                    break
                if fresh is None:
                    chosen.append(self._queues[None].popleft())
                    continue
                source = self._owner[node] = fresh
            return chosen

        def remove_node(self, node):
            self._owner.pop(node, None)
            return super().remove_node(node)

    return SourceScheduling(config, log)
