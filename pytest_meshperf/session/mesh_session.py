"""One run of meshperf inside pytest: what it was asked for, its cluster, run directory, agents and journal.

The session composes its parts, each a class of its own: ``RunSettings`` (run_settings.py, the options read
once), ``RunCluster`` (run_cluster.py, the cluster and a netns testbed), and the role that owns or uses the
agents (agent_roles.py):
- ``standalone`` (no xdist) and ``controller`` (xdist's controller, which collects nothing): ``AgentOwner``
  starts the agents (the controller: once workers have collected mesh tests) and the session assembles
  mesh.json at the end;
- ``worker``: ``AgentUser`` measures with the controller's agents; the worker journals its own measurements.
"""
from __future__ import annotations

import atexit
import gc
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_meshperf import __version__
from pytest_meshperf.cluster.model import Cluster
from pytest_meshperf.control.pool import AgentPool
from pytest_meshperf.errors import AgentError, ResultsWriteError, UsageError
from pytest_meshperf.measure.burst import GroupRunner
from pytest_meshperf.measure.rounds import RoundRunner
from pytest_meshperf.plan.links import Pair, link_selected, parse_links
from pytest_meshperf.plan.plans import parse_plan
from pytest_meshperf.plan.schedule import parse_schedule, plan_pairs
from pytest_meshperf.reports.html import ReportOutcome, report_after_run
from pytest_meshperf.reports.terminal import write_summary
from pytest_meshperf.results.assemble import Assembled, assemble
from pytest_meshperf.results.export import write_export
from pytest_meshperf.results.run_meta import cluster_meta
from pytest_meshperf.results.rundir import RunDir
from pytest_meshperf.session import profile_suite
from pytest_meshperf.session.agent_roles import AgentOwner, AgentUser
from pytest_meshperf.session.check_items import MeshCheckItem, add_check_items
from pytest_meshperf.session.diagnosing import Diagnosing
from pytest_meshperf.session.measuring import assign_groups
from pytest_meshperf.session.mesh_items import SPEC_KEY, MeshItems, is_mesh_item
from pytest_meshperf.session.options import Settings
from pytest_meshperf.session.progress_hooks import ProgressHooks
from pytest_meshperf.session.run_cluster import RunCluster
from pytest_meshperf.session.run_settings import RunSettings, blame
from pytest_meshperf.spec.params import Layer
from pytest_meshperf.spec.testspec import spec_for_item
from pytest_meshperf.spec.thresholds import Threshold
from pytest_meshperf.spec.units import iso
from pytest_meshperf.verdicts.baseline import Baseline

if TYPE_CHECKING:
    from pytest_meshperf.session.run_identity import RunIdentity


