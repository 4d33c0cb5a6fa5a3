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
whole and per destination (``shaping.py``: htb, with per-link
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
import ipaddress
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any

from pytest_meshperf.plan.links import link_id
from pytest_meshperf.testbed.build import Build
from pytest_meshperf.testbed.processes import (
    CMD_TIMEOUT,
    first_line,
    list_dir,
    reap,
)
from pytest_meshperf.testbed.shaping import Shaping
from pytest_meshperf.testbed.spec import (
    NodeRef,
    TestbedError,
    TestbedNode,
    TestbedSpec,
)
from pytest_meshperf.testbed.sshd import SshHosts
from pytest_meshperf.testbed.stale import remove_testbed

log = logging.getLogger("meshperf.testbed")
EXEC_TIMEOUT = 300.0  # default timeout of exec() (pass timeout=None for none)


class NetnsTestbed(Build, SshHosts, Shaping):
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
        return MappingProxyType({link_id(s, d): r for (s, d), r in self._link_rates.items()})

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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
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
                f"netns testbed {self.tag}: {what} failed (exit {proc.returncode}): {first_line(proc.stderr or proc.stdout)}"
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
                failure = failure or f"{what} failed (exit {proc.returncode}): {first_line(err)}"
        if failure:
            raise TestbedError(f"netns testbed {self.tag}: {failure}")

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

    # -- down -----------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """What of this testbed still exists on the machine (empty after down())."""
        if self.tag is None:
            return []
        prefix = self.tag + "-"
        found = [f"namespace {e}" for e in list_dir("/run/netns") if e.startswith(prefix)]
        found += [f"interface {e}" for e in list_dir("/sys/class/net") if e.startswith(prefix)]
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
        problems = remove_testbed(self.tag, extra_pids=extra)
        for proc in self._sshd.values():
            reap(proc)
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


