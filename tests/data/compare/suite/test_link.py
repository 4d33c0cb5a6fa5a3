"""The suite that recorded tests/data/compare/*.json (see tests/data/README.md): one TCP test, 1 s per pair.

MESHPERF_RECORD_BREAK=node2->node3 makes that pair's measurement fail on purpose (an unknown congestion
control: iperf3 refuses it), so a recorded run holds a real error entry."""

import os

import pytest


@pytest.mark.meshperf(duration=1)
def test_tcp(mesh_pair, measure):
    broken = mesh_pair.id == os.environ.get("MESHPERF_RECORD_BREAK")
    measure(congestion="bogus") if broken else measure()
