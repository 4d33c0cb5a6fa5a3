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
gets differs.  Tests that are not pair tests go in collection order.
"""

import re
from typing import Iterable, Optional

_BRACKET = re.compile(r"\[(.*)\]$")


def source_of(nodeid: str, names: Iterable[str]) -> Optional[str]:
    """The source node of a pair test's id (``…::test_tcp[node1->node2]``, other params around it), or None."""
    match = _BRACKET.search(nodeid)
    if not match or "->" not in match.group(1):
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
            self._owner = {}         # worker -> the source it takes pairs from

        def _send_tests(self, node, num):
            if self._sources is None:
                self._sources = [source_of(nodeid, names) for nodeid in self.collection]
            chosen = self._pick(node, num)
            if chosen:
                taken = set(chosen)
                self.pending[:] = [i for i in self.pending if i not in taken]
                self.node2pending[node].extend(chosen)
                node.send_runtest_some(chosen)

        def _pick(self, node, num):
            chosen = []
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
