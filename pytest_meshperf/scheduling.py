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
gets differs.  Tests that are not pair tests go in collection order.  Check items (checks.py)
wait for the measurements of their test: none is handed out while a
measurement is still to be handed out, so a check never sits in a worker's
queue in front of a measurement it waits for.
"""

import re
from typing import Iterable, Optional

from .checks import is_check_id

_BRACKET = re.compile(r"\[(.*)\]$")


def source_of(nodeid: str, names: Iterable[str]) -> Optional[str]:
    """The source node of a pair test's id (``…::test_tcp[node1->node2]``, other params around it), or None."""
    match = _BRACKET.search(nodeid)
    if not match or "->" not in match.group(1) or is_check_id(nodeid):
        return None
    names = set(names)
    before = match.group(1).split("->", 1)[0]
    # The source is the longest tail of the text before "->" that starts the id or follows a "-"
    # (pytest joins parameter ids with "-"), and is a node's name.
    for start in range(len(before)):
        if (start == 0 or before[start - 1] == "-") and before[start:] in names:
            return before[start:]
    return None


def make_scheduler(config, log, names):
    from xdist.scheduler import LoadScheduling

    class SourceScheduling(LoadScheduling):
        def __init__(self, config, log=None):
            super().__init__(config, log)
            self._sources = None     # item index -> its source node (None: not a pair test)
            self._checks = None      # item index -> a check item (held back while measurements are pending)
            self._owner = {}         # worker -> the source it takes pairs from

        def _send_tests(self, node, num):
            if self._sources is None:
                self._sources = [source_of(nodeid, names) for nodeid in self.collection]
                self._checks = [is_check_id(nodeid) for nodeid in self.collection]
            chosen = self._pick(node, num)
            if chosen:
                taken = set(chosen)
                self.pending[:] = [i for i in self.pending if i not in taken]
                self.node2pending[node].extend(chosen)
                node.send_runtest_some(chosen)

        def _pick(self, node, num):
            chosen = []
            held = [i for i in self.pending if self._checks[i]]
            if len(held) == len(self.pending):
                return self._pick_from_pending(node, num, chosen)
            # Checks only once every measurement is handed out.  The worker that takes the last
            # measurements gets checks behind them at once: a worker runs an item only when it has the
            # next one (or is shut down), so a last measurement alone in its queue would wait for the
            # checks that wait for it.
            self.pending[:] = [i for i in self.pending if not self._checks[i]]
            try:
                chosen = self._pick_from_pending(node, num, chosen)
                if not [i for i in self.pending if i not in chosen]:
                    chosen += held[:max(num, 2) - len(chosen)]
                return chosen
            finally:
                self.pending.extend(held)

        def _pick_from_pending(self, node, num, chosen):
            source = self._owner.get(node)
            while len(chosen) < num:
                if source is not None:
                    chosen += [i for i in self.pending if self._sources[i] == source and i not in chosen][
                        :num - len(chosen)]
                    if len(chosen) >= num:
                        break
                others = {s for n, s in self._owner.items() if n is not node}
                left = [i for i in self.pending if i not in chosen]
                fresh = next((i for i in left if self._sources[i] is None or self._sources[i] not in others), None)
                if fresh is None:  # every source left is another worker's: help out (the leases keep it apart)
                    chosen += left[:num - len(chosen)]
                    break
                if self._sources[fresh] is None:
                    chosen.append(fresh)
                    continue
                source = self._owner[node] = self._sources[fresh]
            return chosen

        def remove_node(self, node):
            self._owner.pop(node, None)
            return super().remove_node(node)

    return SourceScheduling(config, log)
