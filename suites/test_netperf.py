"""TCP throughput over every directed link, measured with netperf (OMNI send)."""

import pytest


@pytest.mark.meshperf(profile="throughput")
def test_netperf_throughput(mesh_pair, measure):
    measure()
