"""TCP request/response latency over every directed link (netperf rr): p50 and p99, transaction rate."""

import pytest


@pytest.mark.meshperf(profile="latency")
def test_tcp_latency(mesh_pair, measure):
    measure()
