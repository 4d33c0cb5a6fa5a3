"""Which directed pairs a run measures, and in which order.

Pairs are every (sender, receiver) of distinct nodes where the sender may send
(role client or both) and the receiver may receive (server or both).  Their
order comes from the schedule, and every pytest-xdist worker reproduces it:

- ``rounds`` (default): rounds of disjoint pairs, in which every node sends at
  most once and receives at most once: round k is the cyclic shift i -> i+k, so
  a full mesh of N nodes takes N-1 rounds.  Workers that take tests in this
  order run whole rounds side by side; the agents' send/receive leases keep
  measurements apart even when xdist hands tests out in another order.
- ``sequential``: the same order, one measurement at a time in the whole cluster.
"""

from typing import List

from .measurement import Pair

SCHEDULES = ("rounds", "sequential")


def mesh_pairs(cluster) -> List[Pair]:
    nodes = list(cluster.nodes)
    count = len(nodes)
    pairs = []
    for shift in range(1, count):
        for i, src in enumerate(nodes):
            dst = nodes[(i + shift) % count]
            if src.can_send and dst.can_receive:
                pairs.append(Pair(src, dst, round=shift))
    return pairs


def rounds(pairs: List[Pair]) -> List[List[Pair]]:
    """The pairs grouped by round, in order."""
    grouped = {}
    for pair in pairs:
        grouped.setdefault(pair.round, []).append(pair)
    return [grouped[key] for key in sorted(grouped)]
