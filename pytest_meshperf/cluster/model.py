"""The cluster model: Labels, Node (fields checked as it is made) and Cluster, typed and frozen."""

from __future__ import annotations

import collections.abc
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_meshperf.cluster.fields import (
    HOST_KEYS,
    OPTIONAL_HOST_KEYS,
    RECEIVING_ROLES,
    SENDING_ROLES,
    VALUE_CHECKS,
    check_label,
)
from pytest_meshperf.errors import InventoryError
from pytest_meshperf.yamlfile import kind_of


class Labels(collections.abc.Mapping):
    """Read-only, hashable ``str -> str`` mapping (a node's free key/values).

    Compares equal to a ``dict`` with the same items; iterates in the order
    the labels were given.
    """

    __slots__ = ("_data",)

    def __init__(
        self, data: Mapping[str, str] | Iterable[tuple[str, str]] = ()
    ) -> None:
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, collections.abc.Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Labels are read-only")

    def __repr__(self) -> str:
        return f"Labels({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Labels, (self._data,))


@dataclass(frozen=True)
class Node:
    """One machine of the mesh.

    ``address`` is the management address (SSH target: IP, DNS name or
    ssh_config alias; the loopback address for local nodes); ``data_address``
    is the address tests target and defaults to ``address``.
    """

    name: str
    address: str
    role: str = "both"
    data_address: str = ""
    ssh_user: str | None = None
    ssh_port: int | None = None
    ssh_key: str | None = None
    ssh_jump: str | None = None
    host_key_check: str | None = None
    python: str | None = None
    iperf3: str | None = None
    netperf: str | None = None
    netserver: str | None = None   # None: the one beside netperf, else on PATH
    max_send: int | None = None
    max_recv: int | None = None
    max_processes: int | None = None
    ports: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data_address in ("", None):
            object.__setattr__(self, "data_address", self.address)
        if isinstance(self.host_key_check, bool):  # YAML reads an unquoted yes/off as a boolean
            object.__setattr__(self, "host_key_check", "yes" if self.host_key_check else "off")
        for key in HOST_KEYS:
            value = getattr(self, key)
            if key == "labels":
                continue
            if key in OPTIONAL_HOST_KEYS and value is None:
                continue
            problem = VALUE_CHECKS[key](value)
            if problem:
                raise InventoryError(
                    f"node {self.name!r} {key}: {problem[0]}; {problem[1]}"
                )
        labels = (
            self.labels
            if isinstance(self.labels, Labels)
            else Labels(self.labels or ())
        )
        for key, value in labels.items():
            problem = check_label(key, value)
            if problem:
                raise InventoryError(
                    f"node {self.name!r} labels: {problem[0]}; {problem[1]}"
                )
        object.__setattr__(self, "labels", labels)

    @property
    def can_send(self) -> bool:
        """The node may run the client side of a test (role client or both)."""
        return self.role in SENDING_ROLES

    @property
    def can_receive(self) -> bool:
        """The node may run the server side of a test (role server or both)."""
        return self.role in RECEIVING_ROLES

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready view (labels as a dict)."""
        return {
            "name": self.name,
            "address": self.address,
            "role": self.role,
            "data_address": self.data_address,
            "ssh_user": self.ssh_user,
            "ssh_port": self.ssh_port,
            "ssh_key": self.ssh_key,
            "ssh_jump": self.ssh_jump,
            "host_key_check": self.host_key_check,
            "python": self.python,
            "iperf3": self.iperf3,
            "netperf": self.netperf,
            "netserver": self.netserver,
            "max_send": self.max_send,
            "max_recv": self.max_recv,
            "max_processes": self.max_processes,
            "ports": self.ports,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class Cluster:
    """The nodes of one run and where they came from."""

    kind: str  # "local", "file", "netns" (a testbed the run builds) or "matrix" (--matrix address lists)
    spec: str  # the --cluster string as given (DEFAULT_CLUSTER when none was)
    nodes: tuple[Node, ...]
    source: str | None = None  # absolute path of the inventory file, if any

    def __post_init__(self) -> None:
        nodes = tuple(self.nodes)
        seen: dict[str, str] = {}
        for node in nodes:
            if not isinstance(node, Node):
                raise InventoryError(
                    f"cluster {self.spec!r}: expected Node objects, got {kind_of(node)}; build nodes with Node(...)"
                )
            folded = node.name.lower()
            if folded in seen:
                raise InventoryError(
                    f"cluster {self.spec!r}: node name {node.name!r} is used twice "
                    f"(also {seen[folded]!r}); give every node a unique name"
                )
            seen[folded] = node.name
        object.__setattr__(self, "nodes", nodes)

    def node(self, name: str) -> Node:
        """The node called ``name``; ``KeyError`` (listing the names) if none."""
        for node in self.nodes:
            if node.name == name:
                return node
        names = ", ".join(n.name for n in self.nodes)
        raise KeyError(
            f"no node named {name!r} in cluster {self.spec!r}; nodes are: {names}"
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @property
    def senders(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.can_send)

    @property
    def receivers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.can_receive)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "spec": self.spec,
            "source": self.source,
            "nodes": [n.to_dict() for n in self.nodes],
        }
