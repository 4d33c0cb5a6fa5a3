#!/usr/bin/env python3
"""Set-up time of meshperf on real SSH hosts: a benchmark, not a test.

Builds a netns testbed (``pytest_meshperf.testbed``: N network namespaces,
each with its own sshd, on 198.18.0.0/15) for every size asked for, and times,
on it, the steps that come before any measurement:

* ``meshperf check``, ``meshperf deploy`` (a first deploy that uploads the
  agent bundle, then a second one that transfers nothing), ``meshperf start``
  and ``meshperf stop``: by default the ``pytest_meshperf.control.operations``
  functions the CLI calls, in this process (``--via cli``: the CLI itself, as
  a subprocess, import time included);
* the pytest path: ``Controller(...).start()`` and ``.stop()``, as
  ``MeshSession`` runs them (always in this process).

Each step runs ``--repeat`` times; the script prints the median, min and max
wall time, the remote commands and SSH connections per host, where the time
goes (self time of each kind of SSH operation, per host), and the machine.
Building and tearing down the testbed is timed separately and is not part of
any figure.  Nothing passes or fails: it prints figures and exits 0 (2 when
this machine cannot build a testbed).

Needs root, iproute2, unshare, OpenSSH's sshd and iperf3 (as the testbed does).
Run from the repository root:

    sudo python3 bench/setup_bench.py                 # 4, 16 and 32 nodes, 3 runs each
    python3 bench/setup_bench.py --nodes 4,16 --repeat 5
    python3 bench/setup_bench.py --via cli --json /tmp/setup.json

Notes on method:
* on the testbed all nodes share this machine's file system, so they share one
  ``~/.meshperf``; a "first deploy" therefore uses a bundle of its own (the real
  bundle plus one file with a random nonce, so a fresh ``<version>-<sha12>``
  directory), which every node uploads, and which this script deletes after
  the run. ``start`` then runs with the real bundle already in place (one
  untimed deploy before the first run), as on a cluster that was deployed to.
* the profile wraps a few ``SshNode`` and ``AgentClient`` methods in this
  process to time and count them; it costs microseconds per call.
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from machine import machine  # noqa: E402  (bench/machine.py)

from pytest_meshperf.cluster.inventory import load_cluster  # noqa: E402
from pytest_meshperf.control import operations  # noqa: E402
from pytest_meshperf.control.controller import Controller  # noqa: E402
from pytest_meshperf.testbed import NetnsTestbed, parse_spec, unavailable_reason  # noqa: E402
from pytest_meshperf.transport import bundle
from pytest_meshperf.transport.rpc import AgentClient  # noqa: E402
from pytest_meshperf.transport.ssh import SshNode, SshOptions  # noqa: E402

CLI_TIMEOUT_S = 300.0
STEPS = ("check", "deploy (first)", "deploy (again)", "start", "stop", "Controller.start", "Controller.stop")

# Runs the CLI in a subprocess; argv[1] is a bundle file to use instead of the real one ("-": none).
_CLI_BOOT = """\
import hashlib, sys
from pytest_meshperf import bundle
if sys.argv[1] != "-":
    data = open(sys.argv[1], "rb").read()
    bundle._cache = bundle.Bundle(data, hashlib.sha256(data).hexdigest())
