"""What a netns testbed is asked to be: ``netns:N[,rate=...]`` parsed into a TestbedSpec, and the testbed's errors."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from pytest_meshperf.cluster.model import Labels
from pytest_meshperf.errors import InventoryError, MeshperfError, UsageError
from pytest_meshperf.plan.links import ARROW, link_id, split_link

MIN_NODES = 2
MAX_NODES = 64
#: Every address the testbed uses lies in this benchmarking range (RFC 2544).
TESTBED_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
SPEC_FORMS = (
    "accepted forms: netns:N, netns:N,rate=200mbit (every node), "
    "netns:N,rate.nodeK=200mbit (one node), netns:N,rate.nodeI->nodeJ=100mbit (one link), "
    f"with {MIN_NODES} <= N <= {MAX_NODES}"
)
_RATE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps|tbps)")
_RATE_UNITS = "bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps, tbps"


class TestbedError(MeshperfError):
    """The testbed could not be built, changed or torn down."""

    __test__ = False  # not a pytest test class


class TestbedUnavailableError(TestbedError, UsageError):
    """This machine cannot run a netns testbed (not root, tools missing)."""

    __test__ = False


def _spec_error(spec: str, problem: str) -> InventoryError:
    return InventoryError(f"--cluster {spec!r}: {problem}; {SPEC_FORMS}")


def _node_names(n: int) -> list[str]:
    return [f"node{i}" for i in range(1, n + 1)]


def check_rate(rate: Any) -> str | None:
    """None if ``rate`` is a tc rate ("200mbit"), else the problem."""
    if not isinstance(rate, str) or not rate:
        return f"rate {rate!r} is not a string like '200mbit'"
    if not _RATE.fullmatch(rate):
        return f"rate {rate!r} is not a number with a tc unit ({_RATE_UNITS})"
    if float(re.match(r"[\d.]+", rate).group()) <= 0:  # type: ignore[union-attr]
        return f"rate {rate!r} is not positive"
    return None


@dataclass(frozen=True)
class TestbedSpec:
    """What to build: ``nodes`` namespaced hosts, some shaped: a node's egress
    (``rates``: node -> tc rate) and single links (``link_rates``: ``"node1->node2"`` -> tc rate)."""

    __test__ = False

    nodes: int
    rates: Mapping[str, str] = field(default_factory=dict)
    link_rates: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = f"netns:{self.nodes}"
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int):
            raise _spec_error(spec, f"the node count must be an integer, got {self.nodes!r}")
        if not MIN_NODES <= self.nodes <= MAX_NODES:
            raise _spec_error(spec, f"a netns testbed needs {MIN_NODES} to {MAX_NODES} nodes, got {self.nodes}")
        names = _node_names(self.nodes)
        rates: dict[str, str] = {}
        for name, rate in dict(self.rates or {}).items():
            if name not in names:
                raise _spec_error(spec, f"no node {name!r} to shape (nodes are node1..node{self.nodes})")
            problem = check_rate(rate)
            if problem:
                raise _spec_error(spec, problem)
            rates[name] = rate
        links: dict[str, str] = {}
        for link, rate in dict(self.link_rates or {}).items():
            src, dst = split_link(link) or ("", "")
            if src not in names or dst not in names or src == dst:
                raise _spec_error(spec, f"link {link!r} is not nodeI->nodeJ of two nodes node1..node{self.nodes}")
            problem = check_rate(rate)
            if problem:
                raise _spec_error(spec, problem)
            links[link_id(src, dst)] = rate
        # node order, read-only and hashable
        object.__setattr__(self, "rates", Labels((n, rates[n]) for n in names if n in rates))
        object.__setattr__(self, "link_rates", Labels((k, links[k]) for k in sorted(links, key=_link_order)))

    @property
    def names(self) -> list[str]:
        return _node_names(self.nodes)

    def __str__(self) -> str:
        parts = [f"netns:{self.nodes}"]
        values = set(self.rates.values())
        if len(self.rates) == self.nodes and len(values) == 1:
            parts.append(f"rate={values.pop()}")
        else:
            parts.extend(f"rate.{n}={r}" for n, r in self.rates.items())
        parts.extend(f"rate.{link}={r}" for link, r in self.link_rates.items())
        return ",".join(parts)


def _link_order(link: str) -> tuple[int, int]:
    src, dst = split_link(link)
    return int(src[len("node"):]), int(dst[len("node"):])


def parse_spec(text: str) -> TestbedSpec:
    """``netns:N[,rate=R][,rate.nodeK=R]...`` -> :class:`TestbedSpec`.

    ``rate=R`` shapes every node, ``rate.nodeK=R`` one node (it wins over
    ``rate=``), ``rate.nodeI->nodeJ=R`` the one link from nodeI to nodeJ
    (within nodeI's rate).  Rates are tc rates (``200mbit``, ``1gbit``, ``500kbit``).
    Raises a one-line :class:`~pytest_meshperf.errors.InventoryError`.
    """
    if not isinstance(text, str):
        raise InventoryError(f"--cluster {text!r}: expected a string; {SPEC_FORMS}")
    spec = text.strip()
    head, *options = spec.split(",")
    kind, colon, count = head.partition(":")
    if kind.strip().lower() != "netns" or not colon:
        raise _spec_error(text, "not a netns testbed spec (it starts with 'netns:N')")
    count = count.strip()
    if not count:
        raise _spec_error(text, "the node count is missing")
    if not count.isdigit():
        raise _spec_error(text, f"the node count {count!r} is not a whole number")
    n = int(count)
    if not MIN_NODES <= n <= MAX_NODES:
        raise _spec_error(text, f"a netns testbed needs {MIN_NODES} to {MAX_NODES} nodes, got {n}")
    names = _node_names(n)
    default_rate: str | None = None
    node_rates: dict[str, str] = {}
    link_rates: dict[str, str] = {}
    seen: set[str] = set()
    for option in options:
        option = option.strip()
        if not option:
            raise _spec_error(text, "empty option (two commas in a row or a trailing comma)")
        key, eq, value = option.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not value:
            raise _spec_error(text, f"option {option!r} has no value")
        if key in seen:
            raise _spec_error(text, f"option {key!r} is given twice")
        seen.add(key)
        problem = check_rate(value)
        if key == "rate":
            if problem:
                raise _spec_error(text, problem)
            default_rate = value
        elif key.startswith("rate.") and ARROW in key:
            src, dst = split_link(key[len("rate."):]) or ("", "")
            for name in (src, dst):
                if name not in names:
                    raise _spec_error(text, f"{key!r}: no node {name!r} (nodes are node1..node{n})")
            if src == dst:
                raise _spec_error(text, f"{key!r}: a link joins two different nodes")
            if problem:
                raise _spec_error(text, problem)
            link_rates[link_id(src, dst)] = value
        elif key.startswith("rate."):
            name = key[len("rate."):]
            if name not in names:
                raise _spec_error(text, f"{key!r}: no node {name!r} (nodes are node1..node{n})")
            if problem:
                raise _spec_error(text, problem)
            node_rates[name] = value
        else:
            raise _spec_error(text, f"unknown option {key!r}")
    rates = {name: node_rates.get(name, default_rate) for name in names}
    return TestbedSpec(nodes=n, rates={k: v for k, v in rates.items() if v}, link_rates=link_rates)


@dataclass(frozen=True)
class TestbedNode:
    """One namespaced host: ``name`` (node1..), ``address`` and its namespace's name."""

    __test__ = False

    name: str
    address: str
    netns: str


NodeRef = Union[str, TestbedNode]
