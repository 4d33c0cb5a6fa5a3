"""Link ids, one grammar for all: a directed pair is ``SRC->DST``, written by link_id and read by split_link.

Pair (one directed pair of nodes and its round), and ``--mesh-links`` patterns that select pairs.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_meshperf.cluster.model import Cluster
from pytest_meshperf.errors import UsageError

ARROW = "->"


def link_id(src: str, dst: str) -> str:
    """The id of the link from node ``src`` to node ``dst``: ``src->dst`` (test ids, results, link rates)."""
    return f"{src}{ARROW}{dst}"


def split_link(text: str) -> tuple[str, str] | None:
    """(src, dst) of ``SRC->DST`` (each side stripped); None unless there is one arrow with a name on each side."""
    src, sep, dst = str(text).partition(ARROW)
    src, dst = src.strip(), dst.strip()
    if not sep or not src or not dst or ARROW in dst:
        return None
    return src, dst


@dataclass(frozen=True)
class Pair:
    src: Any    # cluster.model.Node
    dst: Any
    round: int = 0   # the schedule's round (plan/schedule.py); pairs of one round share no node

    @property
    def id(self) -> str:
        return link_id(self.src.name, self.dst.name)

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class LinkPattern:
    """``--mesh-links`` entry ``SRC->DST``, shell-style globs on each side (``node1->*``)."""
    src: str
    dst: str

    def matches(self, pair: Pair) -> bool:
        return fnmatch.fnmatchcase(pair.src.name, self.src) and fnmatch.fnmatchcase(pair.dst.name, self.dst)


def parse_links(values: Iterable[str] | None, cluster: Cluster) -> tuple[LinkPattern, ...]:
    """``--mesh-links`` values (each may hold several, comma-separated), checked against the cluster.

    pytest's ``-k`` cannot say ``node1->`` (its expression language has no ``>``), so links get
    their own selection.  A side that matches no node is a usage error: a typo must not silently
    select nothing.
    """
    names = [node.name for node in cluster.nodes]
    patterns = []
    for value in values or ():
        for text in (part.strip() for part in value.split(",")):
            sides = split_link(text)
            if sides is None:
                raise UsageError(f"--mesh-links {text!r}: write SRC->DST with node names or globs, e.g. "
                                 "'node1->*' or '*->node3'")
            for side in sides:
                if not fnmatch.filter(names, side):
                    raise UsageError(f"--mesh-links {text!r}: {side!r} matches no node; the cluster's nodes: "
                                     + ", ".join(names))
            patterns.append(LinkPattern(*sides))
    return tuple(patterns)


def link_selected(pair: Pair, patterns: Sequence[LinkPattern]) -> bool:
    """No patterns select every pair; otherwise a pair any pattern matches."""
    return not patterns or any(pattern.matches(pair) for pattern in patterns)
