"""Re-testing suspects (``--mesh-retest N``): which measurements each round makes, and what each link ends as.

After the mesh, every low link of a failed finding is measured again (``repeat``), and its suspected end
against a fresh partner (``probe``): a node that no failed finding implicates, rotated per round and link:

- ``sender A``: A to another destination; ``receiver B``: another source to B; ``node N``: N's side of it;
- ``link A->B``: A to another destination and another source to B, both expected fine;
- ``group``: repeats only (a partner outside the group would be another cross link).

A link ends ``confirmed`` (every repeat low, every probe as the finding expects), ``flaky`` (no repeat
low: it passed on re-test) or ``inconclusive`` (anything else: mixed repeats, a probe that disagrees, a
re-test that could not be made).  Asymmetry findings are not re-tested.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_meshperf.plan.links import link_id, split_link
from pytest_meshperf.verdicts.diagnosis import Finding

RETESTED_KINDS = ("sender", "receiver", "node", "link", "group")
MAX_PER_ROUND = 64   # measurements per re-test round, at most: the rest is inconclusive, not measured
CONFIRMED, FLAKY, INCONCLUSIVE = "confirmed", "flaky", "inconclusive"


@dataclass(frozen=True)
class Probe:
    """One re-test measurement: ``src->dst`` for the link ``of`` of ``finding`` (an index into the findings)."""
    test: str
    src: str
    dst: str
    of: str              # the low link it re-tests
    finding: int
    role: str            # "repeat": the link itself; "probe": a suspected end against a fresh partner
    expect_low: bool     # what the finding predicts


@dataclass
class LinkRetest:
    test: str
    link: str
    finding: int
    results: list[dict[str, Any]] = field(default_factory=list)   # per probe: role, link, round, low, status ...

    def outcome(self) -> str:
        repeats = [r for r in self.results if r["role"] == "repeat"]
        probes = [r for r in self.results if r["role"] == "probe"]
        if not repeats or any(r["low"] is None for r in repeats):
            return INCONCLUSIVE
        if not any(r["low"] for r in repeats):
            return FLAKY
        if all(r["low"] for r in repeats) and all(r["low"] is r["expect_low"] for r in probes):
            return CONFIRMED
        return INCONCLUSIVE


def suspects(findings: Sequence[Finding]) -> list[tuple[int, Finding, str]]:
    """(finding index, finding, link) for every low link of every failed finding that is re-tested."""
    return [(i, f, lid) for i, f in enumerate(findings) if f.status == "failed" and f.kind in RETESTED_KINDS
            for lid in f.links]


def implicated(findings: Iterable[Finding]) -> dict[str, set[str]]:
    """Test key -> the nodes its failed findings name (a node finding's subject, both ends of a link's)."""
    named: dict[str, set[str]] = {}
    for f in findings:
        if f.status != "failed":
            continue
        nodes = named.setdefault(f.test, set())
        if f.kind in ("sender", "receiver", "node"):
            nodes.add(f.subject)
        elif f.kind == "link":
            nodes.update(split_link(f.subject))
    return named


def plan_round(findings: Sequence[Finding], nodes: dict[str, list[str]], number: int) -> list[Probe]:
    """Round ``number`` (0-based): the repeats and probes, each measurement once, at most MAX_PER_ROUND.
    ``nodes``: test key -> the nodes measured in that test, in inventory order."""
    named = implicated(findings)
    probes: dict[tuple[str, str, str], Probe] = {}
    for position, (index, f, lid) in enumerate(suspects(findings)):
        src, dst = split_link(lid)
        fresh = [n for n in nodes.get(f.test, []) if n not in named.get(f.test, set()) and n not in (src, dst)]
        partner = fresh[(position + number) % len(fresh)] if fresh else None
        wanted = [Probe(f.test, src, dst, lid, index, "repeat", True)]
        if partner is not None:
            sends = f.kind == "sender" or (f.kind == "node" and f.subject == src)
            receives = f.kind == "receiver" or (f.kind == "node" and f.subject == dst)
            if sends or f.kind == "link":
                wanted.append(Probe(f.test, src, partner, lid, index, "probe", f.kind != "link"))
            if receives or f.kind == "link":
                wanted.append(Probe(f.test, partner, dst, lid, index, "probe", f.kind != "link"))
        for probe in wanted:
            key = (probe.test, probe.of, link_id(probe.src, probe.dst))
            probes.setdefault(key, probe)
    return list(probes.values())[:MAX_PER_ROUND]


def summarize(findings: Sequence[Finding], retests: dict[tuple[str, str], LinkRetest], rounds: int) -> None:
    """Each re-tested finding's ``retest``: how many of its links ended which way, and the outcome of all."""
    for index, f in enumerate(findings):
        outcomes = [retests[(f.test, lid)].outcome() for lid in f.links if (f.test, lid) in retests
                    and retests[(f.test, lid)].finding == index]
        if not outcomes:
            continue
        counts = {name: outcomes.count(name) for name in (CONFIRMED, FLAKY, INCONCLUSIVE)}
        overall = next((name for name in (CONFIRMED, FLAKY) if counts[name] == len(outcomes)), INCONCLUSIVE)
        f.retest = {"rounds": rounds, **counts, "outcome": overall,
                    "links": {lid: retests[(f.test, lid)].outcome() for lid in f.links if (f.test, lid) in retests}}
