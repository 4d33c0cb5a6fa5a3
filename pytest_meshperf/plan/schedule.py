"""Which directed pairs a run measures, and in which order.

Pairs are every (sender, receiver) of distinct nodes where the sender may send
(role client or both) and the receiver may receive (server or both).  Their
order comes from the schedule, and every pytest-xdist worker reproduces it:

- ``rounds`` (default): rounds of disjoint pairs, in which every node sends at
  most once and receives at most once: round k is the cyclic shift i -> i+k, so
  a full mesh of N nodes takes N-1 rounds.  Whole rounds are then packed
  together (first fit) as far as every node's ``max_send``/``max_recv`` allow
  (default once each: rounds on disjoint nodes share one; a node at 2 and 2
  sends and receives twice per round).  Workers that take tests in this
  order run whole rounds side by side; the agents' send/receive leases keep
  measurements apart even when xdist hands tests out in another order.
- ``sequential``: the same order, one measurement at a time in the whole cluster.
- ``burst``: every pair of a test at once, with a synchronized start (burst.py):
  the whole fabric loaded, each pair test asserting on its share.
- ``incast:NODE``: every other node sends to NODE at once (burst.py as well).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from pytest_meshperf.cluster.model import Cluster
from pytest_meshperf.errors import UsageError
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.plan.plans import Plan

SCHEDULES = ("rounds", "sequential", "burst", "incast:NODE")
GROUPED = ("burst", "incast")   # schedules whose pairs run together, started at one moment


@dataclass(frozen=True)
class Schedule:
    kind: str                      # rounds | sequential | burst | incast
    target: str | None = None   # incast: the receiving node

    @property
    def grouped(self) -> bool:
        return self.kind in GROUPED

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def parse_schedule(text: str, cluster: Cluster) -> Schedule:
    """``--mesh-schedule``'s value, checked against the cluster; UsageError with the fix otherwise."""
    text = (text or "rounds").strip()
    kind, sep, target = text.partition(":")
    if kind in ("rounds", "sequential", "burst") and not sep:
        return Schedule(kind)
    names = [node.name for node in cluster.nodes]
    if kind == "incast":
        if not target:
            raise UsageError(f"--mesh-schedule incast: name the receiving node, e.g. incast:{names[0]}")
        node = next((n for n in cluster.nodes if n.name == target), None)
        if node is None:
            raise UsageError(f"--mesh-schedule {text}: no node {target!r} in the cluster; its nodes: "
                             f"{', '.join(names)}")
        if not node.can_receive:
            raise UsageError(f"--mesh-schedule {text}: node {target!r} has role {node.role} and does not receive; "
                             "choose a node with role server or both")
        return Schedule("incast", target)
    raise UsageError(f"--mesh-schedule {text!r}: choose one of {', '.join(SCHEDULES)}")


def mesh_pairs(cluster: Cluster, plan: Plan | None = None) -> list[Pair]:
    """The plan's pairs (default: the full mesh), round by round (plans.Plan.rounds)."""
    nodes = list(cluster.nodes)
    pairs = []
    for number, indexes in enumerate((plan or Plan()).rounds([node.labels for node in nodes]), start=1):
        for s, d in indexes:
            if nodes[s].can_send and nodes[d].can_receive:
                pairs.append(Pair(nodes[s], nodes[d], round=number))
    return pairs


def plan_pairs(cluster: Cluster, schedule: Schedule, plan: Plan | None = None) -> list[Pair]:
    """The pairs the schedule measures of the plan's, in its order (incast: only the pairs into its target)."""
    pairs = mesh_pairs(cluster, plan)
    if schedule.kind == "incast":
        pairs = [pair for pair in pairs if pair.dst.name == schedule.target]
    if schedule.kind == "rounds":
        pairs = pack_rounds(pairs)
    return pairs


def pack_rounds(pairs: list[Pair]) -> list[Pair]:
    """Whole rounds packed together (first fit, in order) while every node of a packed round sends at most its
    ``max_send`` times and receives at most its ``max_recv`` times (unset: once, as its agent's leases allow);
    renumbered from 1.  Rounds on disjoint nodes (a plan's groups, clients and servers apart) share one; with
    every node at ``max_send: 2, max_recv: 2`` a full mesh of N nodes takes ceil((N-1)/2) rounds."""
    packed: list[tuple[list[Pair], Counter[str], Counter[str]]] = []
    for group in rounds(pairs):
        more_sends = Counter(pair.src.name for pair in group)
        more_recvs = Counter(pair.dst.name for pair in group)
        limits = {pair.src.name: pair.src for pair in group} | {pair.dst.name: pair.dst for pair in group}
        for members, sends, recvs in packed:
            if all(sends[n] + c <= (limits[n].max_send or 1) for n, c in more_sends.items()) and all(
                    recvs[n] + c <= (limits[n].max_recv or 1) for n, c in more_recvs.items()):
                break
        else:
            members, sends, recvs = [], Counter(), Counter()
            packed.append((members, sends, recvs))
        members.extend(group)
        sends.update(more_sends)
        recvs.update(more_recvs)
    return [replace(pair, round=number) for number, (members, _, _) in enumerate(packed, start=1)
            for pair in members]


def rounds(pairs: list[Pair]) -> list[list[Pair]]:
    """The pairs grouped by round, in order."""
    grouped = {}
    for pair in pairs:
        grouped.setdefault(pair.round, []).append(pair)
    return [grouped[key] for key in sorted(grouped)]
