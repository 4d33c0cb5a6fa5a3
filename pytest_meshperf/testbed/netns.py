"""A real multi-host testbed on one Linux machine: network namespaces + sshd.

``NetnsTestbed(parse_spec("netns:4,rate=200mbit"), workdir).up()`` builds::

    root namespace (pytest, ssh)        switch namespace <tag>-sw
      <tag>-h 198.18.X.254/24  ----veth----  <tag>-hs --+
                                                        |  bridge <tag>-br
    namespace <tag>-n1: eth0 198.18.X.1/24 --veth-- <tag>-n1 --+
    namespace <tag>-n2: eth0 198.18.X.2/24 --veth-- <tag>-n2 --+
    ...

``<tag>`` is ``mp`` plus four random hex digits (``mp3f2a``), so two testbeds
on one machine never collide; ``198.18.X.0/24`` is a free /24 of the
benchmarking range 198.18.0.0/15 (checked against the root namespace's routes).
Every node runs its own sshd (own host key, own hostname ``nodeI`` through a
UTS namespace) listening on its address, port 22, root login with a generated
ed25519 key only.  The workdir receives::

    hosts.yaml      meshperf inventory (load_cluster accepts it)
    ssh_config      one Host entry per node (alias = node name)
    known_hosts     every node's host key, by address
    id_ed25519      the user key (0600) and id_ed25519.pub
    authorized_keys the user public key (every sshd's AuthorizedKeysFile)
    nodeI/          sshd_config, host key, sshd.log of node I

Nodes are network views, not machines: they share the file system and the PID
space with the machine.  A node's egress (its ``eth0``) can be shaped, as a
whole and per destination (``shaping.py``: tbf, or htb with per-link
classes); ``tc netem`` is not available on these kernels.

``down()`` kills every process inside the testbed's namespaces (sshd, sessions,
anything started with :meth:`NetnsTestbed.exec`/:meth:`NetnsTestbed.popen`),
deletes the root veth (and with it the route) and the namespaces.  It is
idempotent, runs after a failed ``up()`` (also on Ctrl-C) and from an
``atexit`` safety net.  The root veth's alias records the owning process
(pid and start time): :func:`cleanup_stale` removes testbeds whose owner died
without tearing down (SIGKILL), and never touches those of live processes.

Needs root, iproute2 (``ip``, ``tc``), ``unshare`` and OpenSSH (``sshd``,
``ssh-keygen``).  Traffic only ever goes to the testbed's own /24.
"""

from __future__ import annotations

import atexit
import errno
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

import yaml

from ..errors import InventoryError, MeshperfError, UsageError
from ..inventory import Labels
from .shaping import shaping_commands

__all__ = [
    "MAX_NODES",
    "MIN_NODES",
    "TESTBED_RANGE",
    "NetnsTestbed",
    "TestbedError",
    "TestbedNode",
    "TestbedSpec",
    "TestbedUnavailableError",
    "cleanup_stale",
    "parse_spec",
    "stale_testbeds",
    "unavailable_reason",
]

log = logging.getLogger("meshperf.testbed")

MIN_NODES = 2
MAX_NODES = 64
#: Every address the testbed uses lies in this benchmarking range (RFC 2544).
TESTBED_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
HOST_OCTET = 254  # the root namespace's address in the testbed /24
SSH_PORT = 22

# bounds of every wait (seconds unless told)
CMD_TIMEOUT = 30.0  # one ip / tc / ssh-keygen command
SSHD_READY_TIMEOUT = 20.0  # all sshds of one up() answering on port 22
SSHD_STOP_TIMEOUT = 5.0
PORT_POLL_INTERVAL = 0.02
TERM_GRACE = 1.5  # SIGTERM -> SIGKILL
KILL_WAIT = 3.0
KILL_ROUNDS = 5  # scans of the namespaces' processes in down()
OWNER_ALIAS = "meshperf-testbed"  # alias of the root veth: owner pid and start time
SUBNET_ATTEMPTS = 10
TAG_ATTEMPTS = 20
EXEC_TIMEOUT = 300.0  # default timeout of exec() (pass timeout=None for none)

SPEC_FORMS = (
    "accepted forms: netns:N, netns:N,rate=200mbit (every node), "
    "netns:N,rate.nodeK=200mbit (one node), netns:N,rate.nodeI->nodeJ=100mbit (one link), "
    f"with {MIN_NODES} <= N <= {MAX_NODES}"
)
_RATE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps|tbps)")
_RATE_UNITS = "bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps, tbps"
_UNSAFE_PATH_CHARS = re.compile(r"[\s\"'#%\\]")


class TestbedError(MeshperfError):
    """The testbed could not be built, changed or torn down."""

    __test__ = False  # not a pytest test class


class TestbedUnavailableError(TestbedError, UsageError):
    """This machine cannot run a netns testbed (not root, tools missing)."""

    __test__ = False


# --------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------


def _spec_error(spec: str, problem: str) -> InventoryError:
    return InventoryError(f"--cluster {spec!r}: {problem}; {SPEC_FORMS}")