class MeshSession:
    def __init__(self, config: pytest.Config, settings: Settings, identity: RunIdentity) -> None:
        self.config = config
        self.settings = settings
        workerinput = getattr(config, "workerinput", None)
        self.run_settings = RunSettings.read(config, settings)
        self.run_cluster = RunCluster(config, settings, self.run_settings.ssh_options, builds=workerinput is None)
        with blame(settings, "meshperf_schedule"):
            self.schedule = parse_schedule(config.option.meshperf_schedule, self.cluster)
        with blame(settings, "meshperf_plan"):
            self.plan = parse_plan(config.option.meshperf_plan, self.cluster)
        with blame(settings, "meshperf_links"):
            self.links = parse_links(config.option.meshperf_links, self.cluster)
        self.run_dir = RunDir(identity.out_dir, identity.run_id)
        self.secret = identity.secret
        self.started = identity.started
        if workerinput is not None:
            self.role = "worker"
            self.writer = workerinput.get("workerid", "worker")
        else:
            self.role = "controller" if _uses_xdist(config) else "standalone"
            self.writer = "main"
        self.agents: AgentOwner | AgentUser = AgentUser(self) if self.role == "worker" else AgentOwner(self)
        self._pool: AgentPool | None = None
        self._journal = None
        self.write_error: str | None = None   # the one line saying which result could not be written
        self._said_stop = False               # ... already shown, as the reason the run stopped
        self.created = False
        self.assembled = None
        self.export_line = None   # (text, is_problem) once the export was written or failed
        self.report: ReportOutcome | None = None
        self.progress_hooks = None
        self.diagnosing: Diagnosing | None = None
        self.groups = GroupRunner(self.run_dir.path, self.pool, self.schedule, self.writer, self.baseline,
                                  self.doubtful_fails) \
            if self.schedule.grouped else None
        self.rounds = RoundRunner(self.run_dir.path, self.pool, self.schedule) if self.schedule.kind == "rounds" \
            else None

    # What measurements read of the settings.
    @property
    def cluster(self) -> Cluster:
        return self.run_cluster.cluster

    @property
    def option_params(self) -> Layer:
        return self.run_settings.params

    @property
    def option_thresholds(self) -> list[Threshold]:
        return self.run_settings.thresholds

    @property
    def baseline(self) -> Baseline | None:
        return self.run_settings.baseline

    @property
    def skip_unreachable(self) -> bool:
        return self.run_settings.skip_unreachable

    @property
    def doubtful_fails(self) -> bool:
        return self.run_settings.doubtful_fails

    # -- pytest's stages -------------------------------------------------------
    def configured(self) -> MeshSession:
        """pytest_configure, with meshperf settings given: a profile run alone collects the profile file."""
        if self.run_settings.profile is not None and profile_suite.alone(self.config):
            profile_suite.run_profile_alone(self.config, self.run_settings.profile_path)
        return self

    def collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
        if self.run_settings.profile is not None and profile_suite.alone(self.config):
            return profile_suite.collect_file(file_path, parent, self.run_settings.profile_path)
        return None

    def parametrize(self, metafunc: pytest.Metafunc) -> None:
        pairs = plan_pairs(self.cluster, self.schedule, self.plan)
        metafunc.parametrize("mesh_pair", pairs, ids=[pair.id for pair in pairs])

    def collected(self, items: list[pytest.Item]) -> MeshItems:
        """After deselection: each mesh item's spec, burst groups, check items; returns the run's MeshItems."""
        self._select_links(items)
        invocation_dir = str(self.config.invocation_params.dir)
        specs: dict = {}  # one parse per test function, not per pair item
        for item in items:
            if is_mesh_item(item):
                try:
                    item.stash[SPEC_KEY] = spec_for_item(item, invocation_dir, self.run_settings.profile,
                                                           self.option_params, specs)
                except UsageError as exc:
                    raise pytest.UsageError(str(exc)) from None
        if self.schedule.grouped or self.rounds is not None:
            assign_groups(items, SPEC_KEY, by_round=self.rounds is not None)
        pair_items = [item for item in items if SPEC_KEY in item.stash and _pair_of(item) is not None]
        if pair_items:
            add_check_items(items, self, SPEC_KEY)   # after every measurement item
        found = MeshItems({item.nodeid: _pair_of(item).src.name for item in pair_items},
                          {item.nodeid for item in items if isinstance(item, MeshCheckItem)},
                          {item.nodeid: f"{item.stash[SPEC_KEY].key}#{_pair_of(item).round}" for item in pair_items}
                          if self.rounds is not None else {})
        if self.role == "standalone" and found:
            self._watch_progress(found)
        return found

    def workers_collected(self, found: MeshItems) -> None:
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

    def summarize(self, terminalreporter: pytest.TerminalReporter) -> None:
        """pytest_terminal_summary: the matrices and paths, the export's line, pairs the baseline lacked; or
        why the results could not be written (once: a run stopped by it said so already)."""
        if self.write_error is not None and not self._said_stop:
            terminalreporter.write_line(self.write_error, red=True)
        if self.assembled is not None:
            write_summary(terminalreporter, [n.name for n in self.cluster.nodes], self.assembled, os.getcwd(),
                          self.report, self.diagnosing.findings if self.diagnosing is not None else None)
        if self.diagnosing is not None and self.diagnosing.problem and self.write_error is None:
            terminalreporter.write_line(self.diagnosing.problem, yellow=True)
        if self.export_line:
            text, problem = self.export_line
            terminalreporter.write_line(text, yellow=problem)
        if self.progress_hooks is not None and self.baseline is not None:
            line = self.progress_hooks.missing.summary_line(self.baseline)
            if line:
                terminalreporter.write_line(line)

    def diagnose(self, pytest_session: pytest.Session) -> None:
        """After every test: the findings, re-tests and their test cases (diagnosing.py)."""
        if not self.run_settings.diagnose:
            return   # --mesh-diagnosis=off: no findings, and the summary says nothing of them
        self.diagnosing = Diagnosing(self)
        self.diagnosing.run(pytest_session)

    def materialize(self) -> Cluster:
        """The cluster with its real hosts: a netns testbed is built (by the agents' owner) or joined (a worker)
        when a mesh test first needs it.  Raises AgentError when it cannot be."""
        return self.run_cluster.materialize(self.agents.testbed_paths)

    def resolve_pair(self, pair: Pair) -> Pair:
        """The pair with the cluster's own nodes (a netns testbed's real addresses once it is built)."""
        return self.run_cluster.resolve_pair(pair, self.agents.testbed_paths)

    def _export(self, mesh_path):
        """Write --mesh-export; one line for the summary.  A failure (a full disk) must not hide the results."""
        try:
            count = write_export(mesh_path, self.run_settings.export_path)
        except (OSError, ValueError) as exc:
            return (f"meshperf: cannot write the export {self.run_settings.export_path}: {exc}; mesh.json has every "
                    f"measurement (meshperf export {mesh_path} FILE writes it again)", True)
        return f"export: {self.run_settings.export_path} ({count} entries)", False

    def close(self) -> None:
        """Tear down what the run built (the netns testbed); idempotent."""
        self.run_cluster.close()
        # The interpreter's collections at exit walk every object the run made (SSH stacks, results, pytest's):
        # 0.15 s at the end of every run.  Frozen, they are left to the OS.  At exit only, so that an in-process
        # pytest (pytester) keeps collecting; registered once however many runs a process makes.
        atexit.unregister(gc.freeze)
        atexit.register(gc.freeze)

    # -- run directory ---------------------------------------------------------
    def run_meta(self) -> dict[str, Any]:
        params = {k: list(v[1]) if k == "args" else v for k, v in self.option_params.items()}
        parameters = {"cluster": self.cluster.spec, "schedule": str(self.schedule), "plan": str(self.plan),
                      "options": params,
                      "thresholds": [t.expression for t in self.option_thresholds],
                      "baseline": self.baseline.meta() if self.baseline else None}
        if self.run_settings.profile:
            parameters["profile"] = self.run_settings.profile.path
        return {"id": self.run_dir.run_id, "started": iso(self.started), "finished": None, "interrupted": True,
                "exit_status": None, "parameters": parameters,
                "command_line": [_program()] + list(self.config.invocation_params.args),
                "meshperf_version": __version__}

    def cluster_meta(self) -> dict[str, Any]:
        return cluster_meta(self.cluster, self.agents.controller)

    def ensure_run_dir(self) -> None:
        if not self.created and self.role != "worker":
            self.run_dir.create(self.run_meta(), self.cluster_meta())
            self.created = True

    # -- agents ----------------------------------------------------------------
    def start_agents(self) -> None:
        """The agents' owner starts every node's agent once (a worker starts none); errors are kept for the tests."""
        self.agents.start()

    def pool(self) -> AgentPool:
        if self._pool is None:
            self._pool = self.agents.pool()
        return self._pool

    def unreachable(self, pair: Pair) -> str | None:
        """Why ``pair`` cannot be measured (a node that could not be reached), or None."""
        try:
            pool = self.pool()
        except AgentError:
            return None  # nothing is reachable: the measurement reports it as this pair's error
        for name in (pair.src.name, pair.dst.name):
            if name in pool.failed:
                return pool.failed[name]
        return None

    # -- results ---------------------------------------------------------------
    def record(self, record: dict[str, Any]) -> None:
        """Journal ``record`` (on disk before anything else happens).  When it cannot be written (a full disk)
        the run stops at once with one line: what is measured from here on could not be kept either."""
        try:
            if self._journal is None:
                self.ensure_run_dir()
                self._journal = self.run_dir.journal(self.writer)
            self._journal.append(record)   # on disk first: a user's hook below can fail or hang without losing it
        except (ResultsWriteError, OSError) as exc:
            self.write_error, self._said_stop = self._stopped_line(exc), True
            pytest.exit(self.write_error, returncode=pytest.ExitCode.TESTS_FAILED)
        self._call_user_hook("pytest_meshperf_measurement", record=record)

    def _journal_only(self, record):
        """Journal ``record`` at the session's end (no run to stop); ResultsWriteError when it cannot be."""
        if self._journal is None:
            self.ensure_run_dir()
            self._journal = self.run_dir.journal(self.writer)
        self._journal.append(record)

    def _stopped_line(self, exc):
        what = str(exc) if isinstance(exc, ResultsWriteError) else f"cannot write the results: {exc}"
        where = self.run_dir.path if self.run_dir is not None else "the run directory"
        return (f"meshperf: {what}; the run stops. The journal holds every measurement before this one: "
                f"meshperf assemble {where} writes mesh.json from it once there is room")

    def _call_user_hook(self, name, **kwargs):
        """A hook of the user's (hookspecs.py): its exception is a warning, never a lost result or a failed test."""
        try:
            getattr(self.config.hook, name)(config=self.config, **kwargs)
        except Exception as exc:   # noqa: BLE001 (any error of user code)
            warnings.warn(pytest.PytestWarning(f"meshperf: hook {name} raised {type(exc).__name__}: {exc}"))

    def finish(self, exitstatus: int | pytest.ExitCode, interrupted: bool) -> Assembled | None:
        """Stop agents and assemble mesh.json (not on workers: the controller does that once)."""
        if self.rounds is not None:
            self.rounds.close()   # a round measured ahead of its tests (-x, Ctrl-C) stops; nothing else may run
        # The agents first: whatever fails below (a full disk), nothing is left running on the nodes.
        self.agents.stop(self._pool)
        try:
            if self.rounds is not None and interrupted and self.write_error is None:
                self.rounds.journal_unreported(self._journal_only, self.baseline, self.doubtful_fails)   # measured, not yet reported
            if self._journal is not None:
                self._journal.close()
        except (ResultsWriteError, OSError) as exc:
            self.write_error = self.write_error or self._stopped_line(exc)
        if self.role == "worker":
            return None
        if self.created:
            try:
                self.assembled = assemble(self.run_dir, time.time(), interrupted, int(exitstatus))
            except OSError as exc:
                if self.write_error is None:
                    self.write_error = (f"meshperf: cannot write mesh.json in {self.run_dir.path}: "
                                        f"{exc.strerror or exc}; the journal holds every measurement: meshperf "
                                        f"assemble {self.run_dir.path} writes it once there is room")
                return None
            self._call_user_hook("pytest_meshperf_results", mesh_path=self.assembled.path,
                                 counts=dict(self.assembled.counts))
        if self.run_settings.export_path and self.assembled is not None:   # like mesh.json: only a run that measured
            self.export_line = self._export(self.assembled.path)
        if self.run_settings.write_report and self.assembled is not None:   # after the results are safe; never raises
            self.report = report_after_run(self.assembled)
        return self.assembled


def _pair_of(item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("mesh_pair") if callspec is not None else None


def _program():
    name = os.path.basename(sys.argv[0]) if sys.argv else "pytest"
    return "pytest" if name in ("__main__.py", "") else name


def _uses_xdist(config):
    # xdist's own pytest_cmdline_main has turned -n/--tx into a --dist mode by now.
    return getattr(config.option, "dist", "no") != "no"
