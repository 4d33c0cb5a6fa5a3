"""One run of meshperf inside pytest: its cluster, run directory, agents and journal.

Three roles, one class:
- ``standalone`` (no xdist): starts agents lazily at the first measurement,
  measures, assembles mesh.json at the end;
- ``controller`` (xdist's controller, which collects nothing): owns the run
  directory and the agents, starts them once workers have collected mesh tests,
  hands the endpoints out through ``agents.json`` (ports only: the secret
  travels in ``workerinput``), assembles at the end;
- ``worker``: measures with the controller's agents, journals its own measurements.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from typing import Optional

import pytest

from pytest_meshperf import __version__
from pytest_meshperf.cluster.inventory import is_testbed_spec, load_cluster
from pytest_meshperf.cluster.matrix import load_matrix
from pytest_meshperf.cluster.model import Cluster, Node
from pytest_meshperf.control.controller import AgentPool, Controller
from pytest_meshperf.errors import AgentError, UsageError
from pytest_meshperf.measure.burst import GroupRunner
from pytest_meshperf.plan.links import link_selected, parse_links
from pytest_meshperf.plan.schedule import parse_schedule, plan_pairs
from pytest_meshperf.reports.html import ReportOutcome, report_after_run
from pytest_meshperf.reports.terminal import write_summary
from pytest_meshperf.results.assemble import assemble
from pytest_meshperf.results.export import export_path, write_export
from pytest_meshperf.results.run_meta import cluster_meta
from pytest_meshperf.results.rundir import RunDir
from pytest_meshperf.session import profile_suite
from pytest_meshperf.session.check_items import MeshCheckItem, add_check_items
from pytest_meshperf.session.measuring import assign_groups
from pytest_meshperf.session.mesh_items import SPEC_KEY, MeshItems, is_mesh_item
from pytest_meshperf.session.progress_hooks import ProgressHooks
from pytest_meshperf.spec.params import parse_params
from pytest_meshperf.spec.profiles import find_profile, load_profile
from pytest_meshperf.spec.testspec import spec_for_item
from pytest_meshperf.spec.thresholds import parse_threshold
from pytest_meshperf.spec.units import iso
from pytest_meshperf.transport.options import ssh_options_from
from pytest_meshperf.verdicts.baseline import load_baseline
from pytest_meshperf.vocabulary import TOOL_BINARIES

ENDPOINTS_FILE = "agents.json"
ENDPOINTS_WAIT_S = 120.0


class MeshSession:
    def __init__(self, config, settings, identity):
        self.config = config
        self.settings = settings
        opt = config.option
        base_dir = str(config.invocation_params.dir)
        self.cluster_spec = opt.meshperf_cluster or None
        with self._blame("meshperf_duration", "meshperf_parallel", "meshperf_omit", "meshperf_bitrate",
                         "meshperf_instances", "meshperf_tool", "meshperf_tool_args"):
            self.option_params = parse_params(_option_values(opt), "command line")
        with self._blame("meshperf_threshold"):
            self.option_thresholds = [parse_threshold(expr, "--mesh-threshold") for expr in opt.meshperf_threshold or []]
        with self._blame("meshperf_known_hosts", "meshperf_ssh_config", "meshperf_remote_dir",
                         *("meshperf_local_" + binary for binary in TOOL_BINARIES)):
            self.ssh_options = ssh_options_from(opt, base_dir)
        with self._blame("meshperf_baseline", "meshperf_max_regression", "meshperf_regression_metric"):
            self.baseline = load_baseline(opt.meshperf_baseline, opt.meshperf_max_regression,
                                          opt.meshperf_regression_metric, base_dir)
        self.skip_unreachable = opt.meshperf_unreachable == "skip"
        with self._blame("meshperf_profile"):
            self.profile_path, self.profile = self._profile(opt.meshperf_profile, base_dir)
        self.export_path = export_path(opt.meshperf_export, base_dir)
        self.export_line = None   # (text, is_problem) once the export was written or failed
        workerinput = getattr(config, "workerinput", None)
        self.testbed = None
        self.testbed_spec = None
        self._materialize_error = None
        with self._blame("meshperf_cluster", "meshperf_matrix"):
            if opt.meshperf_matrix:
                if opt.meshperf_cluster:
                    raise UsageError("%s %s and %s %s both name the cluster; give one of them"
                                     % (settings.where("meshperf_matrix"), " ".join(opt.meshperf_matrix),
                                        settings.where("meshperf_cluster"), opt.meshperf_cluster))
                self.cluster = load_matrix(*opt.meshperf_matrix, base_dir=base_dir)
            elif is_testbed_spec(self.cluster_spec):
                # A cluster this run builds, once a mesh test is about to run (materialize): until then its
                # node names, which are all that collection needs.
                self.testbed_spec = self._testbed_spec(workerinput is None)
                self.cluster = provisional_cluster(self.testbed_spec, self.cluster_spec)
            else:
                self.cluster = load_cluster(self.cluster_spec, base_dir)
        with self._blame("meshperf_schedule"):
            self.schedule = parse_schedule(opt.meshperf_schedule, self.cluster)
        with self._blame("meshperf_links"):
            self.links = parse_links(opt.meshperf_links, self.cluster)
        self.run_dir = RunDir(identity.out_dir, identity.run_id)
        self.secret = identity.secret
        self.started = identity.started
        if workerinput is not None:
            self.role = "worker"
            self.writer = workerinput.get("workerid", "worker")
        else:
            self.role = "controller" if _uses_xdist(config) else "standalone"
            self.writer = "main"
        self.controller: Optional[Controller] = None
        self._agents_started = False
        self._pool: Optional[AgentPool] = None
        self._journal = None
        self.created = False
        self.assembled = None
        self.write_report = opt.meshperf_report != "no"
        self.report: Optional[ReportOutcome] = None
        self.progress_hooks = None
        self.groups = GroupRunner(self.run_dir.path, self.pool, self.schedule, self.writer, self.baseline) \
            if self.schedule.grouped else None

    @contextlib.contextmanager
    def _blame(self, *dests):
        """A bad value is a usage error that names the ini key and its file when it came from one."""
        try:
            yield
        except UsageError as exc:
            given = [dest for dest in dests if self.settings.from_ini(dest)]
            if given and not any(self.settings.origins.get(d, "").startswith("-") for d in dests):
                raise self.settings.blame(given[0], exc) from None
            raise

    def _testbed_spec(self, builds):
        from pytest_meshperf.testbed import parse_spec, unavailable_reason
        spec = parse_spec(self.cluster_spec)  # InventoryError: a usage error
        reason = unavailable_reason() if builds and not self.settings.from_ini("meshperf_cluster") else None
        if reason:   # given on the command line: say so now (from an ini file: when a mesh test needs it)
            raise UsageError("--cluster %s: %s" % (self.cluster_spec, reason))
        return spec

    # -- pytest's stages -------------------------------------------------------
    def configured(self):
        """pytest_configure, with meshperf settings given: a profile run alone collects the profile file."""
        if self.profile is not None and profile_suite.alone(self.config):
            profile_suite.run_profile_alone(self.config, self.profile_path)
        return self

    def collect_file(self, file_path, parent):
        if self.profile is not None and profile_suite.alone(self.config):
            return profile_suite.collect_file(file_path, parent, self.profile_path)
        return None

    def parametrize(self, metafunc):
        pairs = plan_pairs(self.cluster, self.schedule)
        metafunc.parametrize("mesh_pair", pairs, ids=[pair.id for pair in pairs])

    def collected(self, items):
        """After deselection: each mesh item's spec, burst groups, check items; returns the run's MeshItems."""
        self._select_links(items)
        invocation_dir = str(self.config.invocation_params.dir)
        for item in items:
            if is_mesh_item(item):
                try:
                    item.stash[SPEC_KEY] = spec_for_item(item, invocation_dir, self.profile, self.option_params)
                except UsageError as exc:
                    raise pytest.UsageError(str(exc)) from None
        if self.schedule.grouped:
            assign_groups(items, SPEC_KEY)
        pair_items = [item for item in items if SPEC_KEY in item.stash and _pair_of(item) is not None]
        if pair_items:
            add_check_items(items, self, SPEC_KEY)   # after every measurement item
        found = MeshItems({item.nodeid: _pair_of(item).src.name for item in pair_items},
                          {item.nodeid for item in items if isinstance(item, MeshCheckItem)})
        if self.role == "standalone" and found:
            self._watch_progress(found)
        return found

    def workers_collected(self, found):
        """xdist controller: a worker collected mesh tests: progress, and the agents before any test is handed out."""
        if self.progress_hooks is None:
            self._watch_progress(found)
        self.start_agents()

    def _watch_progress(self, found):
        self.progress_hooks = ProgressHooks(self.config, found)
        self.config.pluginmanager.register(self.progress_hooks, "meshperf-progress")

    def _select_links(self, items):
        """--mesh-links: deselect the pair tests of other links, as -k would."""
        if not self.links:
            return
        kept, dropped = [], []
        for item in items:
            pair = _pair_of(item)
            (kept if pair is None or link_selected(pair, self.links) else dropped).append(item)
        if dropped:
            self.config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    def summarize(self, terminalreporter):
        """pytest_terminal_summary: the matrices and paths, the export's line, pairs the baseline lacked."""
        if self.assembled is not None:
            write_summary(terminalreporter, [n.name for n in self.cluster.nodes], self.assembled, os.getcwd(),
                          self.report)
        if self.export_line:
            text, problem = self.export_line
            terminalreporter.write_line(text, yellow=problem)
        if self.progress_hooks is not None and self.baseline is not None:
            line = self.progress_hooks.missing.summary_line(self.baseline)
            if line:
                terminalreporter.write_line(line)

    def materialize(self):
        """A netns cluster is built (controller, plain pytest) or joined (worker) when a mesh test first needs it;
        from then on ``cluster`` has the testbed's real hosts.  Raises AgentError when it cannot be."""
        if self.testbed_spec is None or self.cluster.kind == "netns" and self.cluster.source:
            return self.cluster
        if self._materialize_error is not None:   # tried once: every later test reports the same reason
            raise AgentError(self._materialize_error)
        try:
            hosts = self._testbed_hosts()
        except AgentError as exc:
            self._materialize_error = str(exc)
            raise
        self.cluster = dataclasses.replace(load_cluster(hosts["hosts_yaml"]), kind="netns", spec=self.cluster_spec)
        self.ssh_options.known_hosts = self.ssh_options.known_hosts or hosts["known_hosts"]
        return self.cluster

    def _testbed_hosts(self):
        if self.role == "worker":
            endpoints = self._wait_endpoints()
            if "error" in endpoints:
                raise AgentError(endpoints["error"])
            return endpoints["testbed"]
        else:
            from pytest_meshperf.testbed import NetnsTestbed, TestbedError, unavailable_reason
            reason = unavailable_reason()
            if reason:
                raise AgentError("--cluster %s: %s" % (self.cluster_spec, reason))
            workdir = tempfile.mkdtemp(prefix="meshperf-netns-")
            try:
                self.testbed = NetnsTestbed(self.testbed_spec, workdir).up()
            except TestbedError as exc:
                shutil.rmtree(workdir, ignore_errors=True)
                raise AgentError("--cluster %s: the netns testbed could not be built: %s" % (self.cluster_spec, exc))
            return self.testbed_paths()

    def resolve_pair(self, pair):
        """The pair with the cluster's own nodes (a netns testbed's real addresses once it is built)."""
        if self.testbed_spec is None:
            return pair
        try:
            cluster = self.materialize()
        except AgentError:   # measure() reports it as this pair's error, as for any cluster that cannot be reached
            return pair
        return dataclasses.replace(pair, src=cluster.node(pair.src.name), dst=cluster.node(pair.dst.name))

    def _export(self, mesh_path):
        """Write --mesh-export; one line for the summary.  A failure (a full disk) must not hide the results."""
        try:
            count = write_export(mesh_path, self.export_path)
        except (OSError, ValueError) as exc:
            return ("meshperf: cannot write the export %s: %s; mesh.json has every measurement "
                    "(meshperf export %s FILE writes it again)" % (self.export_path, exc, mesh_path), True)
        return "export: %s (%d entries)" % (self.export_path, count), False

    def _profile(self, value, base_dir):
        """--mesh-profile: (absolute path, Profile), or (None, None); a bad name or file is a usage error."""
        if not value:
            return None, None
        path, shown = find_profile(value, [self.config.rootpath, base_dir], base_dir)
        return path, load_profile(path, shown)

    def testbed_paths(self):
        return {"hosts_yaml": self.testbed.hosts_yaml, "known_hosts": self.testbed.known_hosts}

    def close(self):
        """Tear down what the run built (the netns testbed); idempotent."""
        if self.testbed is not None:
            self.testbed.down()
            shutil.rmtree(self.testbed.workdir, ignore_errors=True)
            self.testbed = None

    # -- run directory ---------------------------------------------------------
    def run_meta(self):
        # --mesh-tool-args as the tokens given (the layer keeps its origin beside them for messages).
        params = {k: list(v[1]) if k == "args" else v for k, v in self.option_params.items()}
        parameters = {"cluster": self.cluster.spec, "schedule": str(self.schedule), "options": params,
                      "thresholds": [t.expression for t in self.option_thresholds],
                      "baseline": self.baseline.meta() if self.baseline else None}
        if self.profile:
            parameters["profile"] = self.profile.path
        return {"id": self.run_dir.run_id, "started": iso(self.started), "finished": None, "interrupted": True,
                "exit_status": None, "parameters": parameters,
                "command_line": [_program()] + list(self.config.invocation_params.args),
                "meshperf_version": __version__}

    def cluster_meta(self):
        return cluster_meta(self.cluster, self.controller)

    def ensure_run_dir(self):
        if not self.created and self.role != "worker":
            self.run_dir.create(self.run_meta(), self.cluster_meta())
            self.created = True

    # -- agents ----------------------------------------------------------------
    def start_agents(self):
        """Controller side: start every node's agent once; errors are kept for the tests to report."""
        self.ensure_run_dir()
        if self._agents_started:
            return
        self._agents_started = True   # once, also when it fails: every test then reports the same error
        try:
            self.materialize()
            self.controller = Controller(self.cluster, self.run_dir.logs, self.run_dir.run_id, secret=self.secret,
                                         lease_s=self.config.option.meshperf_lease, ssh_options=self.ssh_options)
            self.controller.start()
            endpoints = {"endpoints": self.controller.endpoints(), "failed": self.controller.failed,
                         "testbed": self.testbed_paths() if self.testbed else None}
        except AgentError as exc:
            endpoints = {"error": str(exc)}
        self.run_dir.write_meta(self.run_meta(), self.cluster_meta())
        tmp = os.path.join(self.run_dir.path, ENDPOINTS_FILE + ".tmp")
        with open(tmp, "w") as handle:
            json.dump(endpoints, handle)
        os.replace(tmp, os.path.join(self.run_dir.path, ENDPOINTS_FILE))

    def pool(self) -> AgentPool:
        if self._pool is None:
            if self.role == "worker":
                endpoints = self._wait_endpoints()
            else:
                self.start_agents()
                with open(os.path.join(self.run_dir.path, ENDPOINTS_FILE)) as handle:
                    endpoints = json.load(handle)
            if "error" in endpoints:
                raise AgentError(endpoints["error"])
            if self.role == "worker":
                self._pool = AgentPool(endpoints["endpoints"], self.secret, endpoints.get("failed"))
            else:
                self._pool = self.controller.pool
        return self._pool

    def unreachable(self, pair):
        """Why ``pair`` cannot be measured (a node that could not be reached), or None."""
        try:
            pool = self.pool()
        except AgentError:
            return None  # nothing is reachable: the measurement reports it as this pair's error
        for name in (pair.src.name, pair.dst.name):
            if name in pool.failed:
                return pool.failed[name]
        return None

    def _wait_endpoints(self):
        path = os.path.join(self.run_dir.path, ENDPOINTS_FILE)
        deadline = time.monotonic() + ENDPOINTS_WAIT_S
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise AgentError("the xdist controller did not start the agents within %.0f s" % ENDPOINTS_WAIT_S)
            time.sleep(0.05)
        with open(path) as handle:
            return json.load(handle)

    # -- results ---------------------------------------------------------------
    def record(self, record):
        if self._journal is None:
            self.ensure_run_dir()
            self._journal = self.run_dir.journal(self.writer)
        self._journal.append(record)   # on disk first: a user's hook below can fail or hang without losing it
        self._call_user_hook("pytest_meshperf_measurement", record=record)

    def _call_user_hook(self, name, **kwargs):
        """A hook of the user's (hookspecs.py): its exception is a warning, never a lost result or a failed test."""
        try:
            getattr(self.config.hook, name)(config=self.config, **kwargs)
        except Exception as exc:   # noqa: BLE001 (any error of user code)
            warnings.warn(pytest.PytestWarning("meshperf: hook %s raised %s: %s" % (name, type(exc).__name__, exc)))

    def finish(self, exitstatus, interrupted):
        """Stop agents and assemble mesh.json (not on workers: the controller does that once)."""
        if self._journal is not None:
            self._journal.close()
        if self.role == "worker":
            if self._pool is not None:
                self._pool.close()
            return None
        if self.controller is not None:
            self.controller.stop()
        if self.created:
            self.assembled = assemble(self.run_dir, time.time(), interrupted, int(exitstatus))
            self._call_user_hook("pytest_meshperf_results", mesh_path=self.assembled.path,
                                 counts=dict(self.assembled.counts))
        if self.export_path and self.assembled is not None:   # like mesh.json: only a run that measured
            self.export_line = self._export(self.assembled.path)
        if self.write_report and self.assembled is not None:   # after the results are safe; never raises
            self.report = report_after_run(self.assembled)
        return self.assembled


def _pair_of(item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("mesh_pair") if callspec is not None else None


def provisional_cluster(spec, text) -> Cluster:
    """A netns testbed before it is built: its node names (what collection needs); addresses come with the build."""
    return Cluster(kind="netns", spec=text, nodes=tuple(Node(name=name, address=name) for name in spec.names))


def _program():
    name = os.path.basename(sys.argv[0]) if sys.argv else "pytest"
    return "pytest" if name in ("__main__.py", "") else name


def _uses_xdist(config):
    # xdist's own pytest_cmdline_main has turned -n/--tx into a --dist mode by now.
    return getattr(config.option, "dist", "no") != "no"


def _option_values(opt):
    values = {}
    for key, attr in (("duration", "meshperf_duration"), ("parallel", "meshperf_parallel"),
                      ("omit", "meshperf_omit"), ("bitrate", "meshperf_bitrate"),
                      ("instances", "meshperf_instances"), ("tool", "meshperf_tool"),
                      ("args", "meshperf_tool_args")):
        value = getattr(opt, attr, None)
        if value is not None:
            values[key] = value
    return values