def _node_names(n: int) -> list[str]:
    return [f"node{i}" for i in range(1, n + 1)]


def _check_rate(rate: Any) -> str | None:
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
            problem = _check_rate(rate)
            if problem:
                raise _spec_error(spec, problem)
            rates[name] = rate
        links: dict[str, str] = {}
        for link, rate in dict(self.link_rates or {}).items():
            src, arrow, dst = str(link).partition("->")
            if not arrow or src not in names or dst not in names or src == dst:
                raise _spec_error(spec, f"link {link!r} is not nodeI->nodeJ of two nodes node1..node{self.nodes}")
            problem = _check_rate(rate)
            if problem:
                raise _spec_error(spec, problem)
            links[link] = rate
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
    src, _, dst = link.partition("->")
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
        problem = _check_rate(value)
        if key == "rate":
            if problem:
                raise _spec_error(text, problem)
            default_rate = value
        elif key.startswith("rate.") and "->" in key:
            link = key[len("rate."):]
            src, _, dst = (part.strip() for part in link.partition("->"))
            for name in (src, dst):
                if name not in names:
                    raise _spec_error(text, f"{key!r}: no node {name!r} (nodes are node1..node{n})")
            if src == dst:
                raise _spec_error(text, f"{key!r}: a link joins two different nodes")
            if problem:
                raise _spec_error(text, problem)
            link_rates[f"{src}->{dst}"] = value
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


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _which(name: str) -> str | None:
    path = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin:/usr/bin:/bin"
    return shutil.which(name, path=path)


_TOOLS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "unshare": "util-linux",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}


