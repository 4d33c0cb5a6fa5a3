"""The pytest-xdist hooks: registered only when xdist is installed (plugin.py), so plain pytest never sees them."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pytest_meshperf.session.lifecycle import state_of


class XdistHooks:
    """The controller's side of a mesh run under ``-n``: the run to join, the scheduler, agents before tests."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist controller -> worker: the run to join (the secret travels here, never on disk)."""
        state = state_of(node.config)
        if state is not None:
            node.workerinput["meshperf"] = state.workerinput()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """-n with xdist's default distribution: pair tests by source node once mesh tests are known."""
        state = state_of(config)
        if state is None or config.option.dist != "load":
            return None
        from pytest_meshperf.session.scheduling import make_scheduler  # imports xdist: only when it schedules
        return make_scheduler(config, log, lambda: state.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        """xdist controller: start the agents before the first mesh test is handed to a worker."""
        state = state_of(node.config)
        if state is None:
            return
        state.hear_worker(node.workerinput.get("workerid", node.gateway.id))
        if state.all_workers_collected() and state.items:
            state.activate().workers_collected(state.items)
