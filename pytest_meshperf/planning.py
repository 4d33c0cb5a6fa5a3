"""Which directed pairs a run measures, in which order.

Pairs are every (sender, receiver) of distinct nodes where the sender may send
(role client or both) and the receiver may receive (server or both), in a stable
order that every pytest-xdist worker reproduces exactly.  Schedules that order
pairs into contention-free rounds attach here.
"""

from typing import List

from .measurement import Pair


def mesh_pairs(cluster) -> List[Pair]:
    """All ordered pairs, source-major in inventory order: node1->node2, node1->node3, node2->node1, ..."""
    return [Pair(src, dst) for src in cluster.nodes if src.can_send
            for dst in cluster.nodes if dst.can_receive and dst.name != src.name]
