"""UDP at a fixed bitrate over every directed link: jitter and loss."""

import pytest


@pytest.mark.meshperf(profile="udp")
def test_udp_jitter_loss(mesh_pair, measure):
    measure()
