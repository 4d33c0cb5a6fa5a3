"""The cluster a run measures: an inventory or address lists, or a netns testbed built when a mesh test needs it.

A netns testbed (``--cluster netns:N``) is known by its node names at collection, which is all collection
needs; it is built (or, on an xdist worker, joined) once a mesh test is about to run, and from then on
``cluster`` has the testbed's real hosts.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from typing import Any, Callable

from pytest_meshperf.cluster.inventory import is_testbed_spec, load_cluster
from pytest_meshperf.cluster.matrix import load_matrix
from pytest_meshperf.cluster.model import Cluster, Node
from pytest_meshperf.errors import AgentError, UsageError
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.session.options import Settings
from pytest_meshperf.session.run_settings import blame
from pytest_meshperf.testbed import NetnsTestbed, TestbedError, TestbedSpec, parse_spec, unavailable_reason
from pytest_meshperf.transport.options import SshOptions

# Where a testbed's hosts are: {"hosts_yaml": PATH, "known_hosts": PATH}.
TestbedPaths = dict[str, str]


class RunCluster:
    def __init__(self, config: Any, settings: Settings, ssh_options: SshOptions, builds: bool) -> None:
        """``builds``: this process builds a netns testbed (plain pytest, xdist's controller), not a worker."""
        opt = config.option
        base_dir = str(config.invocation_params.dir)
        self.spec_text: str | None = opt.meshperf_cluster or None
        self.ssh_options = ssh_options   # a built testbed fills in its known_hosts
        self.testbed: NetnsTestbed | None = None
        self.testbed_spec: TestbedSpec | None = None
        self._error: str | None = None
        with blame(settings, "meshperf_cluster", "meshperf_matrix"):
            if opt.meshperf_matrix:
                if opt.meshperf_cluster:
                    raise UsageError(f"{settings.where('meshperf_matrix')} {' '.join(opt.meshperf_matrix)} and "
                                     f"{settings.where('meshperf_cluster')} {opt.meshperf_cluster} both name the "
                                     "cluster; give one of them")
                self.cluster = load_matrix(*opt.meshperf_matrix, base_dir=base_dir)
            elif is_testbed_spec(self.spec_text):
                self.testbed_spec = self._testbed_spec(settings, builds)
                self.cluster = provisional_cluster(self.testbed_spec, self.spec_text)
            else:
                self.cluster = load_cluster(self.spec_text, base_dir)

    def _testbed_spec(self, settings: Settings, builds: bool) -> TestbedSpec:
        spec = parse_spec(self.spec_text)  # InventoryError: a usage error
        reason = unavailable_reason() if builds and not settings.from_ini("meshperf_cluster") else None
        if reason:   # given on the command line: say so now (from an ini file: when a mesh test needs it)
            raise UsageError(f"--cluster {self.spec_text}: {reason}")
        return spec

    def materialize(self, testbed_paths: Callable[[], TestbedPaths]) -> Cluster:
        """The cluster with its real hosts; a netns testbed's come from ``testbed_paths()`` (which builds it or
        waits for the one the xdist controller built).  Raises AgentError when it cannot be had."""
        if self.testbed_spec is None or self.cluster.kind == "netns" and self.cluster.source:
            return self.cluster
        if self._error is not None:   # tried once: every later test reports the same reason
            raise AgentError(self._error)
        try:
            hosts = testbed_paths()
        except AgentError as exc:
            self._error = str(exc)
            raise
        self.cluster = dataclasses.replace(load_cluster(hosts["hosts_yaml"]), kind="netns", spec=self.spec_text)
        self.ssh_options.known_hosts = self.ssh_options.known_hosts or hosts["known_hosts"]
        return self.cluster

    def build_testbed(self) -> TestbedPaths:
        """Build the netns testbed (the process that owns the agents does, once)."""
        reason = unavailable_reason()
        if reason:
            raise AgentError(f"--cluster {self.spec_text}: {reason}")
        workdir = tempfile.mkdtemp(prefix="meshperf-netns-")
        try:
            self.testbed = NetnsTestbed(self.testbed_spec, workdir).up()
        except TestbedError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise AgentError(f"--cluster {self.spec_text}: the netns testbed could not be built: {exc}")
        return self.testbed_paths()

    def resolve_pair(self, pair: Pair, testbed_paths: Callable[[], TestbedPaths]) -> Pair:
        """The pair with the cluster's own nodes (a netns testbed's real addresses once it is built)."""
        if self.testbed_spec is None:
            return pair
        try:
            cluster = self.materialize(testbed_paths)
        except AgentError:   # measure() reports it as this pair's error, as for any cluster that cannot be reached
            return pair
        return dataclasses.replace(pair, src=cluster.node(pair.src.name), dst=cluster.node(pair.dst.name))

    def testbed_paths(self) -> TestbedPaths | None:
        if self.testbed is None:
            return None
        return {"hosts_yaml": self.testbed.hosts_yaml, "known_hosts": self.testbed.known_hosts}

    def close(self) -> None:
        """Tear down what the run built (the netns testbed); idempotent."""
        if self.testbed is not None:
            self.testbed.down()
            shutil.rmtree(self.testbed.workdir, ignore_errors=True)
            self.testbed = None


def provisional_cluster(spec: TestbedSpec, text: str) -> Cluster:
    """A netns testbed before it is built: its node names (what collection needs); addresses come with the build."""
    return Cluster(kind="netns", spec=text, nodes=tuple(Node(name=name, address=name) for name in spec.names))
