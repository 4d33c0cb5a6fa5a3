"""Shared helpers for meshperf's own tests.

The plugin's behaviour is tested through ``pytester``: real pytest runs, real
agents, real iperf3 on loopback addresses of the embedded cluster.
"""

import os
import sys

import pytest

pytest_plugins = ["pytester"]

# tests/data holds recorded suites (data/compare/suite): inputs of tests, not tests of this run.
collect_ignore = ["data"]

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def mesh_out(tmp_path):
    """A results folder for one inner pytest run."""
    return tmp_path / "results"


@pytest.fixture
def netns_required():
    """Skip a test that needs the netns testbed when this machine cannot build one; in CI, fail instead:
    there a skipped testbed would hide a broken environment."""
    from pytest_meshperf.testbed import unavailable_reason
    reason = unavailable_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI must be able to build the netns testbed: {reason}")
    if reason:
        pytest.skip(reason)
