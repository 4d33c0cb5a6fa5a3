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


def pytest_configure(config):
    config.addinivalue_line("markers", "plugin_defaults: this test's inner pytest runs see meshperf's defaults "
                                       "(diagnosis on); all other inner runs go without diagnosis")
    config.addinivalue_line("markers", "alone: this test's verdict follows measured figures or the machine's load "
                                       "(CPU-bound flows, shaped rates, latency thresholds), or it looks at the "
                                       "whole machine (its network namespaces): scripts/test runs it "
                                       "with no other test beside it, after the tests it runs three at a time")


@pytest.fixture
def pytester(pytester, request, monkeypatch):
    """pytester, whose inner pytest runs (its subprocesses inherit the environment) go with
    ``-o meshperf_diagnosis=off`` unless the test is marked ``plugin_defaults``.  Why: a notice or a doubtful
    finding is a test case (passed or skipped), and on the unshaped, CPU-bound loopback mesh whether one appears
    follows the machine's load; a test counting its pair cases exactly would now and then count findings too
    (a CI failure: 17 passed, not 14).  Set here, after pytester's own set-up, which deletes PYTEST_ADDOPTS;
    ``--mesh-diagnosis`` on a command line still wins over this ini override."""
    if request.node.get_closest_marker("plugin_defaults") is None:
        monkeypatch.setenv("PYTEST_ADDOPTS", "-o meshperf_diagnosis=off")
    return pytester
