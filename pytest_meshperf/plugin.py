"""pytest hooks, and nothing else: each hook hands its work to the module that owns it."""

import os

import pytest

from . import profile_suite
from .baseline import MissingPairs, add_options as add_baseline_options
from .checks import add_check_items, is_check_id
from .errors import MeasurementError, MeshperfError, UsageError
from .fixtures import SESSION_KEY, SPEC_KEY, assign_groups, measure, mesh_pair  # noqa: F401  (fixtures pytest must see)
from .inventory import HOST_KEY_CHECKS, TOOL_BINARIES
from .planning import SCHEDULES, link_selected, plan_pairs
from .reports.progress import Progress
from .reports.terminal import write_summary
from .scheduling import make_scheduler, source_of
from .session import MeshSession
from .testspec import MARK, spec_for_item

PROGRESS_KEY = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("meshperf", "meshperf: full-mesh network measurement")
    group.addoption("--cluster", dest="meshperf_cluster", metavar="SPEC",
                    help="cluster to measure: a hosts.yaml path; local:N for N nodes on this machine's "
                         "loopback (default: local:3); netns:N for N real sshd hosts in network namespaces, built "
                         "for the run (root only; e.g. netns:4,rate=200mbit)")
    group.addoption("--matrix", dest="meshperf_matrix", nargs=2, metavar=("CLIENTS", "SERVERS"),
                    help="cluster from two text files of hosts (one address or ssh_config alias per line): every "
                         "client against every server; instead of --cluster")
    group.addoption("--mesh-profile", dest="meshperf_profile", metavar="NAME|PATH",
                    help="profile (tool, parameters, thresholds): NAME is suites/profiles/NAME.yaml under the "
                         "rootdir, or a .yaml path; with no test path it runs on its own, one test per pair; with "
                         "test paths it is the lowest layer of every mesh test")
    group.addoption("--mesh-export", dest="meshperf_export", metavar="FILE",
                    help="also write the measurements as a flat JSON list (client, server, *_address, success, "
                         "exit_code, elapsed_time, stdout, command), netperf-orchestrate's --export format")
    group.addoption("--mesh-out", dest="meshperf_out", metavar="DIR",
                    help="where run directories (mesh.json, mesh.csv) go (default: meshperf-results)")
    group.addoption("--mesh-threshold", dest="meshperf_threshold", action="append", metavar="EXPR",
                    help="threshold applied to every test, e.g. 'throughput>=9Gbit/s', 'retransmits<=100', "
                         "'jitter<=1ms', 'loss<=0.1%%' (repeatable; overrides marks and profiles on the same bound)")
    group.addoption("--mesh-tool", dest="meshperf_tool", metavar="iperf3|netperf",
                    help="the tool of every test (overrides marks and profiles)")
    group.addoption("--mesh-tool-args", dest="meshperf_tool_args", metavar="ARGS",
                    help="native arguments for every test's tool, e.g. --mesh-tool-args='-d rr -o P99_LATENCY' "
                         "(netperf) or '-Z -w 256K' (iperf3); what meshperf owns (-H, -p, -c, -J ...) is refused")
    group.addoption("--mesh-duration", dest="meshperf_duration", metavar="TIME",
                    help="measurement duration for every test in whole seconds, e.g. 10 or 30s (overrides marks)")
    group.addoption("--mesh-parallel", dest="meshperf_parallel", type=int, metavar="N",
                    help="parallel streams per measurement (iperf3 -P) for every test")
    group.addoption("--mesh-omit", dest="meshperf_omit", metavar="TIME",
                    help="whole seconds of slow start to omit from results (iperf3 -O) for every test")
    group.addoption("--mesh-instances", dest="meshperf_instances", metavar="N|auto",
                    help="tool processes per pair for every test, each pinned to its own core; auto sizes them from "
                         "the cores free on both ends (default 1; pair metrics sum them)")
    group.addoption("--mesh-bitrate", dest="meshperf_bitrate", metavar="RATE",
                    help="target bitrate for every test, e.g. 100Mbit/s (iperf3 -b)")
    group.addoption("--mesh-lease", dest="meshperf_lease", type=float, default=60.0, metavar="SECONDS",
                    help="agents stop everything and exit after this long without word from pytest (default: 60)")
    group.addoption("--mesh-schedule", dest="meshperf_schedule", default="rounds", metavar="|".join(SCHEDULES),
                    help="how measurements share the cluster: rounds (default: pairs in rounds of disjoint pairs; "
                         "a node never sends or receives twice at once, also under -n), sequential (one "
                         "measurement at a time in the whole cluster), burst (every pair of a test at once, from "
                         "one synchronized start: the whole fabric loaded) or incast:NODE (every other node sends "
                         "to NODE at once)")
    group.addoption("--mesh-links", dest="meshperf_links", action="append", metavar="SRC->DST",
                    help="measure only these links: node names or shell globs, comma-separated or repeated, e.g. "
                         "'node1->*' or '*->node3' (pytest's -k cannot say '->')")
    group.addoption("--mesh-progress", dest="meshperf_progress", type=float, default=10.0, metavar="SECONDS",
                    help="write a progress line (pairs done, failures, elapsed, ETA) at most every SECONDS "
                         "(default 10; 0: after every measurement; -1: never)")
    add_baseline_options(group)
    group.addoption("--mesh-report", dest="meshperf_report", choices=("yes", "no"), default="yes",
                    help="write report.html (heatmaps, per-node view, failures) beside mesh.json after the run: "
                         "yes (default) or no")
    group.addoption("--mesh-unreachable", dest="meshperf_unreachable", choices=("error", "skip"), default="error",
                    help="what a pair with an unreachable node becomes: error (default) or skip")
    ssh = parser.getgroup("meshperf-ssh", "meshperf: remote nodes over SSH")
    ssh.addoption("--ssh-host-keys", dest="meshperf_host_keys", choices=HOST_KEY_CHECKS,
                  help="host key checking: yes (verify against known_hosts, the default), accept-new (add unknown "
                       "keys, refuse changed ones) or off (throwaway labs); overrides the inventory's host_key_check")
    ssh.addoption("--ssh-known-hosts", dest="meshperf_known_hosts", metavar="FILE",
                  help="known_hosts file (default: ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts)")
    ssh.addoption("--ssh-config", dest="meshperf_ssh_config", metavar="FILE",
                  help="ssh_config file (default: ~/.ssh/config, as OpenSSH)")
    ssh.addoption("--ssh-connect-timeout", dest="meshperf_connect_timeout", type=float, default=10.0,
                  metavar="SECONDS", help="SSH connect, banner and authentication time-out (default: 10)")
    ssh.addoption("--iperf3", dest="meshperf_iperf3", metavar="PATH",
                  help="iperf3 path on every remote node (default: the inventory's iperf3, else iperf3 on PATH)")
    ssh.addoption("--netperf", dest="meshperf_netperf", metavar="PATH",
                  help="netperf path on every remote node (default: the inventory's netperf, else netperf on PATH)")
    ssh.addoption("--netserver", dest="meshperf_netserver", metavar="PATH",
                  help="netserver path on every remote node (default: the inventory's netserver, else the one "
                       "beside netperf, else netserver on PATH)")
    for binary in TOOL_BINARIES:
        ssh.addoption("--local-" + binary, dest="meshperf_local_" + binary, metavar="PATH",
                      help="upload this %s binary to every remote node and use it" % binary)
    ssh.addoption("--mesh-remote-dir", dest="meshperf_remote_dir", metavar="DIR",
                  help="directory on the nodes for the agent, uploaded tools and logs, relative to the home "
                       "directory or absolute (default: .meshperf)")
    parser.addini("meshperf_cluster", "default cluster for --cluster (hosts.yaml path, local:N or netns:N)")
    parser.addini("meshperf_out", "default for --mesh-out")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "meshperf(profile=None, thresholds=None, **params): parameters and thresholds of a mesh "
                   "measurement (tool, duration, parallel, reverse, bidir, udp, bitrate, omit, test, args, ...)")
    if config.option.help or config.option.version:
        return
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ProgressHooks(config), "meshperf-progress")
    try:
        config.stash[SESSION_KEY] = session = MeshSession(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc))
    except MeshperfError as exc:  # e.g. the netns testbed could not be built
        raise pytest.UsageError(str(exc))
    if session.profile is not None and profile_suite.alone(config):
        profile_suite.run_profile_alone(config, session.profile_path)


