"""Who starts the agents and how a process reaches them: the session's role, one class each.

- ``AgentOwner``: plain pytest (``standalone``) and xdist's controller (which collects nothing).  Starts every
  node's agent once, the first time a measurement needs one (the controller: once workers have collected mesh
  tests), builds a netns testbed first, and hands the endpoints out through ``agents.json`` in the run
  directory (ports only: the secret travels in ``workerinput``).  Stops them at the end.
- ``AgentUser``: an xdist worker.  Waits for the controller's ``agents.json`` and measures with its agents.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

from pytest_meshperf.control.controller import Controller
from pytest_meshperf.control.pool import AgentPool
from pytest_meshperf.errors import AgentError
from pytest_meshperf.session.run_cluster import TestbedPaths

ENDPOINTS_FILE = "agents.json"
ENDPOINTS_WAIT_S = 120.0


class AgentOwner:
    """Starts, publishes and stops the run's agents (``session``: the MeshSession, for the run directory)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.controller: Controller | None = None
        self._started = False

    def testbed_paths(self) -> TestbedPaths:
        return self.session.run_cluster.build_testbed()

    def start(self) -> None:
        """Start every node's agent once; errors are kept (in agents.json) for the tests to report."""
        session = self.session
        session.ensure_run_dir()
        if self._started:
            return
        self._started = True   # once, also when it fails: every test then reports the same error
        try:
            cluster = session.materialize()
            self.controller = Controller(cluster, session.run_dir.logs, session.run_dir.run_id, secret=session.secret,
                                         lease_s=session.run_settings.lease_s,
                                         ssh_options=session.run_settings.ssh_options)
            self.controller.start()
            endpoints = {"endpoints": self.controller.endpoints(), "failed": self.controller.failed,
                         "testbed": session.run_cluster.testbed_paths()}
        except AgentError as exc:
            endpoints = {"error": str(exc)}
        session.run_dir.write_meta(session.run_meta(), session.cluster_meta())
        tmp = os.path.join(session.run_dir.path, ENDPOINTS_FILE + ".tmp")
        with open(tmp, "w") as handle:
            json.dump(endpoints, handle)
        os.replace(tmp, os.path.join(session.run_dir.path, ENDPOINTS_FILE))

    def pool(self) -> AgentPool:
        self.start()
        with open(os.path.join(self.session.run_dir.path, ENDPOINTS_FILE)) as handle:
            endpoints = json.load(handle)
        if "error" in endpoints:
            raise AgentError(endpoints["error"])
        return self.controller.pool

    def stop(self, pool: AgentPool | None) -> None:
        if self.controller is not None:
            self.controller.stop()


class AgentUser:
    """An xdist worker: measures with the agents the controller started."""

    controller = None

    def __init__(self, session: Any) -> None:
        self.session = session

    def testbed_paths(self) -> TestbedPaths:
        endpoints = self._endpoints()
        if "error" in endpoints:
            raise AgentError(endpoints["error"])
        return endpoints["testbed"]

    def start(self) -> None:
        """Nothing to start: the controller did."""

    def pool(self) -> AgentPool:
        endpoints = self._endpoints()
        if "error" in endpoints:
            raise AgentError(endpoints["error"])
        return AgentPool(endpoints["endpoints"], self.session.secret, endpoints.get("failed"))

    def stop(self, pool: AgentPool | None) -> None:
        if pool is not None:
            pool.close()

    def _endpoints(self) -> dict[str, Any]:
        path = os.path.join(self.session.run_dir.path, ENDPOINTS_FILE)
        deadline = time.monotonic() + ENDPOINTS_WAIT_S
        while not os.path.exists(path):   # bounded: ENDPOINTS_WAIT_S
            if time.monotonic() > deadline:
                raise AgentError(f"the xdist controller did not start the agents within {ENDPOINTS_WAIT_S:.0f} s")
            time.sleep(0.05)
        with open(path) as handle:
            return json.load(handle)
