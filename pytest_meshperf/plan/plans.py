"""Which directed pairs a run measures (``--mesh-plan``): the full mesh, a ring, K destinations per node, or
full meshes inside the groups of an inventory label with a few representatives between them.

Every plan is made of cyclic shifts: shift k pairs each node with the node k places after it in the
inventory's order (``groups``: in its group's, or among the representatives).  A shift is a round of
disjoint pairs (every node sends once and receives once), so any plan keeps ``rounds`` contention-free;
a sample of K shifts makes every node send to K others and receive from K others, chosen
deterministically from the seed (recorded in mesh.json with the plan).
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_meshperf.cluster.model import Cluster
from pytest_meshperf.errors import UsageError

PLANS = ("full", "ring", "sample:K[,seed=S]", "groups:LABEL[,across=A]")
DEFAULT_SEED = 1


@dataclass(frozen=True)
class Plan:
    kind: str = "full"            # full | ring | sample | groups
    k: int | None = None          # sample: destinations per node
    seed: int | None = None       # sample: which ones
    label: str | None = None      # groups: the inventory label whose values are the groups (rack, zone)
    across: int = 1               # groups: representatives per group measured against the other groups'

    def __str__(self) -> str:
        if self.kind == "sample":
            return f"sample:{self.k},seed={self.seed}"
        if self.kind == "groups":
            return f"groups:{self.label},across={self.across}"
        return self.kind

    def rounds(self, labels: Sequence[Mapping[str, str]]) -> list[list[tuple[int, int]]]:
        """(source, destination) indexes into the inventory's nodes (``labels``: each node's), round by round."""
        count = len(labels)
        if self.kind != "groups":
            return [[(i, (i + shift) % count) for i in range(count)] for shift in self.shifts(count)]
        by_value: dict[str, list[int]] = {}
        for index, node_labels in enumerate(labels):
            by_value.setdefault(node_labels[self.label], []).append(index)
        groups = list(by_value.values())
        out = []
        for shift in range(1, max((len(g) for g in groups), default=0)):   # inside the groups, together
            out.append([(g[j], g[(j + shift) % len(g)]) for g in groups if shift < len(g) for j in range(len(g))])
        reps = [index for g in groups for index in g[:self.across]]
        group_of = {index: number for number, g in enumerate(groups) for index in g}
        for shift in range(1, len(reps)):   # between the groups' representatives
            across = [(reps[j], reps[(j + shift) % len(reps)]) for j in range(len(reps))
                      if group_of[reps[j]] != group_of[reps[(j + shift) % len(reps)]]]
            if across:
                out.append(across)
        return out

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
    if kind == "groups":
        label, _, across = rest.partition(",across=")
        return Plan("groups", label=label, across=int(across or 1))
    if kind != "sample":
        return Plan(kind)
    count, _, seed = rest.partition(",seed=")
    return Plan("sample", int(count), int(seed) if seed else DEFAULT_SEED)


def planned_links(nodes: list[tuple[str, str, Mapping[str, str]]], plan: Plan) -> list[tuple[str, str]]:
    """(source, destination) of every pair the plan measures among ``nodes``: (name, role, labels) in inventory
    order."""
    return [(nodes[s][0], nodes[d][0]) for pairs in plan.rounds([labels for _, _, labels in nodes])
            for s, d in pairs if nodes[s][1] in ("client", "both") and nodes[d][1] in ("server", "both")]


def parse_plan(text: str | None, cluster: Cluster) -> Plan:
    """``--mesh-plan``'s value, checked against the cluster; UsageError with the fix otherwise."""
    text = (text or "full").strip()
    kind, _, rest = text.partition(":")
    if kind in ("full", "ring") and not rest:
        return Plan(kind)
    if kind == "groups":
        return _groups_plan(text, rest, cluster)
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


def _groups_plan(text: str, rest: str, cluster: Cluster) -> Plan:
    label, _, options = rest.partition(",")
    label, across = label.strip(), 1
    if not label:
        raise UsageError(f"--mesh-plan {text}: name the inventory label whose values are the groups, e.g. "
                         "groups:rack")
    for option in (o.strip() for o in options.split(",") if o.strip()):
        key, _, value = option.partition("=")
        if key != "across" or not value.strip().isdigit() or int(value) < 1:
            raise UsageError(f"--mesh-plan {text}: {option!r} is not across=NUMBER (representatives per group, at "
                             "least 1); write e.g. groups:rack,across=2")
        across = int(value)
    unlabelled = [node.name for node in cluster.nodes if label not in node.labels]
    if unlabelled:
        raise UsageError(f"--mesh-plan {text}: {', '.join(unlabelled[:5])}{' ...' if len(unlabelled) > 5 else ''} "
                         f"{'has' if len(unlabelled) == 1 else 'have'} no label {label!r}; give every node one in "
                         "the inventory, or choose another plan")
    return Plan("groups", label=label, across=across)
