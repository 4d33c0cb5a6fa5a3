"""The cluster a run measures: ``--cluster SPEC`` turned into typed, frozen nodes.

Specs:

* ``None`` or ``""``: :data:`DEFAULT_CLUSTER` (``local:3``);
* ``local``: ``local:3``; ``local:N`` with ``2 <= N <= 64``: N nodes on the
  loopback interface (``node1`` .. ``nodeN`` at ``127.0.0.11`` ..);
* anything else: the path of a ``hosts.yaml`` inventory (``~`` expanded,
  relative paths resolved against ``base_dir``)::

      defaults:              # optional; any host key except name/address
        ssh_user: root
        ssh_key: ~/.ssh/id_rsa
      hosts:
        - name: server1
          address: 10.0.1.10    # SSH target: IP, DNS name or ssh_config alias
          role: server          # server | client | both (default both)
          ssh_port: 22
          data_address: 10.1.1.10   # optional: the address tests target
          labels: {zone: a, rack: r1}

Every problem is raised as one :class:`~pytest_meshperf.errors.InventoryError`
whose message is a single line ``<file>:<line>: <where>: <problem>; <fix>``
(``--cluster '<spec>': <problem>; <fix>`` when there is no file to point at).
"""

from __future__ import annotations

import collections.abc
import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import yaml

from pytest_meshperf.errors import InventoryError
from pytest_meshperf.vocabulary import HOST_KEY_CHECKS, TOOL_BINARIES  # noqa: F401  (re-exported)

__all__ = [
    "DEFAULT_CLUSTER",
    "HOST_KEYS",
    "LOCAL_MAX_NODES",
    "LOCAL_MIN_NODES",
    "ROLES",
    "Cluster",
    "Labels",
    "Node",
    "load_cluster",
    "local_cluster",
]

ROLES = ("server", "client", "both")
SENDING_ROLES = ("client", "both")
RECEIVING_ROLES = ("server", "both")

DEFAULT_CLUSTER = "local:3"
LOCAL_DEFAULT_NODES = 3
LOCAL_MIN_NODES = 2
LOCAL_MAX_NODES = 64

#: Keys a host (or ``defaults:``) may set, in the order they are validated.
#: Each one is a :class:`Node` field and has a checker in ``_VALUE_CHECKS``
#: (or a dedicated parser: ``ssh_key``, ``labels``).
HOST_KEYS = (
    "name",
    "address",
    "role",
    "data_address",
    "ssh_user",
    "ssh_port",
    "ssh_key",
    "ssh_jump",
    "host_key_check",
    "python",
    "iperf3",
    "netperf",
    "netserver",
    "max_send",
    "max_recv",
    "max_processes",
    "ports",
    "labels",
)
#: Keys every host must give itself (not allowed in ``defaults:``).
REQUIRED_HOST_KEYS = ("name", "address")
#: Keys for which an explicit ``null`` means "not set".
OPTIONAL_HOST_KEYS = ("data_address", "ssh_user", "ssh_port", "ssh_key", "ssh_jump", "host_key_check", "python",
                      "iperf3", "netperf", "netserver", "max_send", "max_recv", "max_processes", "ports",
                      "labels")
#: Top-level keys of a hosts.yaml file.
TOP_KEYS = ("defaults", "hosts")

_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]")
_ADDRESS_CHARS = re.compile(r"[A-Za-z0-9.:_\[\]%-]")
_USER_CHARS = _NAME_CHARS
_JUMP_CHARS = re.compile(r"[A-Za-z0-9.:_@\[\]%-]")
_PATH_CHARS = re.compile(r"[A-Za-z0-9._+/-]")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"

# (problem, fix) or None
_Problem = Optional[tuple[str, str]]


