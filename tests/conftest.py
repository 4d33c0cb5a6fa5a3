"""Shared helpers for meshperf's own tests.

The plugin's behaviour is tested through ``pytester``: real pytest runs, real
agents, real iperf3 on loopback addresses of the embedded cluster.
"""

import os
import sys

import pytest

pytest_plugins = ["pytester"]

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def mesh_out(tmp_path):
    """A results folder for one inner pytest run."""
    return tmp_path / "results"
