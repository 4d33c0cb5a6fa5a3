"""Hooks meshperf calls, for sending results to a store of your own (a conftest or plugin implements them).

    # conftest.py
    def pytest_meshperf_measurement(config, record):
        my_store.send(record["test"], record["src"], record["dst"], record["metrics"])

    def pytest_meshperf_results(config, mesh_path, counts):
        upload(mesh_path)

They are called after the fact: a measurement is on disk (the journal, fsynced)
before ``pytest_meshperf_measurement`` sees it, and mesh.json is complete before
``pytest_meshperf_results`` does, so a hook that fails or hangs loses nothing of
meshperf's own.  An exception in a hook is reported as a warning, never as a test
failure.  Under pytest-xdist the measurement hook runs in the worker that measured
(each worker loads the conftest), the results hook once, on the controller.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest


def pytest_meshperf_measurement(config: pytest.Config, record: dict[str, Any]) -> None:
    """A measurement was journaled: ``record`` is its entry as in mesh.json (plain JSON types: test, src, dst,
    status, metrics, thresholds, error, ...).  Do not change it."""


def pytest_meshperf_results(config: pytest.Config, mesh_path: str, counts: dict[str, int]) -> None:
    """mesh.json was written: ``mesh_path`` its absolute path, ``counts`` the measurements by status
    (``{"passed": 5, "failed": 1, "error": 0}``)."""
