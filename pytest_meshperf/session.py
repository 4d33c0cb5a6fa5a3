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

import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Optional

from . import __version__
from .baseline import load_baseline
from .burst import GroupRunner
from .controller import AgentPool, Controller, new_secret
from .errors import AgentError, UsageError
from .export import export_path, write_export
from .inventory import TOOL_BINARIES, load_cluster
from .matrix import load_matrix
from .params import parse_params
from .planning import parse_links, parse_schedule
from .profiles import find_profile, load_profile
from .reports.html import ReportOutcome, report_after_run
from .results import RunDir, assemble, iso, new_run_id
from .thresholds import parse_threshold

ENDPOINTS_FILE = "agents.json"
ENDPOINTS_WAIT_S = 120.0


class MeshSession:
    def __init__(self, config):
        self.config = config
        opt = config.option
        base_dir = str(config.invocation_params.dir)
        self.cluster_spec = opt.meshperf_cluster or config.getini("meshperf_cluster") or None
        self.option_params = parse_params(_option_values(opt), "command line")
        self.option_thresholds = [parse_threshold(expr, "--mesh-threshold") for expr in opt.meshperf_threshold or []]
        self.ssh_options = ssh_options_from(opt, base_dir)
        self.baseline = load_baseline(getattr(opt, "meshperf_baseline", None),
                                      getattr(opt, "meshperf_max_regression", None),
                                      getattr(opt, "meshperf_regression_metric", None), base_dir)
        self.skip_unreachable = opt.meshperf_unreachable == "skip"
        self.profile_path, self.profile = self._profile(opt.meshperf_profile, base_dir)
        self.export_path = export_path(opt.meshperf_export, base_dir)
        self.export_line = None   # (text, is_problem) once the export was written or failed
        workerinput = getattr(config, "workerinput", None)
        self.testbed = None
        if opt.meshperf_matrix:
            if opt.meshperf_cluster:
                raise UsageError("--matrix %s and --cluster %s both name the cluster; give one of them"
                                 % (" ".join(opt.meshperf_matrix), opt.meshperf_cluster))
            self.cluster = load_matrix(*opt.meshperf_matrix, base_dir=base_dir)
        elif is_testbed_spec(self.cluster_spec):
            # A cluster this run builds (and tears down): the controller builds it, workers use its inventory.
            hosts = workerinput["meshperf"]["testbed"] if workerinput else self._build_testbed(base_dir)
            self.cluster = dataclasses.replace(load_cluster(hosts["hosts_yaml"]), kind="netns",
                                               spec=self.cluster_spec)
            self.ssh_options.known_hosts = self.ssh_options.known_hosts or hosts["known_hosts"]
        else:
            self.cluster = load_cluster(self.cluster_spec, base_dir)
        try:
            self.schedule = parse_schedule(opt.meshperf_schedule, self.cluster)
            self.links = parse_links(opt.meshperf_links, self.cluster)
        except UsageError:
            self.close()  # a testbed built for this run goes with it
            raise
        if workerinput is not None:
            self.role = "worker"
            shared = workerinput["meshperf"]
            self.run_dir = RunDir(shared["out_dir"], shared["run_id"])
            self.secret = shared["secret"]
            self.writer = workerinput.get("workerid", "worker")
            self.started = shared["started"]
        else:
            self.role = "controller" if _uses_xdist(config) else "standalone"
            out_dir = opt.meshperf_out or config.getini("meshperf_out") or "meshperf-results"
            self.started = time.time()
            self.run_dir = RunDir(os.path.abspath(os.path.join(base_dir, out_dir)), new_run_id(self.started))
            self.secret = new_secret()
            self.writer = "main"
        self.controller: Optional[Controller] = None
        self._pool: Optional[AgentPool] = None
        self._journal = None
        self.created = False
        self.assembled = None
        self.write_report = getattr(opt, "meshperf_report", "yes") != "no"
        self.report: Optional[ReportOutcome] = None
        self.groups = GroupRunner(self.run_dir.path, self.pool, self.schedule, self.writer, self.baseline) \
            if self.schedule.grouped else None

    def _build_testbed(self, base_dir):
        from .testbed import NetnsTestbed, parse_spec, unavailable_reason
        spec = parse_spec(self.cluster_spec)  # InventoryError: a usage error
        reason = unavailable_reason()
        if reason:
            raise UsageError("--cluster %s: %s" % (self.cluster_spec, reason))
        workdir = tempfile.mkdtemp(prefix="meshperf-netns-")
        self.testbed = NetnsTestbed(spec, workdir).up()
        return self.testbed_paths()

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
        nodes = {}
        for node in self.cluster.nodes:
            endpoint = self.controller.handles[node.name].endpoint if self.controller and \
                node.name in self.controller.handles else {}
            # The address tests really target: an ssh_config alias resolves to its HostName.
            entry = {"address": node.address, "data_address": endpoint.get("data_address", node.data_address),
                     "role": node.role, "labels": dict(node.labels)}
            info = (self.controller.node_info.get(node.name) if self.controller else None) or {}
            failure = self.controller.failed.get(node.name) if self.controller else None
            if failure:
                entry["unreachable"] = failure
            if info:
                entry["agent"] = {"version": info.get("agent_version"), "pid": info.get("pid"),
                                  "hostname": info.get("hostname")}
                facts = info.get("facts") or {}
                entry["clock_offset_s"] = info.get("clock_offset_s")
                if facts:
                    entry["ssh"] = {"host_key_check": facts.get("host_key_check"), "python": facts.get("python")}
                entry["tools"] = {name: {"version": t.get("version"), "path": t.get("path"), "error": t.get("error"),
                                         **{key: t[key] for key in ("server_path", "server_version") if key in t}}
                                  for name, t in (info.get("tools") or {}).items()}
                entry["resources"] = info.get("resources") or {}
                if info.get("limits"):
                    entry["limits"] = info["limits"]
            nodes[node.name] = entry
        return {"kind": self.cluster.kind, "spec": self.cluster.spec, "source": self.cluster.source, "nodes": nodes}

    def ensure_run_dir(self):
        if not self.created and self.role != "worker":
            self.run_dir.create(self.run_meta(), self.cluster_meta())
            self.created = True

    # -- agents ----------------------------------------------------------------
    def start_agents(self):
        """Controller side: start every node's agent once; errors are kept for the tests to report."""
        self.ensure_run_dir()
        if self.controller is not None:
            return
        self.controller = Controller(self.cluster, self.run_dir.logs, self.run_dir.run_id, secret=self.secret,
                                     lease_s=self.config.option.meshperf_lease, ssh_options=self.ssh_options)
        try:
            self.controller.start()
            endpoints = {"endpoints": self.controller.endpoints(), "failed": self.controller.failed}
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
        self._journal.append(record)

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
        if self.export_path and self.assembled is not None:   # like mesh.json: only a run that measured
            self.export_line = self._export(self.assembled.path)
        if self.write_report and self.assembled is not None:   # after the results are safe; never raises
            self.report = report_after_run(self.assembled)
        return self.assembled


