"""Reusable helpers for tests that need a real multi-host cluster (netns testbed).

Import what you need in a test module (``tests/`` is on ``sys.path``)::

    from support.testbed_fixtures import needs_netns, netns_testbed, make_testbed_fixture, ssh

    pytestmark = needs_netns            # skip (with the reason) without root / ip netns / sshd

    testbed = make_testbed_fixture(nodes=3)  # a module-scoped fixture named after the variable

    def test_x(testbed):                # a NetnsTestbed that is up
        cluster = load_cluster(testbed.hosts_yaml)

    def test_y(tmp_path):               # a testbed of its own, torn down on exit
        with netns_testbed(tmp_path, nodes=4, rates={"node2": "200mbit"}) as tb:
            assert ssh(tb, "node2", "hostname").stdout.strip() == "node2"

* ``netns_testbed(workdir, nodes=4, rates=None, spec=None)``: context manager
  yielding an up :class:`~pytest_meshperf.testbed.NetnsTestbed` (``rates``:
  node name -> tc rate, or one rate string for every node; ``spec``: a
  ``netns:...`` string instead of nodes/rates). Skips the test when the machine
  cannot build one; always tears down, also on failure and Ctrl-C.
* ``make_testbed_fixture(nodes=3, rates=None, scope="module")``: a pytest fixture
  built on it (workdir from ``tmp_path_factory``).
* ``needs_netns``: ``skipif`` mark with the reason (not root, no ``ip netns``, ...).
* ``ssh(tb, node, *command)``: a real OpenSSH client run through the testbed's
  ssh_config (BatchMode, ConnectTimeout 5, known_hosts checked strictly).
* ``port_answers(address, port)``: one bounded TCP connect from the root namespace.
* ``iperf3_rate(tb, sender, receiver, seconds=3)``: a real iperf3 run between
  two nodes; the receiver's bits per second.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping

import pytest

from pytest_meshperf.testbed import (
    TESTBED_RANGE,
    NetnsTestbed,
    TestbedSpec,
    TestbedUnavailableError,
    parse_spec,
    unavailable_reason,
)

__all__ = [
    "SKIP_REASON",
    "iperf3_rate",
    "make_testbed_fixture",
    "needs_netns",
    "netns_testbed",
    "port_answers",
    "ssh",
]

#: Why this machine cannot build a netns testbed (None when it can).
SKIP_REASON: str | None = unavailable_reason()
needs_netns = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


def _spec(nodes: int, rates: None | str | Mapping[str, str], spec: str | None) -> TestbedSpec:
    if spec is not None:
        return parse_spec(spec)
    if isinstance(rates, str):
        rates = {f"node{i}": rates for i in range(1, nodes + 1)}
    return TestbedSpec(nodes=nodes, rates=dict(rates or {}))


@contextlib.contextmanager
def netns_testbed(
    workdir: str | os.PathLike,
    nodes: int = 4,
    rates: None | str | Mapping[str, str] = None,
    spec: str | None = None,
) -> Iterator[NetnsTestbed]:
    """An up testbed in ``workdir`` for the ``with`` block; skips when unavailable."""
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    tb = NetnsTestbed(_spec(nodes, rates, spec), workdir)
    try:
        tb.up()
    except TestbedUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        yield tb
    finally:
        tb.down()


def make_testbed_fixture(nodes: int = 3, rates: None | str | Mapping[str, str] = None, scope: str = "module", spec: str | None = None):
    """A pytest fixture (assign it to a module-level name) yielding an up testbed."""

    @pytest.fixture(scope=scope)
    def _testbed(tmp_path_factory):
        with netns_testbed(tmp_path_factory.mktemp("testbed"), nodes=nodes, rates=rates, spec=spec) as tb:
            yield tb

    return _testbed


def ssh(tb: NetnsTestbed, node: str, *command: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """``ssh -F tb.ssh_config NODE COMMAND...`` (strict host key checking, no prompts)."""
    argv = [
        "ssh", "-F", tb.ssh_config,
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=yes",
        node, *command,
    ]  # fmt: skip
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)


def port_answers(address: str, port: int = 22, timeout: float = 1.0) -> bool:
    """One TCP connect from the root namespace (testbed addresses only)."""
    import ipaddress

    assert ipaddress.IPv4Address(address) in TESTBED_RANGE, address
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the network namespace of ``pid`` (no probe connection)."""
    try:
        with open(f"/proc/{pid}/net/tcp") as fh:
            rows = fh.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        fields = row.split()
        if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


def iperf3_rate(tb: NetnsTestbed, sender: str, receiver: str, seconds: int = 3, port: int = 5201) -> float:
    """Run iperf3 from ``sender`` to ``receiver`` (their namespaces); received bits/s."""
    addr = tb.node(receiver).address
    server = tb.popen(
        receiver,
        ["iperf3", "-s", "-1", "-B", addr, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # bounded: at most about 4 s
            if server.poll() is not None:
                raise AssertionError(f"iperf3 server on {receiver} exited with {server.returncode}")
            if _listening(server.pid, port):
                break
            time.sleep(0.02)
        client = tb.exec(
            sender,
            ["iperf3", "-c", addr, "-p", str(port), "-t", str(seconds), "-J"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        assert client.returncode == 0, client.stdout[-2000:] + client.stderr[-2000:]
        result = json.loads(client.stdout)
        return float(result["end"]["sum_received"]["bits_per_second"])
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