def pytest_collect_file(file_path, parent):
    session = parent.config.stash.get(SESSION_KEY, None)
    if session is not None and session.profile is not None and profile_suite.alone(parent.config):
        return profile_suite.collect_file(file_path, parent, session.profile_path)
    return None


def pytest_generate_tests(metafunc):
    if "mesh_pair" in metafunc.fixturenames:
        session = metafunc.config.stash[SESSION_KEY]
        pairs = plan_pairs(session.cluster, session.schedule)
        metafunc.parametrize("mesh_pair", pairs, ids=[pair.id for pair in pairs])


def _select_links(config, session, items):
    """--mesh-links: deselect the pair tests of other links, as -k would."""
    if not session.links:
        return
    kept, dropped = [], []
    for item in items:
        pair = getattr(item, "callspec", None) and item.callspec.params.get("mesh_pair")
        (kept if pair is None or link_selected(pair, session.links) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: a burst group is the pairs that will run
def pytest_collection_modifyitems(session, config, items):
    if SESSION_KEY not in config.stash:
        return
    _select_links(config, config.stash[SESSION_KEY], items)
    invocation_dir = str(config.invocation_params.dir)
    mesh_items = 0
    for item in items:
        if "mesh_pair" in getattr(item, "fixturenames", ()) or item.get_closest_marker(MARK):
            mesh_items += "mesh_pair" in getattr(item, "fixturenames", ())
            try:
                session = config.stash[SESSION_KEY]
                item.stash[SPEC_KEY] = spec_for_item(item, invocation_dir, session.profile, session.option_params)
            except UsageError as exc:
                raise pytest.UsageError(str(exc))
    if config.stash[SESSION_KEY].schedule.grouped:
        assign_groups(items)
    if mesh_items:
        add_check_items(items, config.stash[SESSION_KEY], SPEC_KEY)   # after every measurement item
    if not hasattr(config, "workerinput") and mesh_items:
        config.stash[PROGRESS_KEY] = Progress(mesh_items, config.option.meshperf_progress)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist controller -> worker: the run to join (the secret travels here, never on disk)."""
    session = node.config.stash[SESSION_KEY]
    node.workerinput["meshperf"] = {"run_id": session.run_dir.run_id, "out_dir": session.run_dir.out_dir,
                                    "secret": session.secret, "started": session.started,
                                    "testbed": session.testbed_paths() if session.testbed else None}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """-n with xdist's default distribution: hand out pair tests by source node (scheduling.py)."""
    mesh = config.stash.get(SESSION_KEY, None)
    if mesh is None or config.option.dist != "load":
        return None
    return make_scheduler(config, log, [node.name for node in mesh.cluster.nodes])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """xdist controller: start the agents before the first mesh test is handed to a worker."""
    session = node.config.stash[SESSION_KEY]
    names = [n.name for n in session.cluster.nodes]
    mesh_ids = [test_id for test_id in ids if source_of(test_id, names)]
    if mesh_ids and PROGRESS_KEY not in node.config.stash:  # every worker collects the same tests
        node.config.stash[PROGRESS_KEY] = Progress(len(mesh_ids), node.config.option.meshperf_progress)
    if session.controller is None and mesh_ids:
        session.start_agents()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(MeasurementError):
        # A measurement that could not be made is an error, not a failed threshold.
        report.meshperf_error = True
        report.longrepr = "MeasurementError: %s" % call.excinfo.value
    return report


def pytest_report_teststatus(report, config):
    if getattr(report, "meshperf_error", False) and report.when == "call":
        return "error", "E", "ERROR"
    return None


class ProgressHooks:
    """Feeds finished mesh tests to the progress line (registered on the process that sees every report)."""

    def __init__(self, config):
        self.config = config
        self.missing = MissingPairs()

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report):
        self.missing.observe(report)
        progress = self.config.stash.get(PROGRESS_KEY, None)
        if progress is None or "->" not in report.nodeid or is_check_id(report.nodeid):
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            errored = getattr(report, "meshperf_error", False) or (report.when == "setup" and report.failed)
            progress.record("error" if errored else report.outcome)
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None and progress.due():
                reporter.ensure_newline()
                writer = getattr(reporter, "_tw", None)  # xdist's dots do not pass through ensure_newline
                if writer is not None and writer.width_of_current_line:
                    reporter.write("\n")
                reporter.write_line(progress.line())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_logreport(report):
    # JUnit XML writes <error> only for reports outside the call phase: present the
    # measurement error as the error it is, then restore the report.
    swapped = getattr(report, "meshperf_error", False) and report.when == "call"
    if swapped:
        report.when = "setup"
    try:
        return (yield)
    finally:
        if swapped:
            report.when = "call"


def pytest_sessionfinish(session, exitstatus):
    mesh = session.config.stash.get(SESSION_KEY, None)
    if mesh is not None:
        mesh.finish(exitstatus, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)


def pytest_unconfigure(config):
    mesh = config.stash.get(SESSION_KEY, None)
    if mesh is not None:
        mesh.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    mesh = config.stash.get(SESSION_KEY, None)
    if mesh is not None and mesh.assembled is not None:
        write_summary(terminalreporter, [n.name for n in mesh.cluster.nodes], mesh.assembled, os.getcwd(),
                      mesh.report)
    if mesh is not None and mesh.export_line:
        text, problem = mesh.export_line
        terminalreporter.write_line(text, yellow=problem)
    hooks = config.pluginmanager.get_plugin("meshperf-progress")
    line = hooks.missing.summary_line(mesh.baseline) if hooks is not None and mesh is not None and \
        mesh.baseline is not None else None
    if line:
        terminalreporter.write_line(line)
