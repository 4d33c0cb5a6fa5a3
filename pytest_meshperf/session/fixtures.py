"""The public fixtures: ``mesh_pair`` and ``measure``."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_meshperf.session.lifecycle import state_of
from pytest_meshperf.session.mesh_items import SPEC_KEY

if TYPE_CHECKING:   # the types only: a pytest start-up without mesh tests must not import the measuring side
    from pytest_meshperf.plan.links import Pair
    from pytest_meshperf.session.measuring import Measure


@pytest.fixture
def mesh_pair(request: pytest.FixtureRequest) -> Pair:
    """The directed pair (source -> destination) this test measures.

    A test that asks for it runs once per ordered pair of a client-capable and a
    server-capable node of the cluster (``--cluster``), with ids like
    ``node1->node2`` (select with ``-k``).  ``mesh_pair.src`` and
    ``mesh_pair.dst`` are inventory nodes (name, address, role, labels).
    """
    if not hasattr(request, "param"):
        pytest.fail("mesh_pair is parametrized by meshperf; request it from a test function", pytrace=False)
    # Collected with a netns testbed's node names: the pair gets the testbed's real hosts once it is built.
    return state_of(request.config).session.resolve_pair(request.param)


@pytest.fixture
def measure(request: pytest.FixtureRequest, mesh_pair: Pair) -> Measure:
    """Callable that measures this test's pair: ``measure(**overrides) -> Measurement``.

    Parameters merge, lowest precedence first: the mark's ``profile=`` file,
    ``@pytest.mark.meshperf(...)`` (tool, duration, udp, length, instances, args;
    iperf3: parallel, reverse, bidir, bitrate, omit, window, congestion, zerocopy;
    netperf: test, request_size, response_size, selectors; thresholds), the
    overrides, and the command-line options (``--mesh-duration`` ...).  The
    measurement is journaled, its metrics become JUnit properties, and its
    thresholds are asserted: a violated threshold fails the test; a measurement
    that could not be made is a test error carrying the tool's own message.
    """
    from pytest_meshperf.session.measuring import (
        Measure,  # here, not at the top: a pytest start-up without mesh tests never pays for it
    )
    return Measure(request.node, mesh_pair, state_of(request.config).session, request.node.stash[SPEC_KEY])
