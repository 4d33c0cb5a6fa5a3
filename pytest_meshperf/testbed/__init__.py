"""Testbeds: real multi-host clusters built on this machine for meshperf to measure.

:mod:`~pytest_meshperf.testbed.netns` builds hosts in Linux network namespaces,
each with its own sshd, and writes a ``hosts.yaml`` that
:func:`~pytest_meshperf.inventory.load_cluster` accepts::

    from pytest_meshperf.testbed import NetnsTestbed, parse_spec

    with NetnsTestbed(parse_spec("netns:4,rate=200mbit"), workdir) as tb:
        cluster = load_cluster(tb.hosts_yaml)
        tb.exec("node1", ["iperf3", "-c", tb.node("node2").address])
"""

from .netns import (
    MAX_NODES,
    MIN_NODES,
    TESTBED_RANGE,
    NetnsTestbed,
    TestbedError,
    TestbedNode,
    TestbedSpec,
    TestbedUnavailableError,
    cleanup_stale,
    parse_spec,
    stale_testbeds,
    unavailable_reason,
)

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
