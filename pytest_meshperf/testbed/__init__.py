"""Testbeds: real multi-host clusters built on this machine for meshperf to measure.

:mod:`~pytest_meshperf.testbed.netns` builds hosts in Linux network namespaces,
each with its own sshd, and writes a ``hosts.yaml`` that
:func:`~pytest_meshperf.cluster.inventory.load_cluster` accepts::

    from pytest_meshperf.testbed import NetnsTestbed, parse_spec

    with NetnsTestbed(parse_spec("netns:4,rate=200mbit"), workdir) as tb:
        cluster = load_cluster(tb.hosts_yaml)
        tb.exec("node1", ["iperf3", "-c", tb.node("node2").address])

Modules: spec.py (``netns:N,...`` parsed; the errors), processes.py (host-side processes and files),
build.py (``up()``), sshd.py (keys, sshd, SSH files), shaping.py (tc), stale.py (testbeds left by dead
owners) and netns.py (the testbed object, its commands and ``down()``).  Imports ``cluster`` and the
foundations only.
"""
from __future__ import annotations

from pytest_meshperf.testbed.netns import NetnsTestbed
from pytest_meshperf.testbed.processes import unavailable_reason
from pytest_meshperf.testbed.spec import (
    MAX_NODES,
    MIN_NODES,
    TESTBED_RANGE,
    TestbedError,
    TestbedNode,
    TestbedSpec,
    TestbedUnavailableError,
    parse_spec,
)
from pytest_meshperf.testbed.stale import cleanup_stale, stale_testbeds

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
