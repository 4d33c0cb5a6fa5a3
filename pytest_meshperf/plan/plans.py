"""Which directed pairs a run measures (``--mesh-plan``): the full mesh, a ring, or K destinations per node.

Every plan is a set of cyclic shifts of the inventory's order: shift k pairs each node with the node k
places after it.  A shift is a round of disjoint pairs (every node sends once and receives once), so any
plan keeps ``rounds`` contention-free, and a sample of K shifts makes every node send to K others and
receive from K others, chosen deterministically from the seed (recorded in mesh.json with the plan).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from pytest_meshperf.cluster.model import Cluster
from pytest_meshperf.errors import UsageError

PLANS = ("full", "ring", "sample:K[,seed=S]")
DEFAULT_SEED = 1


@dataclass(frozen=True)
class Plan:
    kind: str = "full"            # full | ring | sample
    k: int | None = None          # sample: destinations per node
    seed: int | None = None       # sample: which ones

    def __str__(self) -> str:
        return f"sample:{self.k},seed={self.seed}" if self.kind == "sample" else self.kind

    def shifts(self, count: int) -> list[int]:
        """The cyclic shifts measured among ``count`` nodes, in order."""
        if count < 2:
            return []
        if self.kind == "ring":
            return [1]
        if self.kind == "sample":
            return sorted(random.Random(self.seed).sample(range(1, count), min(self.k, count - 1)))
        return list(range(1, count))


def recorded_plan(text: str | None) -> Plan:
    """The plan as mesh.json records it (``str(plan)``); full when absent (results from before plans)."""
    kind, _, rest = (text or "full").partition(":")
    if kind != "sample":
        return Plan(kind)
    count, _, seed = rest.partition(",seed=")
    return Plan("sample", int(count), int(seed) if seed else DEFAULT_SEED)


def planned_links(nodes: list[tuple[str, str]], plan: Plan) -> list[tuple[str, str]]:
    """(source, destination) of every pair the plan measures among ``nodes``: (name, role) in inventory order."""
    count = len(nodes)
    return [(src, nodes[(i + shift) % count][0]) for shift in plan.shifts(count)
            for i, (src, role) in enumerate(nodes)
            if role in ("client", "both") and nodes[(i + shift) % count][1] in ("server", "both")]


def parse_plan(text: str | None, cluster: Cluster) -> Plan:
    """``--mesh-plan``'s value, checked against the cluster; UsageError with the fix otherwise."""
    text = (text or "full").strip()
    kind, _, rest = text.partition(":")
    if kind in ("full", "ring") and not rest:
        return Plan(kind)
    if kind != "sample":
        raise UsageError(f"--mesh-plan {text!r}: choose one of {', '.join(PLANS)}")
    count, _, options = rest.partition(",")
    seed = DEFAULT_SEED
    for option in (o.strip() for o in options.split(",") if o.strip()):
        key, _, value = option.partition("=")
        if key != "seed" or not value.strip().lstrip("-").isdigit():
            raise UsageError(f"--mesh-plan {text}: {option!r} is not seed=NUMBER; write e.g. sample:4,seed=7")
        seed = int(value)
    if not count.strip().isdigit() or int(count) < 1:
        raise UsageError(f"--mesh-plan {text}: give how many destinations each node sends to, e.g. sample:4")
    k, nodes = int(count), len(cluster.nodes)
    if k >= nodes:
        raise UsageError(f"--mesh-plan {text}: {nodes} nodes have at most {nodes - 1} destinations each; give a "
                         f"smaller K or --mesh-plan full")
    return Plan("sample", k, seed)