def unavailable_reason() -> str | None:
    """None when this machine can build a netns testbed, else why not (one line)."""
    if not hasattr(os, "geteuid") or not os.path.isdir("/proc/self/ns"):
        return "netns testbed needs Linux network namespaces; use --cluster local:N"
    uid = os.geteuid()
    if uid != 0:
        return f"netns testbed needs root (running as uid {uid}); run as root or use --cluster local:N"
    missing = [f"{tool} ({pkg})" for tool, pkg in _TOOLS.items() if _which(tool) is None]
    if missing:
        return f"netns testbed needs {', '.join(missing)}: not found; install them or use --cluster local:N"
    try:
        proc = subprocess.run(
            [_which("ip"), "netns", "list"], check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"netns testbed: 'ip netns list' failed ({exc}); use --cluster local:N"
    if proc.returncode != 0:
        return f"netns testbed: 'ip netns list' failed ({_first_line(proc.stderr)}); use --cluster local:N"
    try:
        proc = subprocess.run(
            [_which("unshare"), "--net", "true"], check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"netns testbed cannot create network namespaces ({exc}); use --cluster local:N"
    if proc.returncode != 0:
        return (
            "netns testbed cannot create network namespaces "
            f"({_first_line(proc.stderr)}); it needs CAP_SYS_ADMIN; use --cluster local:N"
        )
    return None


def _first_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else "no error output"


def _tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, errors="replace") as fh:
            text = fh.read()[-4000:]
    except OSError:
        return "no log"
    picked = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(picked) if picked else "empty log"


def _proc_gone(pid: int) -> bool:
    """True when ``pid`` no longer exists or is a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    # state is the field after the ")" that closes comm
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state in (b"Z", b"X")


def _ns_pids(netns_names: Sequence[str]) -> dict[str, list[int]]:
    """Processes whose network namespace is one of ``netns_names`` (like ``ip netns pids``)."""
    wanted: dict[tuple[int, int], str] = {}
    for name in netns_names:
        try:
            st = os.stat(f"/run/netns/{name}")
        except OSError:
            continue
        wanted[(st.st_dev, st.st_ino)] = name
    found: dict[str, list[int]] = {name: [] for name in wanted.values()}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        name = wanted.get((st.st_dev, st.st_ino))
        if name is not None:
            found[name].append(int(entry))
    return found


def _kill_all(pids: Sequence[int], grace: float = TERM_GRACE) -> list[int]:
    """SIGTERM, then SIGKILL what is left after ``grace`` s; the pids still alive after that."""
    alive = [p for p in pids if not _proc_gone(p)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)):
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except OSError as exc:
                log.debug("kill %s %d: %s", sig.name, pid, exc)
        deadline = time.monotonic() + wait
        for _ in range(int(wait / 0.01) + 1):
            alive = [p for p in alive if not _proc_gone(p)]
            if not alive or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
    return alive


def _port_answers(address: str, port: int = SSH_PORT, timeout: float = 0.5) -> bool:
    _check_own_address(address)
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _check_own_address(address: str) -> None:
    # the hard rule: this module only ever talks to the benchmarking range
    if ipaddress.IPv4Address(address) not in TESTBED_RANGE:  # pragma: no cover - defensive
        raise TestbedError(f"refusing to connect to {address}: outside {TESTBED_RANGE}")


# --------------------------------------------------------------------------
# the testbed
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TestbedNode:
    """One namespaced host: ``name`` (node1..), ``address`` and its namespace's name."""

    __test__ = False

    name: str
    address: str
    netns: str


NodeRef = Union[str, TestbedNode]


class NetnsTestbed:
    """N hosts in network namespaces on one bridge, each with a real sshd.

    Use as a context manager (``with NetnsTestbed(spec, workdir) as tb:``)
    or call :meth:`up` / :meth:`down` yourself.
    """

    __test__ = False

    def __init__(self, spec: TestbedSpec, workdir: str | os.PathLike) -> None:
        if not isinstance(spec, TestbedSpec):
            raise TypeError(f"spec must be a TestbedSpec (see parse_spec), got {type(spec).__name__}")
        self.spec = spec
        self.workdir = os.path.abspath(os.fspath(workdir))
        self.tag: str | None = None
        self.subnet: ipaddress.IPv4Network | None = None
        self.host_address: str | None = None  # the root namespace's address
        self.nodes: list[TestbedNode] = []
        self.hosts_yaml = os.path.join(self.workdir, "hosts.yaml")
        self.ssh_config = os.path.join(self.workdir, "ssh_config")
        self.known_hosts = os.path.join(self.workdir, "known_hosts")
        self.user_key = os.path.join(self.workdir, "id_ed25519")
        self.authorized_keys = os.path.join(self.workdir, "authorized_keys")
        self._by_name: dict[str, TestbedNode] = {}
        self._sshd: dict[str, subprocess.Popen] = {}
        self._rates: dict[str, str] = {}
        self._link_rates: dict[tuple[str, str], str] = {}
        self._atexit_registered = False
        self._is_up = False
        self._tools: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    # -- names --------------------------------------------------------------

    @property
    def switch_netns(self) -> str:
        return f"{self._need_tag()}-sw"

    @property
    def bridge(self) -> str:
        return f"{self._need_tag()}-br"

    @property
    def host_veth(self) -> str:
        """The root namespace's end of the veth into the switch."""
        return f"{self._need_tag()}-h"

    @property
    def is_up(self) -> bool:
        return self._is_up

    @property
    def rates(self) -> Mapping[str, str]:
        """Current egress rate of every shaped node."""
        return MappingProxyType(dict(self._rates))

    @property
    def link_rates(self) -> Mapping[str, str]:
        """Current rate of every shaped link, by ``"node1->node2"``."""
        return MappingProxyType({f"{s}->{d}": r for (s, d), r in self._link_rates.items()})

    def _need_tag(self) -> str:
        if self.tag is None:
            raise TestbedError("netns testbed: not built yet; call up() first")
        return self.tag

    def _port_name(self, index: int) -> str:
        return f"{self._need_tag()}-n{index}"

    def node(self, node: NodeRef) -> TestbedNode:
        """The node called ``node`` (a name or a :class:`TestbedNode`)."""
        name = node.name if isinstance(node, TestbedNode) else node
        try:
            return self._by_name[name]
        except KeyError:
            names = ", ".join(self._by_name) or "none (not up)"
            raise TestbedError(f"netns testbed {self.tag}: no node {name!r}; nodes are: {names}") from None

    def _node_dir(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def __repr__(self) -> str:
        state = "up" if self._is_up else "down"
        return f"<NetnsTestbed {self.spec} tag={self.tag} subnet={self.subnet} {state}>"

    # -- context manager ------------------------------------------------------

    def __enter__(self) -> NetnsTestbed:  # noqa: PYI034 - Self needs Python 3.11
        return self.up()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.down()
            return
        try:
            self.down()
        except Exception as err:  # noqa: BLE001 - do not hide the exception that is propagating
            log.error("netns testbed %s: teardown after %s failed: %s", self.tag, exc_type.__name__, err)

    # -- commands -------------------------------------------------------------

    def _run(self, argv: Sequence[str], what: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        log.debug("testbed %s: %s", self.tag, " ".join(argv) if input is None else f"{' '.join(argv)} <<{input.count(chr(10))} lines")
        try:
            proc = subprocess.run(
                list(argv), check=False, input=input, capture_output=True, text=True, timeout=CMD_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise TestbedError(f"netns testbed {self.tag}: {what}: '{argv[0]}' did not finish within {CMD_TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise TestbedError(f"netns testbed {self.tag}: {what}: cannot run {argv[0]}: {exc}") from None
        if check and proc.returncode != 0:
            raise TestbedError(
                f"netns testbed {self.tag}: {what} failed (exit {proc.returncode}): {_first_line(proc.stderr or proc.stdout)}"
            )
        return proc

    def _ip_batch(self, netns: str | None, lines: Sequence[str], what: str) -> subprocess.CompletedProcess:
        argv = [self._tools["ip"]]
        if netns:
            argv += ["-n", netns]
        argv += ["-batch", "-"]
        return self._run(argv, what, input="".join(line + "\n" for line in lines))

    def _run_parallel(self, jobs: Sequence[tuple[str, Sequence[str], str | None]]) -> None:
        """Run (what, argv, stdin) jobs at once; raise on the first failure (all are awaited)."""
        procs = []
        failure: str | None = None
        for what, argv, stdin in jobs:
            log.debug("testbed %s: %s", self.tag, " ".join(argv))
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            except OSError as exc:
                failure = failure or f"{what}: cannot run {argv[0]}: {exc}"
                break
            procs.append((what, proc, stdin))
        deadline = time.monotonic() + CMD_TIMEOUT
        for what, proc, stdin in procs:
            try:
                _, err = proc.communicate(stdin, timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                failure = failure or f"{what}: did not finish within {CMD_TIMEOUT:.0f} s"
                continue
            if proc.returncode != 0:
                failure = failure or f"{what} failed (exit {proc.returncode}): {_first_line(err)}"
        if failure:
            raise TestbedError(f"netns testbed {self.tag}: {failure}")

    # -- up -----------------------------------------------------------------------

    def up(self) -> NetnsTestbed:
        """Build the testbed; on any failure (or Ctrl-C) tear down what was built, then raise."""
        if self._is_up:
            return self
        reason = unavailable_reason()
        if reason:
            raise TestbedUnavailableError(reason)
        self._tools = {tool: _which(tool) for tool in _TOOLS}  # type: ignore[misc]
        bad = _UNSAFE_PATH_CHARS.search(self.workdir)
        if bad:
            raise TestbedError(
                f"netns testbed: workdir {self.workdir!r} contains {bad.group()!r}; "
                "use a path without spaces, quotes, '#', '%' or backslashes (it goes into sshd_config)"
            )
        started = time.monotonic()
        if not self._atexit_registered:
            atexit.register(self._atexit_down)
            self._atexit_registered = True
        try:
            self._build()
        except BaseException as exc:
            log.debug("testbed %s: up() failed (%s: %s); tearing down", self.tag, type(exc).__name__, exc)
            try:
                self.down()
            except Exception as err:  # noqa: BLE001 - the original error matters more
                log.error("netns testbed %s: teardown after failed up() failed: %s", self.tag, err)
            raise
        self._is_up = True
        self.timings["up"] = time.monotonic() - started
        log.debug("testbed %s: up in %.3f s (%d nodes, %s)", self.tag, self.timings["up"], self.spec.nodes, self.subnet)
        return self

    def _step(self, name: str, started: float) -> float:
        now = time.monotonic()
        self.timings[name] = now - started
        log.debug("testbed %s: %s took %.3f s", self.tag, name, now - started)
        return now

    def _build(self) -> None:
        t = time.monotonic()
        self.tag = self.subnet = self.host_address = None  # a second up() after down(): all new
        self.nodes, self._by_name = [], {}
        self._rates.clear()
        self._link_rates.clear()
        os.makedirs(self.workdir, exist_ok=True)
        names = self.spec.names
        for name in names:
            os.makedirs(self._node_dir(name), exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self._generate_keys(names)
        t = self._step("keys", t)

        self.tag = self._new_tag()
        log.debug("testbed %s: building %s in %s", self.tag, self.spec, self.workdir)
        tag = self.tag
        # namespaces, and the root namespace's veth into the switch
        self._ip_batch(
            None,
            [f"netns add {self.switch_netns}"]
            + [f"netns add {tag}-n{i}" for i in range(1, len(names) + 1)]
            + [
                f"link add {self.host_veth} type veth peer name {tag}-hs netns {self.switch_netns}",
                # who owns the testbed: cleanup_stale() removes it when that process is gone
                f"link set {self.host_veth} alias {_owner_alias()}",
            ],
            "creating namespaces",
        )
        t = self._step("namespaces", t)
        self._claim_subnet()
        t = self._step("subnet", t)
        assert self.subnet is not None
        hosts = list(self.subnet.hosts())
        self.nodes = [TestbedNode(name, str(hosts[i]), f"{tag}-n{i + 1}") for i, name in enumerate(names)]
        self._by_name = {n.name: n for n in self.nodes}
        prefix = self.subnet.prefixlen
        # each node: lo, eth0 with its address; the peer goes straight into the switch
        self._run_parallel(
            [
                (
                    f"configuring {node.name}",
                    [self._tools["ip"], "-n", node.netns, "-batch", "-"],
                    "".join(
                        line + "\n"
                        for line in (
                            "link set lo up",
                            f"link add eth0 type veth peer name {self._port_name(i)} netns {self.switch_netns}",
                            f"addr add {node.address}/{prefix} dev eth0",
                            "link set eth0 up",
                        )
                    ),
                )
                for i, node in enumerate(self.nodes, 1)
            ]
        )
        t = self._step("nodes", t)
        ports = [f"{tag}-hs"] + [self._port_name(i) for i in range(1, len(names) + 1)]
        self._ip_batch(
            self.switch_netns,
            ["link set lo up", f"link add {self.bridge} type bridge stp_state 0", f"link set {self.bridge} up"]
            + [f"link set {port} master {self.bridge} up" for port in ports],
            "building the switch",
        )
        t = self._step("switch", t)
        for name, rate in self.spec.rates.items():
            self._rates[name] = rate
        for link, rate in self.spec.link_rates.items():
            src, _, dst = link.partition("->")
            self._link_rates[(src, dst)] = rate
        for name in {*self._rates, *(src for src, _ in self._link_rates)}:
            self._apply_shaping(self.node(name))
        t = self._step("shaping", t)
        self._write_ssh_files()
        self._start_sshds([n.name for n in self.nodes])
        t = self._step("sshd", t)
        self._write_inventory()

    def _generate_keys(self, names: Sequence[str]) -> None:
        keygen = self._tools["ssh-keygen"]
        paths = [self.user_key] + [self._host_key(name) for name in names]
        for path in paths:
            for stale in (path, path + ".pub"):
                if os.path.exists(stale):
                    os.unlink(stale)
        jobs = [("generating the user key", [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "meshperf-testbed", "-f", self.user_key], None)]
        jobs += [
            (f"generating {name}'s host key", [keygen, "-q", "-t", "ed25519", "-N", "", "-C", f"{name}", "-f", self._host_key(name)], None)
            for name in names
        ]
        self._run_parallel(jobs)
        for path in paths:
            os.chmod(path, 0o600)

    def _host_key(self, name: str) -> str:
        return os.path.join(self._node_dir(name), "ssh_host_ed25519_key")

    def _new_tag(self) -> str:
        for _ in range(TAG_ATTEMPTS):
            tag = "mp" + secrets.token_hex(2)
            taken = any(entry.startswith(tag + "-") for entry in _listdir("/run/netns")) or any(
                entry.startswith(tag + "-") for entry in _listdir("/sys/class/net")
            )
            if not taken:
                return tag
        raise TestbedError(f"netns testbed: no free name tag after {TAG_ATTEMPTS} attempts; remove stale 'mp*' namespaces")

    def _root_routes(self) -> list[tuple[ipaddress.IPv4Network, str]]:
        proc = self._run([self._tools["ip"], "-j", "-4", "route", "show", "table", "all"], "reading routes")
        routes = []
        for route in json.loads(proc.stdout or "[]"):
            dst = route.get("dst", "")
            if dst in ("default", "0.0.0.0/0", ""):
                continue
            try:
                routes.append((ipaddress.IPv4Network(dst, strict=False), route.get("dev", "")))
            except ValueError:
                continue
        return routes

    def _claim_subnet(self) -> None:
        """Pick a /24 of 198.18.0.0/15 no root route overlaps; verify nobody took it meanwhile."""
        rng = secrets.SystemRandom()
        for attempt in range(1, SUBNET_ATTEMPTS + 1):
            used = [net for net, _ in self._root_routes() if net.overlaps(TESTBED_RANGE)]
            free = [net for net in TESTBED_RANGE.subnets(new_prefix=24) if not any(net.overlaps(u) for u in used)]
            if not free:
                raise TestbedError(
                    f"netns testbed {self.tag}: every /24 of {TESTBED_RANGE} is routed already; remove stale testbeds"
                )
            net = rng.choice(free)
            host = f"{net.network_address + HOST_OCTET}/{net.prefixlen}"
            self._ip_batch(None, [f"addr add {host} dev {self.host_veth}", f"link set {self.host_veth} up"], "addressing the root veth")
            # another testbed may have picked the same /24 at the same moment: both back off
            others = [dev for dst, dev in self._root_routes() if dst.overlaps(net) and dev != self.host_veth]
            if not others:
                self.subnet = net
                self.host_address = str(net.network_address + HOST_OCTET)
                log.debug("testbed %s: subnet %s (attempt %d)", self.tag, net, attempt)
                return
            log.debug("testbed %s: %s also routed via %s; trying another", self.tag, net, ", ".join(others))
            self._run([self._tools["ip"], "addr", "del", host, "dev", self.host_veth], "releasing a subnet", check=False)
            time.sleep(rng.uniform(0.01, 0.1))
        raise TestbedError(f"netns testbed {self.tag}: no uncontested /24 in {TESTBED_RANGE} after {SUBNET_ATTEMPTS} attempts")

    # -- sshd ---------------------------------------------------------------------

    def _sshd_config_path(self, name: str) -> str:
        return os.path.join(self._node_dir(name), "sshd_config")

    def _write_ssh_files(self) -> None:
        with open(self.user_key + ".pub") as fh:
            pub = fh.read().strip()
        _write(self.authorized_keys, pub + "\n", 0o600)
        sftp = "/usr/lib/openssh/sftp-server"
        if not os.path.exists(sftp):
            sftp = "internal-sftp"
        for node in self.nodes:
            d = self._node_dir(node.name)
            config = "\n".join(
                [
                    f"# meshperf netns testbed {self.tag}, {node.name} ({node.netns})",
                    f"Port {SSH_PORT}",
                    "AddressFamily inet",
                    f"ListenAddress {node.address}",
                    f"HostKey {self._host_key(node.name)}",
                    f"PidFile {os.path.join(d, 'sshd.pid')}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "UsePAM no",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "AllowTcpForwarding yes",
                    "AllowAgentForwarding no",
                    "X11Forwarding no",
                    "PermitTunnel no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "UseDNS no",
                    "MaxStartups 128",
                    "MaxSessions 64",
                    "LoginGraceTime 30",
                    "LogLevel INFO",
                    f"Subsystem sftp {sftp}",
                    "",
                ]
            )
            _write(self._sshd_config_path(node.name), config, 0o600)

    def _start_sshds(self, names: Sequence[str]) -> None:
        sshd = self._tools["sshd"]
        for name in names:
            node = self.node(name)
            logfile = os.path.join(self._node_dir(name), "sshd.log")
            # own UTS namespace: the node's hostname; -D: stays our child, so an early exit is seen at once
            argv = [
                self._tools["ip"], "netns", "exec", node.netns,
                self._tools["unshare"], "--uts",
                "/bin/sh", "-c", 'hostname "$1" && exec "$2" -D -f "$3" -E "$4"',
                "sh", name, sshd, self._sshd_config_path(name), logfile,
            ]  # fmt: skip
            log.debug("testbed %s: starting sshd of %s: %s", self.tag, name, " ".join(argv))
            with open(logfile, "ab") as err:
                self._sshd[name] = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
                )
        self._wait_sshd(names)

    def _wait_sshd(self, names: Sequence[str]) -> None:
        pending = list(names)
        deadline = time.monotonic() + SSHD_READY_TIMEOUT
        for _ in range(int(SSHD_READY_TIMEOUT / PORT_POLL_INTERVAL) + 1):
            still = []
            for name in pending:
                proc = self._sshd[name]
                if proc.poll() is not None:
                    logfile = os.path.join(self._node_dir(name), "sshd.log")
                    raise TestbedError(
                        f"netns testbed {self.tag}: sshd of {name} exited with {proc.returncode}: {_tail(logfile)}"
                    )
                if not _port_answers(self.node(name).address, timeout=0.2):
                    still.append(name)
            pending = still
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(PORT_POLL_INTERVAL)
        if pending:
            raise TestbedError(
                f"netns testbed {self.tag}: sshd of {', '.join(pending)} did not answer on port {SSH_PORT} "
                f"within {SSHD_READY_TIMEOUT:.0f} s (logs in {self.workdir}/NODE/sshd.log)"
            )

    def stop_sshd(self, node: NodeRef, sessions: bool = True) -> None:
        """Stop the node's sshd (the host becomes unreachable over SSH).

        With ``sessions`` (the default) its open SSH sessions end too;
        other processes in the namespace keep running.
        """
        n = self.node(node)
        proc = self._sshd.pop(n.name, None)
        pids = [proc.pid] if proc is not None and proc.poll() is None else []
        if sessions:
            for pid in _ns_pids([n.netns]).get(n.netns, []):
                if _comm(pid) == "sshd" and pid not in pids:
                    pids.append(pid)
        log.debug("testbed %s: stopping sshd of %s (pids %s)", self.tag, n.name, pids)
        left = _kill_all(pids)
        if proc is not None:
            _reap(proc)
        if left:
            raise TestbedError(f"netns testbed {self.tag}: sshd processes {left} of {n.name} survived SIGKILL")
        for _ in range(int(SSHD_STOP_TIMEOUT / PORT_POLL_INTERVAL) + 1):
            if not _port_answers(n.address, timeout=0.2):
                return
            time.sleep(PORT_POLL_INTERVAL)
        raise TestbedError(f"netns testbed {self.tag}: port {SSH_PORT} of {n.name} still answers after stopping sshd")

    def start_sshd(self, node: NodeRef) -> None:
        """(Re)start the node's sshd and wait until port 22 answers; no-op when it runs."""
        n = self.node(node)
        proc = self._sshd.get(n.name)
        if proc is not None and proc.poll() is None:
            self._wait_sshd([n.name])
            return
        self._start_sshds([n.name])

    def regenerate_host_key(self, node: NodeRef, update_known_hosts: bool = False) -> str:
        """Give the node a new host key and restart its sshd; returns the new public key line.

        ``known_hosts`` keeps the old key unless ``update_known_hosts``, so a
        strict client sees "REMOTE HOST IDENTIFICATION HAS CHANGED".
        """
        n = self.node(node)
        self.stop_sshd(n)
        path = self._host_key(n.name)
        for stale in (path, path + ".pub"):
            if os.path.exists(stale):
                os.unlink(stale)
        self._run([self._tools["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", n.name, "-f", path], f"regenerating {n.name}'s host key")
        os.chmod(path, 0o600)
        self.start_sshd(n)
        if update_known_hosts:
            self._write_known_hosts()
        with open(path + ".pub") as fh:
            return fh.read().strip()

    def trust_host_keys(self) -> None:
        """Rewrite ``known_hosts`` with every node's current host key."""
        self._write_known_hosts()

    # -- files --------------------------------------------------------------------

    def _write_known_hosts(self) -> None:
        lines = []
        for node in self.nodes:
            with open(self._host_key(node.name) + ".pub") as fh:
                keytype, key = fh.read().split()[:2]
            lines.append(f"{node.address} {keytype} {key}\n")
        _write(self.known_hosts, "".join(lines), 0o644)

    def _write_inventory(self) -> None:
        self._write_known_hosts()
        header = f"# meshperf netns testbed {self.tag}: {self.spec}, {self.subnet}\n# ssh -F {self.ssh_config} node1\n"
        entries = [header]
        for node in self.nodes:
            entries.append(
                f"Host {node.name}\n"
                f"    HostName {node.address}\n"
                f"    Port {SSH_PORT}\n"
                "    User root\n"
                f"    IdentityFile {self.user_key}\n"
                "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                "    BatchMode yes\n"
            )
        _write(self.ssh_config, "\n".join(entries), 0o644)
        inventory = {
            "defaults": {"role": "both", "ssh_user": "root", "ssh_port": SSH_PORT, "ssh_key": self.user_key},
            "hosts": [{"name": n.name, "address": n.address, "labels": {"netns": n.netns}} for n in self.nodes],
        }
        header = (
            f"# meshperf netns testbed {self.tag} ({self.spec}); host keys: {self.known_hosts}\n"
            "# written by pytest_meshperf.testbed; gone with the testbed\n"
        )
        _write(self.hosts_yaml, header + yaml.safe_dump(inventory, sort_keys=False), 0o644)

    # -- running things on nodes --------------------------------------------------

    def _netns_argv(self, node: NodeRef, argv: Sequence[str]) -> list[str]:
        if isinstance(argv, (str, bytes)) or not all(isinstance(a, (str, os.PathLike)) for a in argv):
            raise TypeError("argv must be a list of strings (no shell string)")
        if not argv:
            raise ValueError("argv is empty")
        n = self.node(node)
        return [self._tools.get("ip") or "ip", "netns", "exec", n.netns, *map(os.fspath, argv)]

    def exec(self, node: NodeRef, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
        """``subprocess.run(argv, **kw)`` inside the node's network namespace.

        Only the network is the node's (hostname, files and PIDs are the
        machine's).  ``timeout`` defaults to 300 s (pass ``timeout=None`` to wait
        without bound).
        """
        kw.setdefault("timeout", EXEC_TIMEOUT)
        full = self._netns_argv(node, argv)
        log.debug("testbed %s: exec %s", self.tag, " ".join(full))
        return subprocess.run(full, **kw)  # noqa: PLW1510 - the caller decides

    def popen(self, node: NodeRef, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """``subprocess.Popen(argv, **kw)`` inside the node's network namespace.

        :meth:`down` kills whatever is still running in the namespace; wait for
        or kill the process yourself to reap it earlier.
        """
        full = self._netns_argv(node, argv)
        log.debug("testbed %s: popen %s", self.tag, " ".join(full))
        return subprocess.Popen(full, **kw)

    # -- shaping ------------------------------------------------------------------

    def shape(self, node: NodeRef, rate: str) -> None:
        """Limit the node's egress (eth0) to ``rate``: tbf (burst 256kb, latency 20ms), or htb with link rates."""
        n = self.node(node)
        problem = _check_rate(rate)
        if problem:
            raise TestbedError(f"netns testbed {self.tag}: cannot shape {n.name}: {problem}")
        self._rates[n.name] = rate
        self._apply_shaping(n)

    def shape_link(self, src: NodeRef, dst: NodeRef, rate: str) -> None:
        """Limit what ``src`` sends to ``dst`` to ``rate`` (htb on src's eth0, within src's own rate)."""
        s, d = self.node(src), self.node(dst)
        problem = _check_rate(rate)
        if problem or s.name == d.name:
            problem = problem or "a link joins two different nodes"
            raise TestbedError(f"netns testbed {self.tag}: cannot shape {s.name}->{d.name}: {problem}")
        self._link_rates[(s.name, d.name)] = rate
        self._apply_shaping(s)

    def _apply_shaping(self, n: TestbedNode) -> None:
        links = {self.node(d).address: r for (s, d), r in self._link_rates.items() if s == n.name}
        commands = shaping_commands(self._tools["tc"], n.netns, self._rates.get(n.name), links)
        if links:  # filters and classes are added, not replaced: start from an empty root
            self._delete_root_qdisc(n)
        for argv in commands:
            self._run(argv, f"shaping {n.name} ({' '.join(argv[3:])})")

    def unshape(self, node: NodeRef) -> None:
        """Remove the node's egress shaping, its links' too (no-op when unshaped)."""
        n = self.node(node)
        self._delete_root_qdisc(n)
        self._rates.pop(n.name, None)
        for link in [link for link in self._link_rates if link[0] == n.name]:
            del self._link_rates[link]

    def _delete_root_qdisc(self, n: TestbedNode) -> None:
        proc = self._run([self._tools["tc"], "-n", n.netns, "qdisc", "del", "dev", "eth0", "root"], f"unshaping {n.name}", check=False)
        if proc.returncode != 0 and "No such file" not in proc.stderr and "Cannot delete qdisc with handle of zero" not in proc.stderr:
            raise TestbedError(f"netns testbed {self.tag}: unshaping {n.name} failed: {_first_line(proc.stderr)}")

    # -- down -----------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """What of this testbed still exists on the machine (empty after down())."""
        if self.tag is None:
            return []
        prefix = self.tag + "-"
        found = [f"namespace {e}" for e in _listdir("/run/netns") if e.startswith(prefix)]
        found += [f"interface {e}" for e in _listdir("/sys/class/net") if e.startswith(prefix)]
        found += [f"sshd {n}" for n, p in self._sshd.items() if p.poll() is None]
        return found

    def down(self) -> None:
        """Remove everything: processes in the namespaces, root veth, namespaces. Idempotent."""
        started = time.monotonic()
        self._is_up = False
        if self.tag is None:  # nothing was built
            self._sshd.clear()
            self._unregister_atexit()
            return
        extra = [p.pid for p in self._sshd.values() if p.poll() is None]
        problems = _remove_testbed(self.tag, extra_pids=extra)
        for proc in self._sshd.values():
            _reap(proc)
        self._sshd.clear()
        self.timings["down"] = time.monotonic() - started
        if problems:
            raise TestbedError(f"netns testbed {self.tag}: teardown incomplete: {'; '.join(problems)}")
        log.debug("testbed %s: down in %.3f s", self.tag, self.timings["down"])
        self._unregister_atexit()

    def _unregister_atexit(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self._atexit_down)
            self._atexit_registered = False

    def _atexit_down(self) -> None:
        try:
            self.down()
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - last resort at interpreter exit
            log.error("netns testbed %s: teardown at exit failed: %s", self.tag, exc)


def _remove_testbed(tag: str, extra_pids: Sequence[int] = ()) -> list[str]:
    """Kill every process in the ``tag`` namespaces, delete its root veth and namespaces; the problems left."""
    ip = _which("ip") or "ip"
    prefix = tag + "-"
    namespaces = sorted(e for e in _listdir("/run/netns") if e.startswith(prefix))
    left: list[int] = []
    # rescan: a process may fork (sshd accepting, a shell starting a command) while we kill
    for _ in range(KILL_ROUNDS):
        pids = [p for ps in _ns_pids(namespaces).values() for p in ps if not _proc_gone(p)]
        pids += [p for p in extra_pids if p not in pids and not _proc_gone(p)]
        if not pids:
            break
        log.debug("testbed %s: killing %d processes", tag, len(pids))
        left = _kill_all(pids)
    problems = []
    if left:
        problems.append(f"processes {left} survived SIGKILL")
    veth = f"{tag}-h"
    if os.path.exists(f"/sys/class/net/{veth}"):
        log.debug("testbed %s: ip link del %s", tag, veth)
        proc = subprocess.run([ip, "link", "del", veth], check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT)
        if proc.returncode != 0 and os.path.exists(f"/sys/class/net/{veth}"):
            problems.append(f"ip link del {veth}: {_first_line(proc.stderr)}")
    if namespaces:
        log.debug("testbed %s: deleting %d namespaces", tag, len(namespaces))
        subprocess.run(
            [ip, "-force", "-batch", "-"],
            input="".join(f"netns del {ns}\n" for ns in namespaces),
            check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT,
        )  # fmt: skip
    remaining = [e for e in _listdir("/run/netns") if e.startswith(prefix)]
    remaining += [e for e in _listdir("/sys/class/net") if e.startswith(prefix)]
    if remaining:
        problems.append("still there: " + ", ".join(sorted(remaining)))
    return problems


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()  # field 22: starttime


def _owner_alias() -> str:
    return f"{OWNER_ALIAS}:pid={os.getpid()}:start={_start_time(os.getpid())}"


def stale_testbeds() -> list[str]:
    """Tags of testbeds whose owning process is gone (killed before it could tear down)."""
    ip = _which("ip") or "ip"
    try:
        proc = subprocess.run([ip, "-j", "link", "show"], check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT)
        links = json.loads(proc.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    stale = []
    for link in links:
        alias, name = link.get("ifalias", ""), link.get("ifname", "")
        found = re.fullmatch(rf"{OWNER_ALIAS}:pid=(\d+):start=(\d+)", alias)
        if not found or not re.fullmatch(r"mp[0-9a-f]{4}-h", name):
            continue
        pid, start = int(found.group(1)), found.group(2)
        if _proc_gone(pid) or _start_time(pid) != start:
            stale.append(name[:-2])
    return stale


def cleanup_stale() -> list[str]:
    """Remove every testbed whose owner process died (e.g. pytest got SIGKILL); the tags removed.

    Testbeds of running processes (parallel runs, other users) are left alone.
    """
    removed = []
    for tag in stale_testbeds():
        problems = _remove_testbed(tag)
        if problems:
            raise TestbedError(f"netns testbed {tag}: cleaning up the stale testbed failed: {'; '.join(problems)}")
        log.debug("testbed %s: stale testbed removed", tag)
        removed.append(tag)
    return removed


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            log.debug("listdir %s: %s", path, exc)
        return []


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=KILL_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout=KILL_WAIT)
        except subprocess.TimeoutExpired:
            log.debug("pid %d not reaped", proc.pid)


def _write(path: str, text: str, mode: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