from pytest_meshperf.cli import main
sys.exit(main(sys.argv[2:]))
"""


# -- the profile ----------------------------------------------------------------------
class Profile:
    """Self time and count of labelled calls, per (step, host); nested calls are subtracted."""

    def __init__(self):
        self.step = None
        self.lock = threading.Lock()
        self.local = threading.local()
        self.data = defaultdict(lambda: [0, 0.0])   # (step, host, label) -> [count, self seconds]
        self.marks = defaultdict(list)              # name -> [monotonic times]

    def record(self, host, label, seconds):
        with self.lock:
            entry = self.data[(self.step, host, label)]
            entry[0] += 1
            entry[1] += seconds

    def wrap(self, cls, name, label_of, host_of):
        original = getattr(cls, name)
        profile = self

        def wrapper(obj, *args, **kwargs):
            label = label_of(obj, *args, **kwargs)
            if label is None:
                return original(obj, *args, **kwargs)
            stack = getattr(profile.local, "stack", None)
            if stack is None:
                stack = profile.local.stack = []
            children = [0.0]
            stack.append(children)
            started = time.perf_counter()
            try:
                return original(obj, *args, **kwargs)
            finally:
                took = time.perf_counter() - started
                stack.pop()
                if stack:
                    stack[-1][0] += took
                profile.record(host_of(obj), label, took - children[0])
        setattr(cls, name, wrapper)

    def install(self):
        node = lambda obj: obj.node.name  # noqa: E731
        wraps = (
            (SshNode, "connect", lambda obj, *a, **k: None if obj.conn is not None and obj.conn.is_connected
             else "ssh connect (TCP, key exchange, host key, auth)", node),
            (SshNode, "_connection", lambda obj, *a, **k: "fabric Connection + Config set-up", node),
            (SshNode, "run", lambda obj, argv, *a, **k: _command_label(argv), node),
            (SshNode, "_upload", lambda obj, items, needed: "sftp upload (open, mkdir, put, chmod, rename)"
             if needed else None, node),
            (SshNode, "launch_agent", lambda obj, *a, **k: "agent launch (around its command and uploads)", node),
            (SshNode, "_tunnel", lambda obj, *a, **k: "tunnel to the agent (local listener)", node),
            (SshNode, "_fetch_log", lambda obj, *a, **k: "fetch the agent log (sftp get, remove)", node),
            (SshNode, "_keep_log", lambda obj, *a, **k: "write the agent log here", node),
            (SshNode, "stop_agent", lambda obj, *a, **k: "stop_agent (tunnel close)", node),
            (SshNode, "close", lambda obj, *a, **k: "ssh close" if obj.conn is not None else None, node),
            (AgentClient, "_ensure", lambda obj, *a, **k: None if obj._sock is not None
             else "rpc connect + HMAC handshake", lambda obj: obj.node),
            (AgentClient, "call", lambda obj, method, *a, **k: f"rpc {method}", lambda obj: obj.node),
        )
        for cls, name, label_of, host_of in wraps:
            if hasattr(cls, name):  # the code moves on: profile what exists
                self.wrap(cls, name, label_of, host_of)
        original = Controller._start_one
        profile = self

        def start_one(controller, node):
            try:
                return original(controller, node)
            finally:
                with profile.lock:
                    profile.marks["start_one_end"].append(time.monotonic())
        Controller._start_one = start_one

    def summary(self, step, hosts, runs):
        """label -> (count per host per run, self ms per host per run)."""
        out = {}
        for (s, _host, label), (count, seconds) in self.data.items():
            if s == step:
                c, t = out.get(label, (0, 0.0))
                out[label] = (c + count, t + seconds)
        return {label: (c / hosts / runs, 1000 * t / hosts / runs) for label, (c, t) in out.items()}


def _command_label(argv):
    first = str(argv[0])
    if first == "date":
        return "cmd: date +%s.%N (clock sample)"
    if first == "mkdir":
        return "cmd: mkdir -p"
    if len(argv) > 3 and argv[1:3] == ["-I", "-S"] and str(argv[3]).endswith("agent.pyz"):
        return "cmd: boot + agent launch (python, tools, bundle hash, daemon, ready line)"
    script = str(argv[argv.index("-c") + 1]) if "-c" in argv[1:4] and len(argv) > argv.index("-c") + 1 else ""
    if "meshperf_boot" in script:
        return f"cmd: boot probe (python, tools{', hashes' if '--expect' in argv else ''})"
    if "SIGTERM" in script and len(argv) > argv.index("-c") + 4:  # commands.AGENTS_SCRIPT NODE PIDS MODE [LOG]
        mode, with_log = argv[argv.index("-c") + 4], len(argv) > argv.index("-c") + 5
        return (f"cmd: {'stop agent' if mode == '-' else 'find and stop agents'} (SIGTERM, wait, SIGKILL)"
                f"{', return its log' if with_log else ''}")
    for needle, label in (("tools = {}", "cmd: python3 probe (python, iperf3 --version)"),
                          ("hashlib", "cmd: sha256 of the deployed bundle"),
                          ("SIGTERM", "cmd: stop agent (SIGTERM, wait, SIGKILL)"),
                          ("ns/net", "cmd: find agents (/proc scan)")):
        if needle in script:
            return label
    return f"cmd: {first}"


def _cpu_s():
    """CPU seconds of this process and its waited-for children (the CLI subprocesses)."""
    import resource
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -- steps ----------------------------------------------------------------------------
def variant_bundle():
    """The real agent bundle plus one nonce file: a fresh <version>-<sha12> directory to deploy."""
    real = bundle.build()
    buffer = io.BytesIO(real.data)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("bench-nonce.txt", os.urandom(16).hex())
    data = buffer.getvalue()
    return bundle.Bundle(data, hashlib.sha256(data).hexdigest())


class Bench:
    def __init__(self, args, profile):
        self.args = args
        self.profile = profile
        self.times = defaultdict(list)      # step -> [seconds]
        self.failures = defaultdict(list)   # step -> [messages]
        self.cli_commands = defaultdict(list)  # step -> [remote commands per host, from -v]
        self.uploads = defaultdict(list)    # step -> [hosts that uploaded something]
        self.cpu = defaultdict(list)        # step -> [CPU seconds of this process (and its children)]

    def timed(self, step, func):
        self.profile.step = step
        cpu_before = _cpu_s()
        started = time.monotonic()
        try:
            result = func()
        except Exception as exc:  # a failing step is a figure too; the next one still runs
            result = exc
        took = time.monotonic() - started
        self.cpu[step].append(_cpu_s() - cpu_before)
        self.profile.step = None
        self.times[step].append(took)
        if step.startswith("deploy") and isinstance(result, list):
            self.uploads[step].append(sum(1 for r in result if r.ok and any(
                item.get("transferred_bytes") for item in r.details.values() if isinstance(item, dict))))
        if isinstance(result, Exception):
            self.failures[step].append(f"{type(result).__name__}: {result}")
        elif isinstance(result, list):
            bad = [r for r in result if not r.ok]
            if bad:
                self.failures[step].append(f"{len(bad)}/{len(result)} hosts failed, e.g. {bad[0].node.name}: "
                                           f"{bad[0].message[:160]}")
        return result

    def cli(self, step, tb, command, bundle_file="-"):
        argv = [sys.executable, "-c", _CLI_BOOT, bundle_file, command, "-v", "--cluster", tb.hosts_yaml,
                "--ssh-known-hosts", tb.known_hosts]
        if command == "start":
            argv += ["--lease", f"{self.args.lease:g}"]

        def run():
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=CLI_TIMEOUT_S,
                                 cwd=ROOT)
            text = out.stdout.decode("utf-8", "replace")
            echoed = [l for l in text.splitlines() if l.startswith("    node") and "$ " in l]
            self.cli_commands[step].append(len(echoed) / len(tb.nodes))
            if out.returncode != 0:
                raise RuntimeError(f"exit {out.returncode}: {text.strip().splitlines()[-1:]}")
            return None
        return self.timed(step, run)

    def one_run(self, tb, cluster, options, run_index):
        via_cli = self.args.via == "cli"
        real = bundle.build()
        fresh = variant_bundle()
        fresh_dir = os.path.join(os.path.expanduser("~"), ".meshperf", "agent", fresh.version_dir)
        try:
            if via_cli:
                with tempfile.NamedTemporaryFile(suffix=".pyz", delete=False) as handle:
                    handle.write(fresh.data)
                try:
                    self.cli("check", tb, "check")
                    self.cli("deploy (first)", tb, "deploy", handle.name)
                    self.cli("deploy (again)", tb, "deploy", handle.name)
                finally:
                    os.unlink(handle.name)
                self.cli("start", tb, "start")
                self.cli("stop", tb, "stop")
            else:
                self.timed("check", lambda: operations.check(cluster, options))
                bundle._cache = fresh
                try:
                    self.timed("deploy (first)", lambda: operations.deploy(cluster, options))
                    self.timed("deploy (again)", lambda: operations.deploy(cluster, options))
                finally:
                    bundle._cache = real
                self.timed("start", lambda: operations.start(cluster, options, lease_s=self.args.lease))
                self.timed("stop", lambda: operations.stop(cluster, options))
        finally:
            # The testbed's nodes share this machine's home: the fresh bundle is ours alone, remove it.
            if os.path.basename(fresh_dir).endswith(fresh.sha256[:12]):
                shutil.rmtree(fresh_dir, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="meshperf-bench-") as log_dir:
            controller = Controller(cluster, log_dir, f"bench-{os.getpid()}-{run_index}",
                                    ssh_options=SshOptions(known_hosts=tb.known_hosts))
            self.profile.marks["start_one_end"].clear()
            begun = time.monotonic()
            try:
                self.timed("Controller.start", controller.start)
                ends = list(self.profile.marks["start_one_end"])
                if ends:
                    self.times["  agents started (parallel part)"].append(max(ends) - begun)
                if controller.failed:
                    self.failures["Controller.start"].append(f"{len(controller.failed)} nodes failed, e.g. "
                                                             f"{next(iter(controller.failed.values()))[:160]}")
            finally:
                self.timed("Controller.stop", controller.stop)


def calibrate(cluster, options, samples=5):
    """Sequential round trips on one open connection to the first node: what one remote command costs."""
    remote = SshNode(cluster.nodes[0], options)
    figures = {}
    try:
        started = time.perf_counter()
        remote.connect()
        figures["ssh connect"] = [time.perf_counter() - started]
        for label, argv in (("exec: date", ["date", "+%s.%N"]),
                            ("exec: python3 -I -c pass", [remote.python(), "-I", "-c", "pass"])):
            figures[label] = []
            for _ in range(samples):
                started = time.perf_counter()
                remote.run(argv)
                figures[label].append(time.perf_counter() - started)
    finally:
        remote.close()
    return {label: statistics.median(values) for label, values in figures.items()}


def with_python(hosts_yaml, python):
    """A copy of the testbed's inventory whose nodes run ``python`` (inventory key python)."""
    import yaml
    with open(hosts_yaml) as handle:
        inventory = yaml.safe_load(handle)
    inventory.setdefault("defaults", {})["python"] = python
    path = os.path.join(os.path.dirname(hosts_yaml), "hosts-python.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle, sort_keys=False)
    return path


# -- reporting ----------------------------------------------------------------------------
def _fmt(values):
    return f"{statistics.median(values):7.2f} s {min(values):7.2f} s {max(values):7.2f} s"


def report(n, bench, profile, build_s, down_s, load_before, load_after, via):
    runs = bench.args.repeat
    print(f"\n== netns:{n}  (testbed up {build_s:.2f} s, down {down_s:.2f} s: not in the figures; load average "
          f"{load_before:.2f} -> {load_after:.2f})")
    how = "CLI subprocess" if via == "cli" else "operations.*, in process"
    print(f"  {'step (' + how + ')':<34} {'median':>9} {'min':>9} {'max':>9} {'our CPU':>9}  "
          "remote commands / SSH connections per host")
    rows = {}
    for step in list(STEPS[:5]) + ["Controller.start", "  agents started (parallel part)", "Controller.stop"]:
        values = bench.times.get(step)
        if not values:
            continue
        summary = profile.summary(step, n, runs)
        commands = sum(c for label, (c, _) in summary.items() if label.startswith("cmd:"))
        conns = summary.get("ssh connect (TCP, key exchange, host key, auth)", (0, 0))[0]
        uploads = statistics.mean(bench.uploads[step]) / n if bench.uploads.get(step) else 0.0
        conns_text = f"{conns:.1f}"
        if bench.cli_commands.get(step):  # counted from the CLI's -v lines; connections are not shown there
            commands, conns_text = statistics.mean(bench.cli_commands[step]), "?"
        uploads_text = f", sftp uploads: {uploads:.1f}" if step.startswith("deploy") and not bench.cli_commands.get(
            step) else ""
        extra = "" if step.startswith("  ") else f"{commands:.1f} / {conns_text}{uploads_text}"
        cpu = bench.cpu.get(step)
        cpu_text = f"{statistics.median(cpu):.2f} s" if cpu else ""
        print(f"  {step:<34} {_fmt(values)} {cpu_text:>9}  {extra}")
        for message in bench.failures.get(step, [])[:2]:
            print(f"  {'':<34}   ! {message}")
        rows[step] = {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values),
                      "runs": values, "failures": bench.failures.get(step, []),
                      "controller_cpu_s": statistics.median(cpu) if cpu else None,
                      "commands_per_host": commands, "connections_per_host": conns}
    if True:  # the CLI's steps run in subprocesses: only the in-process steps have a profile there
        print("  where the time goes (self time per host per run, mean; operations run on up to "
              f"{operations.MAX_FAN_OUT} hosts at once):")
        for step in STEPS:
            summary = profile.summary(step, n, runs)
            if not summary:
                continue
            parts = sorted(summary.items(), key=lambda item: -item[1][1])
            print(f"    {step}:")
            for label, (count, ms) in parts:
                if ms >= 0.5:
                    print(f"      {ms:8.1f} ms  {count:4.1f}x  {label}")
            rows.setdefault(step, {})["profile_ms_per_host"] = {label: ms for label, (_, ms) in parts}
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="4,16,32", help="testbed sizes, comma-separated (default: 4,16,32)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every step (default: 3)")
    parser.add_argument("--via", choices=("api", "cli"), default="api",
                        help="api: call pytest_meshperf.control.operations in this process (default); cli: run the "
                             "meshperf CLI as a subprocess (import time included)")
    parser.add_argument("--lease", type=float, default=120.0,
                        help="lease of the agents 'start' starts, so a crashed benchmark leaves none (default 120)")
    parser.add_argument("--python", metavar="PATH",
                        help="set the inventory key python (the nodes' interpreter) to PATH, e.g. /usr/bin/python3")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.nodes.split(",") if s.strip()]
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be in 1..20")
    reason = unavailable_reason()
    if reason:
        print(f"setup_bench: cannot build a netns testbed here: {reason}", file=sys.stderr)
        return 2

    info = machine(tools=True)
    print(f"meshperf set-up time, {info['date']}")
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']:.1f} GiB RAM, Linux {info['kernel']}, "
          f"Python {info['python']}, {info['iperf3']}, {info['openssh']}, fabric {info['fabric']}, paramiko "
          f"{info['paramiko']}")
    print(f"code: meshperf {info['meshperf']}, commit {info['code']}")
    if args.python:
        print(f"nodes run {args.python} (inventory key python)")
    command = ["python3", "bench/setup_bench.py"] + (argv if argv is not None else sys.argv[1:])
    print(f"command: {' '.join(command)}")
    started = time.monotonic()
    import_s = None
    if args.via == "cli":
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", "import pytest_meshperf.cli"], timeout=60, check=True, cwd=ROOT)
        import_s = time.monotonic() - t
        print(f"CLI start-up (python + import pytest_meshperf.cli): {import_s:.2f} s, part of every CLI figure")

    results = {"machine": info, "via": args.via, "repeat": args.repeat, "cli_import_s": import_s, "sizes": {}}
    for n in sizes:
        profile = Profile()
        saved = {name: getattr(SshNode, name) for name in ("connect", "_connection", "run", "_upload",
                                                            "launch_agent",
                                                            "_tunnel", "_fetch_log", "_keep_log", "stop_agent",
                                                            "close")
                 if hasattr(SshNode, name)}
        saved_rpc = {name: getattr(AgentClient, name) for name in ("_ensure", "call")}
        saved_start_one = Controller._start_one
        profile.install()
        bench = Bench(args, profile)
        workdir = tempfile.mkdtemp(prefix="meshperf-bench-tb-")
        tb = NetnsTestbed(parse_spec(f"netns:{n}"), workdir)
        load_before = os.getloadavg()[0]
        build_s = down_s = None
        cluster = calibration = None
        try:
            t = time.monotonic()
            tb.up()
            build_s = time.monotonic() - t
            if args.python:
                tb.hosts_yaml = with_python(tb.hosts_yaml, args.python)
            cluster = load_cluster(tb.hosts_yaml)
            options = SshOptions(known_hosts=tb.known_hosts)
            profile.step = "warm-up"
            operations.deploy(cluster, options)   # untimed: the real bundle in place, as on a deployed cluster
            calibration = calibrate(cluster, options)
            for index in range(args.repeat):
                bench.one_run(tb, cluster, options, index)
        finally:
            profile.step = "teardown"
            if cluster is not None:
                try:
                    operations.stop(cluster, SshOptions(known_hosts=tb.known_hosts), everything=True)
                except Exception as exc:  # down() kills whatever runs in the namespaces anyway
                    print(f"  (stop --all before teardown: {exc})")
                try:
                    os.unlink(operations.state_path(cluster))
                except OSError:
                    pass
            t = time.monotonic()
            tb.down()
            down_s = time.monotonic() - t
            shutil.rmtree(workdir, ignore_errors=True)
            for name, value in saved.items():
                setattr(SshNode, name, value)
            for name, value in saved_rpc.items():
                setattr(AgentClient, name, value)
            Controller._start_one = saved_start_one
        rows = report(n, bench, profile, build_s, down_s, load_before, os.getloadavg()[0], args.via)
        if calibration:
            timed = ", ".join(f"{label} {1000 * value:.0f} ms" for label, value in calibration.items())
            print(f"  one node, one open connection, sequential (median of 5): {timed}")
        results["sizes"][str(n)] = {"testbed_up_s": build_s, "testbed_down_s": down_s, "steps": rows,
                                    "calibration_s": calibration}

    how = "meshperf CLI as a subprocess" if args.via == "cli" else "operations.* in process"
    print(f"\nsummary (median of {args.repeat} runs, seconds; {how}):")
    print(f"  {'nodes':<8}" + "".join(f"{s!s:>17}" for s in STEPS))
    for n in sizes:
        steps = results["sizes"][str(n)]["steps"]
        medians = (f"{steps[s]['median_s']:.2f}" if s in steps and "median_s" in steps[s] else "-" for s in STEPS)
        print(f"  {n:<8d}" + "".join(f"{m:>17}" for m in medians))
    print(f"total benchmark time {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