def is_testbed_spec(spec):
    return bool(spec) and (spec == "netns" or spec.startswith("netns:"))


def ssh_options_from(opt, base_dir):
    """SshOptions from pytest's (or the CLI's) options; paths relative to where the run started."""
    from .transport.ssh import SshOptions

    def path(value):
        return os.path.abspath(os.path.join(base_dir, os.path.expanduser(value))) if value else None

    local_tools = {}
    for binary in TOOL_BINARIES:
        given = getattr(opt, "meshperf_local_" + binary, None)
        if given and not os.path.isfile(path(given)):
            raise UsageError("--local-%s %s: no such file; give the path of the %s binary on this machine to upload"
                             % (binary, given, binary))
        if given:
            local_tools[binary] = path(given)
    for name in ("meshperf_known_hosts", "meshperf_ssh_config"):
        value = getattr(opt, name, None)
        if value and name == "meshperf_ssh_config" and not os.path.isfile(path(value)):
            raise UsageError("--ssh-config %s: no such file" % value)
    remote_dir = getattr(opt, "meshperf_remote_dir", None) or ".meshperf"
    if remote_dir.startswith("~/"):  # remote commands start in the home directory
        remote_dir = remote_dir[2:]
    if not re.match(r"^[A-Za-z0-9._/+-]+$", remote_dir) or remote_dir.startswith("-") or \
            ".." in remote_dir.split("/"):
        raise UsageError("--mesh-remote-dir %r: give a plain directory path (letters, digits, . _ - / +), "
                         "relative to the home directory (~/ allowed) or absolute" % remote_dir)
    return SshOptions(remote_dir=remote_dir, host_key_check=getattr(opt, "meshperf_host_keys", None),
                      known_hosts=path(getattr(opt, "meshperf_known_hosts", None)),
                      ssh_config=path(getattr(opt, "meshperf_ssh_config", None)),
                      connect_timeout_s=getattr(opt, "meshperf_connect_timeout", 10.0),
                      tool_paths={name: getattr(opt, "meshperf_" + name) for name in TOOL_BINARIES
                                  if getattr(opt, "meshperf_" + name, None)},
                      local_tools=local_tools)


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
