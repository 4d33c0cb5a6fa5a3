"""TCP throughput over every directed link of the cluster."""

import pytest


@pytest.mark.meshperf(profile="tcp")
def test_tcp_throughput(mesh_pair, measure):
    measure()