# --------------------------------------------------------------------------
# value checks shared by Node.__post_init__ and the hosts.yaml loader
# --------------------------------------------------------------------------


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({_short(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({_short(value)})"
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    if isinstance(value, collections.abc.Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__} ({_short(value)})"


def _char(c: str) -> str:
    if c == " ":
        return "a space"
    if c == "\t":
        return "a tab"
    return repr(c)


def _bad_char(value: str, allowed: re.Pattern[str]) -> str | None:
    for c in value:
        if not allowed.fullmatch(c):
            return c
    return None


def _suggest(word: str, choices: Iterable[str], what: str = "valid keys") -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{what} are: {', '.join(choices)}"


def _check_string(value: Any, key: str, example: str) -> _Problem:
    if value is None or value == "":
        return "is empty", f"give a value, e.g. {key}: {example}"
    if isinstance(value, (bool, int, float)):
        return (
            f"expected a string, got {_kind(value)}",
            f"quote the value, e.g. {key}: '{value}'",
        )
    if not isinstance(value, str):
        return (
            f"expected a string, got {_kind(value)}",
            f"write a single value, e.g. {key}: {example}",
        )
    return None


def _check_name(value: Any) -> _Problem:
    problem = _check_string(value, "name", "web1")
    if problem:
        if value is None or value == "":
            return problem[0], "give every host a unique name, e.g. name: web1"
        return problem
    bad = _bad_char(value, _NAME_CHARS)
    if bad is not None:
        return (
            f"{value!r} contains {_char(bad)}",
            "use only letters, digits, '.', '_' and '-' (names appear in test ids and file names)",
        )
    if not (value[0].isalnum() or value[0] == "_"):
        return (
            f"{value!r} starts with {value[0]!r}",
            "start the name with a letter, digit or '_'",
        )
    return None


def _check_address(value: Any) -> _Problem:
    fix = "give an IP address, DNS name or ssh_config alias"
    problem = _check_string(value, "address", "10.0.1.10")
    if problem:
        return problem[0], fix if value is None or value == "" else problem[1]
    bad = _bad_char(value, _ADDRESS_CHARS)
    if bad is not None:
        return (
            f"{value!r} contains {_char(bad)}",
            f"{fix} (letters, digits, '.', ':', '-', '_', '[', ']', '%' only)",
        )
    if value.startswith("-"):
        return f"{value!r} starts with '-'", fix
    return None


def address_problem(value: Any) -> _Problem:
    """(problem, fix) when ``value`` is not a usable address or ssh_config alias, else None (for matrix.py)."""
    return _check_address(value)


def _check_role(value: Any) -> _Problem:
    roles = ", ".join(ROLES)
    if value in ROLES:
        return None
    if not isinstance(value, str):
        return f"expected one of {roles}, got {_kind(value)}", "write e.g. role: both"
    return f"{value!r} is not one of {roles}", _suggest(value, ROLES, "valid roles")


def _check_user(value: Any) -> _Problem:
    problem = _check_string(value, "ssh_user", "root")
    if problem:
        return problem
    bad = _bad_char(value, _USER_CHARS)
    if bad is not None:
        return (
            f"{value!r} contains {_char(bad)}",
            "use only letters, digits, '.', '_' and '-'",
        )
    if value.startswith("-"):
        return f"{value!r} starts with '-'", "give a user name, e.g. ssh_user: root"
    return None


def _check_port(value: Any) -> _Problem:
    fix = "give a port number between 1 and 65535, e.g. ssh_port: 22"
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            return (
                f"{value!r} is a string, not an integer",
                "write the port without quotes, e.g. ssh_port: 22",
            )
        return f"expected an integer, got {_kind(value)}", fix
    if not 1 <= value <= 65535:
        return f"{value} is outside 1..65535", fix
    return None


def _check_key_path(value: Any) -> _Problem:
    return _check_string(value, "ssh_key", "~/.ssh/id_rsa")


def _check_label(key: Any, value: Any) -> _Problem:
    if not isinstance(key, str) or not key:
        return (
            f"label key {_short(key)} is not a non-empty string",
            "use a word as key, e.g. zone: a",
        )
    if any(not c.isprintable() or c.isspace() for c in key):
        return (
            f"label key {key!r} contains whitespace or control characters",
            "use a single word as key",
        )
    if not isinstance(value, str):
        return (
            f"label {key!r} has {_kind(value)} as value, not a string",
            "give a single value, e.g. zone: a",
        )
    if any(not c.isprintable() for c in value):
        return (
            f"label {key!r} value {value!r} contains control characters or newlines",
            "keep label values on one line",
        )
    return None


# field -> checker for the plain scalar fields (ssh_key and labels have their own parsers)
def _check_jump(value: Any) -> _Problem:
    fix = "give the jump host as [user@]host[:port] or the name of another host"
    problem = _check_string(value, "ssh_jump", "bastion.example.net")
    if problem:
        return problem
    bad = _bad_char(value, _JUMP_CHARS)
    if bad is not None:
        return f"{value!r} contains {_char(bad)}", fix
    if value.startswith("-"):
        return f"{value!r} starts with '-'", fix
    return None


def _check_host_key_check(value: Any) -> _Problem:
    if value in HOST_KEY_CHECKS or isinstance(value, bool):  # YAML's yes/off are booleans: True/False
        return None
    return (f"{_short(value)} is not one of {', '.join(HOST_KEY_CHECKS)}",
            "write host_key_check: yes (verify), accept-new (add unknown keys) or off (no check, throwaway labs)")


def _check_limit(value: Any, key: str) -> _Problem:
    fix = f"give how many measurements the node may take part in at once, 1 to 64, e.g. {key}: 2"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {_kind(value)}", fix
    if not 1 <= value <= 64:
        return f"{value} is outside 1..64", fix
    return None


def _check_max_processes(value: Any) -> _Problem:
    fix = "give how many tool processes the node may run at once, 1 to 4096, e.g. max_processes: 32"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {_kind(value)}", fix
    if not 1 <= value <= 4096:
        return f"{value} is outside 1..4096", fix
    return None


_PORTS = re.compile(r"^([0-9]{1,5})-([0-9]{1,5})$")


def _check_ports(value: Any) -> _Problem:
    fix = "give the tool servers' port range as LOW-HIGH within 1024-65535, e.g. ports: 5201-5299"
    if not isinstance(value, str):
        return f"expected a range such as 5201-5299, got {_kind(value)}", fix
    match = _PORTS.match(value)
    if not match:
        return f"{value!r} is not a LOW-HIGH port range", fix
    low, high = int(match.group(1)), int(match.group(2))
    if not 1024 <= low <= high <= 65535:
        return f"{value!r} is not an ascending range within 1024-65535", fix
    return None


def _check_program(value: Any) -> _Problem:
    fix = "give a program name or an absolute path on the node, e.g. iperf3: /usr/bin/iperf3"
    problem = _check_string(value, "iperf3", "/usr/bin/iperf3")
    if problem:
        return problem
    bad = _bad_char(value, _PATH_CHARS)
    if bad is not None:
        return f"{value!r} contains {_char(bad)}", fix
    if value.startswith("-") or not (value.startswith("/") or "/" not in value):
        return f"{value!r} is neither a program name nor an absolute path", fix
    return None


_VALUE_CHECKS: dict[str, Callable[[Any], _Problem]] = {
    "name": _check_name,
    "address": _check_address,
    "role": _check_role,
    "data_address": _check_address,
    "ssh_user": _check_user,
    "ssh_port": _check_port,
    "ssh_key": _check_key_path,
    "ssh_jump": _check_jump,
    "host_key_check": _check_host_key_check,
    "python": _check_program,
    "iperf3": _check_program,
    "netperf": _check_program,
    "netserver": _check_program,
    "max_send": lambda value: _check_limit(value, "max_send"),
    "max_recv": lambda value: _check_limit(value, "max_recv"),
    "max_processes": _check_max_processes,
    "ports": _check_ports,
}
assert set(_VALUE_CHECKS) | {"labels"} == set(HOST_KEYS)


def _one_line(message: str) -> str:
    return (
        " ".join(message.splitlines())
        if ("\n" in message or "\r" in message)
        else message
    )


# --------------------------------------------------------------------------
# data model
# --------------------------------------------------------------------------


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
            problem = _VALUE_CHECKS[key](value)
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
            problem = _check_label(key, value)
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
                    f"cluster {self.spec!r}: expected Node objects, got {_kind(node)}; build nodes with Node(...)"
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


# --------------------------------------------------------------------------
# local clusters
# --------------------------------------------------------------------------


def _local(n: Any, spec: str) -> Cluster:
    if (
        isinstance(n, bool)
        or not isinstance(n, int)
        or not LOCAL_MIN_NODES <= n <= LOCAL_MAX_NODES
    ):
        raise InventoryError(
            f"--cluster {spec!r}: a local cluster needs {LOCAL_MIN_NODES} to {LOCAL_MAX_NODES} nodes, "
            f"got {_short(n)}; use local:N with {LOCAL_MIN_NODES} <= N <= {LOCAL_MAX_NODES}"
        )
    nodes = tuple(
        Node(name=f"node{i}", address=f"127.0.0.{10 + i}") for i in range(1, n + 1)
    )
    return Cluster(kind="local", spec=spec, nodes=nodes)


def local_cluster(n: int) -> Cluster:
    """``n`` nodes on loopback: ``node1`` .. ``nodeN`` at ``127.0.0.(10+i)``, role both."""
    return _local(n, f"local:{n}")


def is_testbed_spec(spec) -> bool:
    """A ``netns:N`` spec: a testbed the run builds (testbed/), not an inventory to load."""
    return bool(spec) and (spec == "netns" or spec.startswith("netns:"))


def load_cluster(spec: str | None, base_dir: str | os.PathLike[str] = ".") -> Cluster:
    """Turn a ``--cluster`` value into a :class:`Cluster`.

    Raises :class:`InventoryError` (one line) for any invalid spec or file.
    """
    if spec is not None and not isinstance(spec, str):
        spec = os.fspath(spec)
    if spec is None or not spec.strip():
        return _local(LOCAL_DEFAULT_NODES, DEFAULT_CLUSTER)
    text = spec.strip()
    if text == "local":
        return _local(LOCAL_DEFAULT_NODES, spec)
    if text.startswith("local:"):
        count = text[len("local:") :]
        if not re.fullmatch(r"[0-9]+", count):
            what = (
                "missing the node count"
                if not count
                else f"{count!r} is not a node count"
            )
            raise InventoryError(
                f"--cluster {text!r}: {what}; use local:N with {LOCAL_MIN_NODES} <= N <= {LOCAL_MAX_NODES}, e.g. local:3"
            )
        return _local(int(count), spec)
    return _FileLoader(text, os.fspath(base_dir)).load(spec)


# --------------------------------------------------------------------------
# hosts.yaml
# --------------------------------------------------------------------------


_YamlNode = yaml.Node
_Pairs = dict[str, tuple[_YamlNode, _YamlNode]]


class _FileLoader:
    def __init__(self, display: str, base_dir: str) -> None:
        self.display = display
        path = os.path.expanduser(display)
        if not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        self.path = os.path.abspath(path)
        self.folder = os.path.dirname(self.path)
        self.loader: yaml.SafeLoader | None = None
        self._pairs_cache: dict[int, _Pairs] = {}

    # -- errors -------------------------------------------------------------

    def _spec_error(self, what: str, fix: str) -> InventoryError:
        shown = f" ({self.path})" if self.path != self.display else ""
        return InventoryError(
            _one_line(f"--cluster {self.display!r}: {what}{shown}; {fix}")
        )

    def _fail(
        self, at: _YamlNode | int, where: str, what: str, fix: str
    ) -> InventoryError:
        line = at if isinstance(at, int) else at.start_mark.line + 1
        return InventoryError(
            _one_line(f"{self.display}:{line}: {where}: {what}; {fix}")
        )

    def _yaml_error(self, err: yaml.YAMLError, text: str) -> InventoryError:
        if isinstance(err, yaml.reader.ReaderError):
            before = text[: err.position]
            line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
            kind = "YAML syntax error"
            problem = f"unacceptable character #x{err.character:04x}: {err.reason}"
            fix = "remove the character"
        else:
            mark = getattr(err, "problem_mark", None) or getattr(
                err, "context_mark", None
            )
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = getattr(err, "problem", None) or str(err)
            context = getattr(err, "context", None)
            if context:
                problem = f"{problem} ({context})"
            if isinstance(err, yaml.constructor.ConstructorError):
                kind, fix = (
                    "invalid YAML",
                    "use plain YAML values (no tags or bad merges) there",
                )
            else:
                kind, fix = (
                    "YAML syntax error",
                    "check indentation, ':', '-' and quotes there",
                )
        problem = " ".join(problem.split())
        return InventoryError(
            _one_line(f"{self.display}:{line}:{column}: {kind}: {problem}; {fix}")
        )

    # -- reading ------------------------------------------------------------

    def _read(self) -> str:
        if not os.path.exists(self.path):
            raise self._spec_error("no such file", "give a hosts.yaml path or local:N")
        if os.path.isdir(self.path):
            raise self._spec_error(
                "is a directory, not a file", "give a hosts.yaml path or local:N"
            )
        try:
            with open(self.path, encoding="utf-8-sig") as fh:
                return fh.read()
        except UnicodeDecodeError as err:
            raise self._spec_error(
                f"is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})",
                "give a hosts.yaml file saved as UTF-8",
            ) from None
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise self._spec_error(
                f"cannot read the file ({reason})",
                "check its permissions or give another hosts.yaml path",
            ) from None

    def load(self, spec: str) -> Cluster:
        text = self._read()
        try:
            self.loader = yaml.SafeLoader(text)  # checks the characters already
            try:
                nodes = self._inventory(self.loader.get_single_node())
            finally:
                self.loader.dispose()
        except yaml.YAMLError as err:
            raise self._yaml_error(err, text) from None
        return Cluster(kind="file", spec=spec, nodes=tuple(nodes), source=self.path)

    # -- YAML helpers -------------------------------------------------------

    def _value(self, node: _YamlNode) -> Any:
        assert self.loader is not None
        return self.loader.construct_object(node, deep=True)

    @staticmethod
    def _is_null(node: _YamlNode) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG

    def _node_kind(self, node: _YamlNode) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        return _kind(self._value(node))

    def _pairs(self, node: yaml.MappingNode, where: str) -> _Pairs:
        """Keys of a mapping -> (key node, value node); rejects repeated and non-string keys.

        Merge keys (``<<: *anchor``) are honoured; the mapping's own keys win.
        """
        cached = self._pairs_cache.get(id(node))
        if cached is not None:
            return cached
        own: _Pairs = {}
        has_merge = False
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                has_merge = True
                continue
            key = self._key(key_node, where)
            if key in own:
                first = own[key][0].start_mark.line + 1
                raise self._fail(
                    key_node,
                    where,
                    f"key {key!r} is given twice (first at line {first})",
                    "keep only one of them",
                )
            own[key] = (key_node, value_node)
        result = own
        if has_merge:
            assert self.loader is not None
            self.loader.flatten_mapping(node)
            result = {}
            for key_node, value_node in node.value:
                result[self._key(key_node, where)] = (key_node, value_node)
        self._pairs_cache[id(node)] = result
        return result

    def _key(self, key_node: _YamlNode, where: str) -> str:
        key = self._value(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or not key:
            shown = self._node_kind(key_node)
            raise self._fail(
                key_node,
                where,
                f"key is {shown}, not a name",
                "use plain words as keys",
            )
        return key

    def _unknown_keys(
        self, pairs: _Pairs, allowed: tuple[str, ...], where: str
    ) -> None:
        for key, (key_node, _) in pairs.items():
            if key not in allowed:
                raise self._fail(
                    key_node, where, f"unknown key {key!r}", _suggest(key, allowed)
                )

    # -- structure ----------------------------------------------------------

    def _inventory(self, root: _YamlNode | None) -> list[Node]:
        where = "inventory"
        if root is None or self._is_null(root):
            raise self._fail(
                root if root is not None else 1,
                where,
                "the file is empty",
                "list at least two hosts under 'hosts:'",
            )
        if isinstance(root, yaml.SequenceNode):
            raise self._fail(
                root,
                where,
                "expected a mapping with a 'hosts:' list, got a list",
                "put the list under a top-level 'hosts:' key",
            )
        if not isinstance(root, yaml.MappingNode):
            raise self._fail(
                root,
                where,
                f"expected a mapping with a 'hosts:' list, got {self._node_kind(root)}",
                "start the file with 'hosts:' followed by one '- name: ...' entry per host",
            )
        top = self._pairs(root, "top level")
        self._unknown_keys(top, TOP_KEYS, "top level")

        defaults: dict[str, Any] = {}
        default_labels: dict[str, str] = {}
        if "defaults" in top:
            defaults, default_labels = self._defaults(top["defaults"][1])

        if "hosts" not in top:
            raise self._fail(
                root, where, "no 'hosts:' list", "add 'hosts:' with at least two hosts"
            )
        hosts_key, hosts_node = top["hosts"]
        if self._is_null(hosts_node) or (
            isinstance(hosts_node, yaml.SequenceNode) and not hosts_node.value
        ):
            raise self._fail(
                hosts_key,
                "hosts",
                "the list is empty",
                "add at least two hosts ('- name: ...', 'address: ...')",
            )
        if not isinstance(hosts_node, yaml.SequenceNode):
            raise self._fail(
                hosts_node,
                "hosts",
                f"expected a list of hosts, got {self._node_kind(hosts_node)}",
                "write each host as '- name: ...' with its keys indented below",
            )
        nodes = self._hosts(hosts_node, defaults, default_labels)
        self._check_mesh(hosts_key, nodes)
        return nodes

    def _defaults(self, node: _YamlNode) -> tuple[dict[str, Any], dict[str, str]]:
        where = "defaults"
        if self._is_null(node):
            return {}, {}
        if not isinstance(node, yaml.MappingNode):
            raise self._fail(
                node,
                where,
                f"expected a mapping, got {self._node_kind(node)}",
                "write defaults as 'key: value' lines, e.g. ssh_user: root",
            )
        pairs = self._pairs(node, where)
        allowed = tuple(k for k in HOST_KEYS if k not in REQUIRED_HOST_KEYS)
        for key, (key_node, _) in pairs.items():
            if key in REQUIRED_HOST_KEYS:
                raise self._fail(
                    key_node,
                    where,
                    f"{key!r} cannot be a default",
                    f"set {key!r} on each host",
                )
        self._unknown_keys(pairs, allowed, where)
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        for key, (_, value_node) in pairs.items():
            if key == "labels":
                labels = self._labels(value_node, f"{where} labels")
            else:
                values[key] = self._field(key, value_node, f"{where} {key}")
        return values, labels

    def _hosts(
        self,
        hosts_node: yaml.SequenceNode,
        defaults: dict[str, Any],
        default_labels: dict[str, str],
    ) -> list[Node]:
        nodes: list[Node] = []
        names: dict[str, tuple[str, int]] = {}  # folded name -> (name, line)
        ssh_targets: dict[tuple[str, int | None], tuple[str, int]] = {}
        data_addresses: dict[str, tuple[str, int]] = {}
        for index, host_node in enumerate(hosts_node.value, 1):
            label = f"host #{index}"
            if not isinstance(host_node, yaml.MappingNode):
                raise self._fail(
                    host_node,
                    label,
                    f"expected a mapping (name, address, ...), got {self._node_kind(host_node)}",
                    "write each host as '- name: ...' with its keys indented below",
                )
            label = self._host_label(host_node, label)
            pairs = self._pairs(host_node, label)
            self._unknown_keys(pairs, HOST_KEYS, label)
            for key in REQUIRED_HOST_KEYS:
                if key not in pairs:
                    fix = (
                        "give every host a unique name, e.g. name: web1"
                        if key == "name"
                        else "give the host's SSH address: an IP address, DNS name or ssh_config alias"
                    )
                    raise self._fail(host_node, label, f"missing {key!r}", fix)

            values = dict(defaults)
            labels = dict(default_labels)
            for key in HOST_KEYS:
                if key not in pairs:
                    continue
                value_node = pairs[key][1]
                if key == "labels":
                    labels.update(self._labels(value_node, f"{label} labels"))
                else:
                    values[key] = self._field(key, value_node, f"{label} {key}")

            name = values["name"]
            name_line = pairs["name"][1].start_mark.line + 1
            if name.lower() in names:
                first, line = names[name.lower()]
                also = "" if first == name else f" as {first!r}"
                raise self._fail(
                    name_line,
                    f"host {name!r} name",
                    f"duplicate name (first defined at line {line}{also})",
                    "names must be unique: rename one of the hosts",
                )
            names[name.lower()] = (name, name_line)

            address_node = pairs["address"][1]
            target = (values["address"].lower(), values.get("ssh_port"))
            if target in ssh_targets:
                other, line = ssh_targets[target]
                raise self._fail(
                    address_node,
                    f"host {name!r} address",
                    f"{values['address']!r} is also the address of host {other!r} (line {line})",
                    "give every host its own address (hosts may share one only with different ssh_port values)",
                )
            ssh_targets[target] = (name, address_node.start_mark.line + 1)

            explicit = (
                values.get("data_address") is not None and "data_address" in pairs
            )
            data_node = pairs["data_address"][1] if explicit else address_node
            data_address = values.get("data_address") or values["address"]
            if data_address.lower() in data_addresses:
                other, line = data_addresses[data_address.lower()]
                if explicit:
                    origin = ""
                elif values.get("data_address"):
                    origin = " (from defaults)"
                else:
                    origin = " (taken from address)"
                raise self._fail(
                    data_node,
                    f"host {name!r} data_address",
                    f"{data_address!r}{origin} is also the data address of host {other!r} (line {line})",
                    "give every host its own data_address",
                )
            data_addresses[data_address.lower()] = (name, data_node.start_mark.line + 1)

            values["labels"] = labels
            nodes.append(Node(**values))
        return nodes

    def _host_label(self, host_node: yaml.MappingNode, fallback: str) -> str:
        """``host 'web1'`` when the host has a valid name, else ``fallback``."""
        for key_node, value_node in host_node.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.value == "name"
                and isinstance(value_node, yaml.ScalarNode)
            ):
                name = self._value(value_node)
                if _check_name(name) is None:
                    return f"host {name!r}"
        return fallback

    def _field(self, key: str, node: _YamlNode, where: str) -> Any:
        value = self._value(node)
        if value is None and key in OPTIONAL_HOST_KEYS:
            return None
        problem = _VALUE_CHECKS[key](value)
        if problem:
            raise self._fail(node, where, problem[0], problem[1])
        if key == "ssh_key":
            return self._key_file(value, node, where)
        return value

    def _key_file(self, value: str, node: _YamlNode, where: str) -> str:
        path = os.path.expanduser(value)
        if not os.path.isabs(path):
            path = os.path.join(self.folder, path)
        path = os.path.normpath(path)
        shown = repr(value) if path == value else f"{value!r} ({path})"
        if not os.path.exists(path):
            raise self._fail(
                node, where, f"{shown} does not exist", "fix the path or create the key"
            )
        if os.path.isdir(path):
            raise self._fail(
                node,
                where,
                f"{shown} is a directory",
                "give the path of the private key file",
            )
        return path

    def _labels(self, node: _YamlNode, where: str) -> dict[str, str]:
        if self._is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self._fail(
                node,
                where,
                f"expected a mapping of key: value, got {self._node_kind(node)}",
                "write e.g. labels: {zone: a, rack: r1}",
            )
        labels: dict[str, str] = {}
        for key, (key_node, value_node) in self._pairs(node, where).items():
            if not isinstance(value_node, yaml.ScalarNode):
                raise self._fail(
                    value_node,
                    f"{where} {key}",
                    f"expected a single value, got {self._node_kind(value_node)}",
                    "give a string or number, e.g. zone: a",
                )
            if self._is_null(value_node):
                raise self._fail(
                    value_node,
                    f"{where} {key}",
                    "has no value",
                    "give it a value or remove the label",
                )
            text = value_node.value  # the scalar as written: 'rack: 01' stays '01'
            problem = _check_label(key, text)
            if problem:
                raise self._fail(value_node, f"{where} {key}", problem[0], problem[1])
            labels[key] = text
        return labels

    def _check_mesh(self, hosts_key: _YamlNode, nodes: list[Node]) -> None:
        where = "hosts"
        if len(nodes) < 2:
            raise self._fail(
                hosts_key,
                where,
                f"a mesh needs at least 2 hosts, got {len(nodes)}",
                "add another host",
            )
        roles = ", ".join(sorted({n.role for n in nodes}))
        if not any(n.can_send for n in nodes):
            raise self._fail(
                hosts_key,
                where,
                f"no host can send (roles: {roles})",
                "give at least one host role 'client' or 'both'",
            )
        if not any(n.can_receive for n in nodes):
            raise self._fail(
                hosts_key,
                where,
                f"no host can receive (roles: {roles})",
                "give at least one host role 'server' or 'both'",
            )
        if not any(
            s is not r for s in nodes if s.can_send for r in nodes if r.can_receive
        ):
            raise self._fail(  # pragma: no cover - unreachable with the current roles
                hosts_key,
                where,
                "the only sender is also the only receiver",
                "add a host that can send or receive to another",
            )
