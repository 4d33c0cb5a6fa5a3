#!/usr/bin/env python3
"""Planning and result aggregation of a simulated 1000-node mesh: a benchmark, not a test.

Issue 4, benchmark (e): a 1000-node mesh has 999,000 directed pairs. Planning
them, and assembling their results at the end of the run, should take no
more than 60 s and 1 GiB together. The script measures:

* planning: 1000 ``inventory.Node`` objects and their ``Cluster``, then
  ``planning.mesh_pairs`` and the pytest ids (``pair.id``), as
  ``pytest_generate_tests`` makes them;
* the journal, as the xdist workers of a run would leave it: one record per
  pair in ``--journals`` files (``gw0.jsonl`` ...), each worker taking one
  source's pairs at a time in round order, as ``scheduling.py`` hands them out
  (``--spread pairs``: pair by pair, round-robin, as xdist's own scheduler),
  each record followed by its index line (``--no-index``: none, as older runs).
  Every record is a ``Measurement.to_record()`` with the real iperf3 client
  and server output of ``bench/data/`` as its raw data and the node load of a
  real record. Pair, times, pids, ports, metrics, thresholds and status vary,
  and so does the node load: ``--cpu-bound-fraction`` of the records (default
  5 %) keep the real record's saturated cores, and with them the CPU-bound
  warnings; the others get its CPU figures scaled down to an idle node's.
  Writing the journal is the measuring run's cost, spread over the run, and is
  reported on its own: a sample goes through ``journal.Journal.append``
  (json.dumps, write, fsync, index line, as a run does it), and the rest is
  written in bulk (generation, not a figure);
* the end of the run: ``assembly.assemble`` (mesh.json and mesh.csv from the
  journal) and the terminal summary that pytest prints after it
  (``reports.terminal.summary_lines``; the lines go to /dev/null).

Planning, assembly and summary run in a child process of their own (a fresh
interpreter), whose peak RSS (``ru_maxrss``, plus any processes it starts,
sampled from /proc) is the memory figure. The assembly runs with the journal
in the page cache ("warm", as right after a run) and/or evicted first
("cold": ``posix_fadvise(DONTNEED)`` on the journal and index files only).
``--collect`` also times ``pytest --collect-only`` on an N-host inventory:
pytest's own items, which are outside the target's definition but live in
the same process.

Nothing passes or fails: it prints figures against the targets and exits 0.
It exits 2 without writing anything when the disk lacks the space the files
need (it says how much). Run from the repository root:

    python3 bench/aggregate_bench.py                     # 1000 nodes, 8 journals, cold and warm
    python3 bench/aggregate_bench.py --nodes 200 --cache warm
    python3 bench/aggregate_bench.py --out /var/tmp/agg --keep --json /tmp/agg.json
    python3 bench/aggregate_bench.py --reuse /var/tmp/agg/meshperf-aggregate-*/2026*   # assemble a kept run again
"""

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from machine import load_average, machine  # noqa: E402  (bench/machine.py)

from pytest_meshperf import __version__
from pytest_meshperf.cluster.inventory import Cluster, Node  # noqa: E402
from pytest_meshperf.measure import measurement  # noqa: E402
from pytest_meshperf.measure.measurement import STATUS_ERROR, Instance, Measurement, cpu_bound_warnings, judge
from pytest_meshperf.plan.links import Pair
from pytest_meshperf.plan.schedule import mesh_pairs  # noqa: E402
from pytest_meshperf.results import assemble as assembly  # noqa: E402
from pytest_meshperf.results import (
    journal,  # noqa: E402
    layout,  # noqa: E402
    rundir,  # noqa: E402
)
from pytest_meshperf.session.run_identity import new_run_id  # noqa: E402
from pytest_meshperf.spec.params import merge_params, parse_params  # noqa: E402
from pytest_meshperf.spec.thresholds import parse_threshold  # noqa: E402
from pytest_meshperf.tools import iperf3 as iperf3_tool  # noqa: E402

TARGET_S = 60.0
TARGET_RSS_BYTES = 1 << 30
DATA_DIR = os.path.join(ROOT, "bench", "data")
CLIENT_RAW = os.path.join(DATA_DIR, "iperf3-tcp-1s-client.json")
SERVER_RAW = os.path.join(DATA_DIR, "iperf3-tcp-1s-server.json")
REAL_RECORD = os.path.join(DATA_DIR, "record-local2-tcp.jsonl")   # its node_load goes into every record
TEST_KEY = "suites/test_tcp.py::test_tcp_throughput"
TEST_NAME = "test_tcp_throughput"
THRESHOLD = ("throughput >= 5Gbit/s", "suites/tcp.yaml:8")
# A real iperf3 error (docs/results.md: a test with congestion="bogus").
ERROR_MESSAGE = "iperf3: unable to set TCP_CONGESTION: Supplied congestion control algorithm not supported on this host"
CLIENT_MARK, SERVER_MARK = "@@bench-client-raw@@", "@@bench-server-raw@@"
CSV_BYTES_PER_RECORD = 320      # a mesh.csv row, for the disk estimate
ROUND_S = 1.3                   # simulated time per measurement and worker: -t 1 plus set-up
GIB, MIB = float(1 << 30), float(1 << 20)


# -- the machine ------------------------------------------------------------------------------
def _status_kb(field):
    """VmRSS / VmHWM of this process, in KB (Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- the simulated cluster and run ---------------------------------------------------------------
def build_cluster(count):
    nodes = tuple(Node(name=f"node{i}", address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                       labels={"rack": f"r{i // 40}"}) for i in range(1, count + 1))
    return Cluster(kind="file", spec=f"hosts-{count}.yaml", nodes=nodes, source=f"/bench/hosts-{count}.yaml")


def cluster_meta(cluster):
    """run.json's cluster, shaped like MeshSession.cluster_meta() after the agents reported."""
    nodes = {}
    for i, node in enumerate(cluster.nodes):
        nodes[node.name] = {
            "address": node.address, "data_address": node.data_address, "role": node.role,
            "labels": dict(node.labels),
            "agent": {"version": __version__, "pid": 4000 + i, "hostname": f"host-{node.name}"},
            "clock_offset_s": 0.0004,
            "tools": {"iperf3": {"version": "3.12", "path": "/usr/bin/iperf3", "error": None}},
            "resources": {"cpu_count": 32, "psutil": True, "memory_total_bytes": 134877044736},
        }
    return {"kind": cluster.kind, "spec": cluster.spec, "source": cluster.source, "nodes": nodes}


def run_meta(run_id, started, count):
    return {"id": run_id, "started": measurement.iso(started), "finished": None, "interrupted": True,
            "exit_status": None, "parameters": {"cluster": f"hosts-{count}.yaml", "schedule": "rounds",
                                               "options": {}, "thresholds": []},
            "command_line": ["pytest", "suites/test_tcp.py", "-n", "8", "--cluster", f"hosts-{count}.yaml"],
            "meshperf_version": __version__}


class Records:
    """Journal records for the planned pairs, as Measurement.to_record() makes them."""

    def __init__(self, journals, seed, fail_fraction, error_fraction, started, cpu_bound_fraction=0.05):
        with open(CLIENT_RAW) as handle:
            self.client = iperf3_tool.load_output(handle.read())
        with open(SERVER_RAW) as handle:
            self.server = iperf3_tool.load_output(handle.read())
        with open(REAL_RECORD) as handle:
            self.node_load = json.loads(handle.readline())["node_load"]   # its cores were saturated
        self.node_load_calm = calm(self.node_load)
        self.cpu_bound_fraction = cpu_bound_fraction
        self.client_json = json.dumps(self.client, separators=(",", ":"))
        self.server_json = json.dumps(self.server, separators=(",", ":"))
        self.metrics = iperf3_tool.metrics_from_json(self.client)
        self.version = iperf3_tool.tool_version(self.client)
        self.params = merge_params(parse_params({"duration": 1}, "suites/tcp.yaml")).to_dict()
        self.thresholds = [parse_threshold(*THRESHOLD)]
        self.journals, self.fail_fraction, self.error_fraction = journals, fail_fraction, error_fraction
        self.random = random.Random(seed)
        self.started = started
        self.statuses = {}

    def measurement(self, number, slot, pair, raw=True):
        """The Measurement of a planned pair, the slot-th its worker measured; raw=False puts markers where
        the tool outputs go."""
        rnd = self.random
        started = self.started + slot * ROUND_S + rnd.uniform(0.0, 0.2)
        result = Measurement(src=pair.src.name, dst=pair.dst.name, test=TEST_KEY,
                             nodeid=f"{TEST_KEY}[{pair.id}]", tool="iperf3", params=dict(self.params),
                             round=pair.round, started=started, finished=started + 1.1 + rnd.uniform(0.0, 0.1))
        draw = rnd.random()
        if draw < self.error_fraction:
            result.status, result.error = STATUS_ERROR, ERROR_MESSAGE
        else:
            scale = rnd.uniform(0.2, 0.39) if draw < self.error_fraction + self.fail_fraction else rnd.uniform(0.6, 1.0)
            metrics = {"throughput_bps": self.metrics["throughput_bps"] * scale,
                       "retransmits": float(rnd.randint(0, 40)),
                       "cpu_local_percent": self.metrics["cpu_local_percent"] * rnd.uniform(0.7, 1.3),
                       "cpu_remote_percent": self.metrics["cpu_remote_percent"] * rnd.uniform(0.7, 1.3)}
            port = 5201 + number % 64
            result.instances = [Instance(
                instance=1, pid=rnd.randint(1000, 4000000), client_port=rnd.randint(32768, 60999), server_port=port,
                start=started + 0.03, end=started + 1.05, metrics=metrics,
                command=f"/usr/bin/iperf3 -c {pair.dst.data_address} -p {port} -J -t 1 -B {pair.src.data_address}",
                raw=self.client if raw else CLIENT_MARK,
                server={"pid": rnd.randint(1000, 4000000), "port": port,
                        "command": f"/usr/bin/iperf3 -s -1 -J -p {port} -B {pair.dst.data_address}",
                        "exit_code": 0, "raw": self.server if raw else SERVER_MARK})]
            result.metrics = dict(metrics)
            result.tool_version = self.version
            result.node_load = self.node_load if rnd.random() < self.cpu_bound_fraction else self.node_load_calm
            result.warnings = cpu_bound_warnings(result)
        judge(result, self.thresholds)
        self.statuses[result.status] = self.statuses.get(result.status, 0) + 1
        return result

    def record(self, number, slot, pair):
        """What fixtures.Measure journals: to_record() plus the test's name."""
        record = self.measurement(number, slot, pair).to_record()
        record["name"] = TEST_NAME
        return record

    def line(self, number, slot, pair):
        """The same journal line (bytes), made faster: the raw outputs are serialised once and spliced in;
        and its record, with markers where the raw outputs are."""
        record = self.measurement(number, slot, pair, raw=False).to_record()
        record["name"] = TEST_NAME
        text = json.dumps(record, separators=(",", ":"))
        if record["instances"]:
            text = text.replace(f'"{CLIENT_MARK}"', self.client_json, 1).replace(f'"{SERVER_MARK}"',
                                                                                  self.server_json, 1)
        return (text + "\n").encode("utf-8"), record


def calm(node_load):
    """The real record's node load with its CPU figures scaled to a third: what an idle node reports."""
    out = {}
    for end, load in node_load.items():
        load = dict(load)
        for key in ("core_busy_mean_percent", "core_softirq_mean_percent"):
            if isinstance(load.get(key), list):
                load[key] = [round(value / 3, 1) for value in load[key]]
        for key in ("busiest_core_mean_percent", "core_busy_peak_percent", "softirq_peak_percent",
                    "cpu_total_peak_percent"):
            if isinstance(load.get(key), (int, float)):
                load[key] = round(load[key] / 3, 1)
        load["saturated_fraction"] = 0.0
        out[end] = load
    return out


def worker_order(pairs, journals, spread):
    """(plan index, worker, the worker's slot) of every pair, in the order the workers measure them.

    ``source``: a worker takes one source's pairs in round order, then the next source no worker has
    (scheduling.py; with measurements of equal length, sources go to the workers in turn).  ``pairs``:
    the plan's pairs one by one, round-robin, as xdist's load scheduler hands them out."""
    if spread == "pairs":
        for number in range(len(pairs)):
            yield number, number % journals, number // journals
        return
    by_source = {}
    for number, pair in enumerate(pairs):
        by_source.setdefault(pair.src.name, []).append(number)
    slots = [0] * journals
    for index, numbers in enumerate(by_source.values()):
        worker = index % journals
        for number in numbers:
            yield number, worker, slots[worker]
            slots[worker] += 1


def write_journals(run_dir, pairs, records, journals, sample, spread, with_index=True):
    """The first ``sample`` records through Journal.append (timed), the rest in bulk, each file in its
    worker's order, each record followed by its index line as Journal.append writes it (unless not
    ``with_index``, or this results.py has no index)."""
    appends, to_records = [], []
    writers = [run_dir.journal(f"gw{w}") for w in range(journals)]
    indexed = with_index and hasattr(journal, "_index_entry") and getattr(writers[0], "index_path", None)
    if not indexed:
        for writer in writers:
            writer.index_path = None
    order = worker_order(pairs, journals, spread)
    for number, worker, slot in order:
        t = time.perf_counter()
        record = records.record(number, slot, pairs[number])
        t2 = time.perf_counter()
        writers[worker].append(record)
        appends.append(time.perf_counter() - t2)
        to_records.append(t2 - t)
        if len(appends) >= sample:
            break
    for writer in writers:
        writer.close()
    t = time.perf_counter()
    for writer in writers:
        os.makedirs(os.path.dirname(writer.path), exist_ok=True)
        if indexed:
            os.makedirs(os.path.dirname(writer.index_path), exist_ok=True)
    handles = [open(w.path, "ab", buffering=1 << 20) for w in writers]
    index_handles = [open(w.index_path, "ab", buffering=1 << 20) for w in writers] if indexed else []
    offsets = [os.path.getsize(w.path) for w in writers]
    try:
        for count, (number, worker, slot) in enumerate(order, len(appends) + 1):
            line, record = records.line(number, slot, pairs[number])
            handles[worker].write(line)
            if indexed:
                entry = journal._index_entry(line, offsets[worker], record)
                if entry is not None:
                    index_handles[worker].write(entry)
            offsets[worker] += len(line)
            if count % 100000 == 0:
                print(f"    ... {count} of {len(pairs)} records", flush=True)
        for handle in handles + index_handles:
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        for handle in handles + index_handles:
            handle.close()
    bulk_s = time.perf_counter() - t
    sizes = [os.path.getsize(w.path) for w in writers]
    index_sizes = [os.path.getsize(w.index_path) for w in writers if indexed and os.path.exists(w.index_path)]
    return {"sample": len(appends), "append_s": appends, "to_record_s": to_records, "bulk_s": bulk_s,
            "bulk_records": len(pairs) - len(appends), "files": [w.path for w in writers], "sizes": sizes,
            "index_bytes": sum(index_sizes)}


def evict(paths):
    """Drops these files' pages from the page cache (they are fsynced), so the next read comes from disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cached_fraction(paths):
    """Share of the files' bytes in the page cache, from util-linux fincore (None when it is missing)."""
    if not shutil.which("fincore"):
        return None
    try:
        out = subprocess.run(["fincore", "-b", "-n", "-o", "RES,SIZE"] + list(paths), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=60).stdout.decode()
        res = size = 0
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2:
                res, size = res + int(parts[0]), size + int(parts[1])
        return res / size if size else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


# -- the timed part, in a child process -----------------------------------------------------------
class RssSampler(threading.Thread):
    """RSS of this process plus its children, every 0.1 s, from /proc: worker processes included (their
    ru_maxrss would count the copy of this process that fork makes before exec)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb = self.peak_children_kb = 0
        self.stop = threading.Event()

    @staticmethod
    def _rss_kb(pid):
        try:
            with open(f"/proc/{pid}/status") as handle:
                return next((int(l.split()[1]) for l in handle if l.startswith("VmRSS:")), 0)
        except (OSError, ValueError):
            return 0

    def _children(self):
        me, found = os.getpid(), []
        try:
            names = os.listdir("/proc")
        except OSError:
            return found
        for name in names:
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as handle:
                        if int(handle.read().rsplit(")", 1)[1].split()[1]) == me:
                            found.append(int(name))
                except (OSError, ValueError, IndexError):
                    pass
        return found

    def run(self):
        while not self.stop.wait(0.1):
            children = sum(self._rss_kb(pid) for pid in self._children())
            self.peak_children_kb = max(self.peak_children_kb, children)
            self.peak_kb = max(self.peak_kb, self._rss_kb(os.getpid()) + children)


def child(run_path, count, summary):
    """Planning, assembly and the terminal summary, as the end of a run does them; prints JSON figures."""
    from pytest_meshperf.reports.terminal import summary_lines
    sampler = RssSampler()
    sampler.start()
    out = {"rss_start_kb": _status_kb("VmRSS")}
    t, cpu = time.perf_counter(), time.process_time()
    cluster = build_cluster(count)
    out["cluster_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pairs = mesh_pairs(cluster)
    out["mesh_pairs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ids = [pair.id for pair in pairs]
    out["ids_s"] = time.perf_counter() - t
    out["planning_cpu_s"] = time.process_time() - cpu
    out["nodes"], out["pairs"] = count, len(pairs)
    out["rss_after_planning_kb"], out["hwm_after_planning_kb"] = _status_kb("VmRSS"), _status_kb("VmHWM")

    steps, steps_cpu = {}, {}   # where assemble's time goes, for the helpers this version of results.py has
    for name in ("_index", "_mesh_order", "_copy_records", "_read_at"):
        original = getattr(assembly, name, None)
        if original is None:
            continue

        def timed(*args, _original=original, _name=name, **kwargs):
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                steps[_name] = steps.get(_name, 0.0) + time.perf_counter() - started
                steps_cpu[_name] = steps_cpu.get(_name, 0.0) + time.process_time() - cpu_started
        setattr(assembly, name, timed)
    run_dir = rundir.RunDir(os.path.dirname(run_path), os.path.basename(run_path))
    t, cpu = time.perf_counter(), time.process_time()
    assembled = assembly.assemble(run_dir, time.time(), False, 1)
    out["assemble_s"] = time.perf_counter() - t
    out["assemble_cpu_s"] = time.process_time() - cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)   # processes assemble started, if any
    out["children_cpu_s"] = children.ru_utime + children.ru_stime
    out["assemble_steps_s"], out["assemble_steps_cpu_s"] = steps, steps_cpu
    out["rows"], out["counts"] = len(assembled.rows), assembled.counts
    out["rss_after_assemble_kb"], out["hwm_after_assemble_kb"] = _status_kb("VmRSS"), _status_kb("VmHWM")
    if summary:
        t, cpu = time.perf_counter(), time.process_time()
        lines = summary_lines([n.name for n in cluster.nodes], assembled.rows, assembled.counts, assembled.path,
                              os.getcwd())
        with open(os.devnull, "w") as sink:
            for line in lines:
                sink.write(line + "\n")
        out["summary_s"] = time.perf_counter() - t
        out["summary_cpu_s"] = time.process_time() - cpu
        out["summary_chars"] = sum(len(line) + 1 for line in lines)
        out["hwm_after_summary_kb"] = _status_kb("VmHWM")
    out["hwm_kb"] = _status_kb("VmHWM")
    sampler.stop.set()
    sampler.join()
    out["sampled_peak_kb"], out["sampled_children_peak_kb"] = sampler.peak_kb, sampler.peak_children_kb
    del ids, pairs
    print(json.dumps(out))
    return 0


def run_child(argv):
    """Runs argv; returns (its last stdout line parsed as JSON or None, wall s, its ru_maxrss in KB, exit code)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=ROOT)
    output = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    lines = output.decode("utf-8", "replace").strip().splitlines()
    try:
        figures = json.loads(lines[-1]) if lines else None
    except ValueError:
        figures = None
    return figures, wall, usage.ru_maxrss, proc.returncode, lines


def collect(work, count):
    """pytest --collect-only on an inventory of ``count`` hosts: pytest's own items for the mesh."""
    folder = os.path.join(work, "collect")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "hosts.yaml"), "w") as handle:
        handle.write("hosts:\n")
        for node in build_cluster(count).nodes:
            handle.write(f"  - name: {node.name}\n    address: {node.address}\n")
    with open(os.path.join(folder, "test_mesh.py"), "w") as handle:
        handle.write("import pytest\n\n\n@pytest.mark.meshperf(duration=1)\ndef test_tcp(mesh_pair, measure):\n"
                     "    measure()\n")
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--cluster",
            os.path.join(folder, "hosts.yaml"), os.path.join(folder, "test_mesh.py")]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=folder)
    output = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    text = output.decode("utf-8", "replace").strip().splitlines()
    return {"wall_s": time.perf_counter() - started, "maxrss_kb": usage.ru_maxrss,
            "exit": os.waitstatus_to_exitcode(status), "last_line": text[-1] if text else ""}


# -- reporting ------------------------------------------------------------------------------------
def _verdict(value, target):
    return "within target" if value <= target else f"MISSES the target ({value / target:.1f}x)"


def _size(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def report_child(label, figures, wall, maxrss_kb, cached, summary):
    planning = figures["cluster_s"] + figures["mesh_pairs_s"] + figures["ids_s"]
    total = planning + figures["assemble_s"]
    steps, steps_cpu = figures["assemble_steps_s"], figures.get("assemble_steps_cpu_s", {})
    cached_text = f"{100 * cached:.0f} %" if cached is not None else "?"
    print(f"\n== {label}: journal {cached_text} in the page cache before assembling")
    print("  (wall time; CPU time of the process in brackets)")
    print(f"  planning     {planning:7.2f} s [{figures['planning_cpu_s']:6.2f} s]  (Cluster of {figures['nodes']} "
          f"nodes {figures['cluster_s']:.3f} s, mesh_pairs {figures['mesh_pairs_s']:.2f} s, {figures['pairs']} pytest "
          f"ids {figures['ids_s']:.2f} s)")
    step_text = ", ".join(f"{name.strip('_')} {seconds:.2f} s [{steps_cpu.get(name, 0.0):.2f} s]"
                          for name, seconds in steps.items())
    print(f"  assemble     {figures['assemble_s']:7.2f} s [{figures['assemble_cpu_s']:6.2f} s]  ({step_text})")
    if figures.get("children_cpu_s"):
        print(f"               plus {figures['children_cpu_s']:.2f} s of CPU in the processes it started")
    print(f"  = planning + assembly {total:.2f} s: {_verdict(total, TARGET_S)} (<= {TARGET_S:.0f} s)")
    if summary and "summary_s" in figures:
        print(f"  terminal summary {figures['summary_s']:.2f} s [{figures['summary_cpu_s']:.2f} s] ("
              f"{figures['summary_chars'] / 1e6:.1f} MB of text); with it, the end of the run takes "
              f"{total + figures['summary_s']:.2f} s: {_verdict(total + figures['summary_s'], TARGET_S)}")
    children_kb = figures.get("sampled_children_peak_kb", 0)
    total_kb = max(maxrss_kb + children_kb, figures.get("sampled_peak_kb", 0))
    split = (f" (this process {maxrss_kb / 1024:.0f} MiB + the processes it started {children_kb / 1024:.0f} MiB)"
             if children_kb else "")
    print(f"  peak RSS {total_kb / 1024:.0f} MiB{split}: {_verdict(total_kb * 1024, TARGET_RSS_BYTES)} "
          f"(<= {TARGET_RSS_BYTES / MIB:.0f} MiB); after start-up and imports {figures['rss_start_kb'] / 1024:.0f} MiB, "
          f"after planning {figures['rss_after_planning_kb'] / 1024:.0f} MiB "
          f"(peak {figures['hwm_after_planning_kb'] / 1024:.0f}), after assembly "
          f"{figures['rss_after_assemble_kb'] / 1024:.0f} MiB")
    print(f"  rows {figures['rows']}, counts {figures['counts']}; child process wall time {wall:.1f} s (interpreter "
          "and imports included)")
    return {"planning_s": planning, "assemble_s": figures["assemble_s"], "total_s": total,
            "summary_s": figures.get("summary_s"), "peak_rss_kb": maxrss_kb, "peak_total_kb": total_kb,
            "cached_fraction": cached, "child": figures, "child_wall_s": wall}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="nodes of the simulated mesh (default 1000)")
    parser.add_argument("--journals", type=int, default=8, help="journal files, one per xdist worker (default 8)")
    parser.add_argument("--out", metavar="DIR", help="where the run directory goes (default: a new temporary "
                                                      "directory, deleted afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the files (journal, mesh.json, mesh.csv)")
    parser.add_argument("--reuse", metavar="RUN_DIR", help="assemble the journal of a run directory kept by "
                                                          "--keep again (no new journal; nothing is deleted)")
    parser.add_argument("--cache", choices=("warm", "cold", "both"), default="both",
                        help="assemble with the journal in the page cache, evicted first, or both (default)")
    parser.add_argument("--spread", choices=("source", "pairs"), default="source",
                        help="how pairs go to the journal files: a source at a time per worker, as meshperf "
                             "schedules them under xdist (default), or pair by pair, round-robin")
    parser.add_argument("--no-index", action="store_true",
                        help="write the journal without its index (as older versions did, or as after losing "
                             "it): assembly then reads the whole journal")
    parser.add_argument("--fsync-sample", type=int, default=2000, metavar="N",
                        help="records written through Journal.append (fsync each) to time it (default 2000)")
    parser.add_argument("--fail-fraction", type=float, default=0.02, help="share of failed records (default 0.02)")
    parser.add_argument("--error-fraction", type=float, default=0.005,
                        help="share of error records (default 0.005)")
    parser.add_argument("--cpu-bound-fraction", type=float, default=0.05,
                        help="share of records whose nodes were CPU-bound, with two warnings each (default 0.05)")
    parser.add_argument("--no-summary", action="store_true", help="do not time the terminal summary")
    parser.add_argument("--collect", action="store_true",
                        help="also time pytest --collect-only on an inventory of --nodes hosts (minutes, GBs)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--json", metavar="FILE", help="also write every figure to this JSON file")
    parser.add_argument("--child", metavar="RUN_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.nodes, not args.no_summary)
    if args.nodes < 2 or args.journals < 1:
        parser.error("--nodes must be at least 2 and --journals at least 1")

    info = machine()
    print(f"meshperf planning and aggregation, {info['date']}")
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']:.1f} GiB RAM, Linux {info['kernel']}, "
          f"Python {info['python']}; meshperf {info['meshperf']}, commit {info['code']}")
    command = ["python3", "bench/aggregate_bench.py"] + (argv if argv is not None else sys.argv[1:])
    print(f"command: {' '.join(command)}")
    print(load_average("at the start"))
    figures = {"machine": info, "journals": args.journals, "spread": args.spread, "runs": {},
               "targets": {"seconds": TARGET_S, "rss_bytes": TARGET_RSS_BYTES}}
    work = None
    try:
        if args.reuse:
            path = os.path.abspath(args.reuse)
            run_dir = rundir.RunDir(os.path.dirname(path), os.path.basename(path))
            args.nodes = len(run_dir.read_meta()["cluster"]["nodes"])
            journal = os.path.join(run_dir.path, layout.JOURNAL_DIR)
            files = sorted(os.path.join(journal, n) for n in os.listdir(journal) if n.endswith(".jsonl"))
            total_bytes = sum(os.path.getsize(f) for f in files)
            needed = 2 * total_bytes + (512 << 20)   # a new mesh.json (and .csv) next to the old one
            free = shutil.disk_usage(run_dir.path).free
            print(f"reusing {run_dir.path}: {args.nodes} nodes, journal {_size(total_bytes)} in {len(files)} files; "
                  f"needs about {_size(needed)} free, {_size(free)} free")
            if free < needed:
                print(f"aggregate_bench: not enough disk space in {run_dir.path}: needs about {_size(needed)}, "
                      f"{_size(free)} free.", file=sys.stderr)
                return 2
        else:
            prepared = prepare(args, figures)
            if prepared is None:
                return 2
            work, run_dir, files, total_bytes = prepared
        figures["nodes"], figures["pairs"] = args.nodes, args.nodes * (args.nodes - 1)

        if args.collect:
            print(f"\npytest --collect-only on {args.nodes} hosts (pytest's items; outside the target's definition) "
                  "...", flush=True)
            collected = collect(work or tempfile.mkdtemp(prefix="meshperf-collect-"), args.nodes)
            print(f"  {collected['last_line']}: {collected['wall_s']:.1f} s, peak RSS "
                  f"{collected['maxrss_kb'] / 1024:.0f} MiB, exit {collected['exit']}")
            figures["collect"] = collected

        modes = ["cold", "warm"] if args.cache == "both" else [args.cache]
        child_argv = [sys.executable, os.path.abspath(__file__), "--child", run_dir.path, "--nodes",
                      str(args.nodes)] + (["--no-summary"] if args.no_summary else [])
        index_dir = os.path.join(run_dir.path, getattr(layout, "INDEX_DIR", "index"))
        index_files = sorted(os.path.join(index_dir, n) for n in os.listdir(index_dir)) if os.path.isdir(index_dir) \
            else []
        if index_files:
            index_bytes = sum(os.path.getsize(f) for f in index_files)
            print(f"\njournal index: {_size(index_bytes)} in {len(index_files)} files")
        else:
            print("\nno journal index: assembly reads the whole journal")
        for mode in modes:
            if mode == "cold":
                evict(files + index_files)
            cached = cached_fraction(files + index_files)
            print(f"\nassembling ({mode}) ...", flush=True)
            out, wall, maxrss, code, lines = run_child(child_argv)
            if code != 0 or out is None:
                tail = "\n    ".join(lines[-10:])
                print(f"  the child process failed (exit {code}):\n    {tail}")
                figures["runs"][mode] = {"failed": code}
                continue
            figures["runs"][mode] = report_child(mode, out, wall, maxrss, cached, not args.no_summary)
        sizes = {name: os.path.getsize(os.path.join(run_dir.path, name))
                 for name in (layout.MESH_FILE, layout.CSV_FILE) if os.path.exists(os.path.join(run_dir.path,
                                                                                                  name))}
        figures["files"] = dict(sizes, journal=total_bytes)
        kept = f"; kept in {run_dir.path}" if args.keep or args.reuse else ""
        print(f"\nfiles: journal {_size(total_bytes)}, mesh.json {_size(sizes.get(layout.MESH_FILE, 0))}, "
              f"mesh.csv {_size(sizes.get(layout.CSV_FILE, 0))}{kept}")
        print(load_average("at the end"))
    finally:
        if work is not None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1, default=str)
    return 0


def prepare(args, figures):
    """Checks the disk, writes run.json and the journal; (work dir, RunDir, journal files, bytes), or None
    when the disk lacks the space."""
    started = time.time()
    cluster = build_cluster(args.nodes)
    count = args.nodes * (args.nodes - 1)   # the disk check comes before planning all pairs
    records = Records(args.journals, args.seed, args.fail_fraction, args.error_fraction, started,
                      args.cpu_bound_fraction)
    sample_line, sample_record = records.line(0, 0, Pair(cluster.nodes[0], cluster.nodes[1], round=1))
    records.statuses.clear()
    index_entry = getattr(journal, "_index_entry", None)
    index_line = index_entry(sample_line, 0, sample_record) if index_entry and not args.no_index else b""
    journal_bytes = (len(sample_line) + len(index_line or b"")) * count
    mesh_bytes = len(sample_line) * count + 300 * args.nodes   # minus src/dst/test, plus run and cluster
    csv_bytes = CSV_BYTES_PER_RECORD * count
    # During the second assembly the first mesh.json and mesh.csv are still there while the new ones are written.
    needed = int((journal_bytes + 2 * (mesh_bytes + csv_bytes)) * 1.05) + (512 << 20)
    base = os.path.abspath(args.out) if args.out else tempfile.gettempdir()
    probe = base
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    print(f"{args.nodes} nodes, {count} pairs, one record each ({len(sample_line)} bytes; raw outputs "
          f"{len(records.client_json)} + {len(records.server_json)} bytes), {args.journals} journal files, spread by "
          f"{args.spread}")
    print(f"disk: needs about {_size(needed)} in {base} (journal and its index {_size(journal_bytes)}, mesh.json "
          f"{_size(mesh_bytes)}, mesh.csv {_size(csv_bytes)}, twice for the second assembly, plus 5 % and 512 MiB); "
          f"{_size(free)} free")
    if free < needed:
        print(f"aggregate_bench: not enough disk space in {base}: needs about {_size(needed)}, {_size(free)} free. "
              "Free some, or choose another place with --out DIR, or fewer nodes (--nodes).",
              file=sys.stderr)
        return None
    pairs = mesh_pairs(cluster)
    if args.out:
        os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="meshperf-aggregate-", dir=base)
    run_dir = rundir.RunDir(work, new_run_id(started))
    run_dir.create(run_meta(run_dir.run_id, started, args.nodes), cluster_meta(cluster))
    print(f"\nwriting the journal into {run_dir.path} ...", flush=True)
    t = time.perf_counter()
    written = write_journals(run_dir, pairs, records, args.journals, args.fsync_sample, args.spread,
                             not args.no_index)
    generate_s = time.perf_counter() - t
    count = len(pairs)
    del pairs
    total_bytes = sum(written["sizes"])
    append = written["append_s"]
    print("\n== journal (the measuring run's cost, spread over the run; not part of the target)")
    index = _size(written["index_bytes"]) if written["index_bytes"] else "none"
    print(f"  {_size(total_bytes)} in {args.journals} files ({_size(total_bytes / args.journals)} each), {count} "
          f"records, {total_bytes / count:.0f} bytes per record; index {index}")
    if append:
        per_record = statistics.mean(append) + statistics.mean(written["to_record_s"])
        print(f"  per record, over {len(append)} records: Measurement.to_record "
              f"{1000 * statistics.mean(written['to_record_s']):.2f} ms, Journal.append (json.dumps, write, fsync"
              f"{', index line' if written['index_bytes'] else ''}) median {1000 * statistics.median(append):.2f} "
              f"ms, p99 {1000 * sorted(append)[int(0.99 * (len(append) - 1))]:.2f} ms")
        print(f"  -> {per_record * count:.0f} s for all {count} records, {per_record * count / args.journals:.0f} s "
              f"per worker of {args.journals}: {100 * per_record / ROUND_S:.2f} % of a {ROUND_S:.1f} s measurement")
    print(f"  (generating it here took {generate_s:.0f} s: {written['bulk_records']} records in bulk, "
          f"{written['bulk_s']:.1f} s, without a per-record fsync)")
    print(f"  statuses written: {dict(sorted(records.statuses.items()))}; {100 * args.cpu_bound_fraction:.0f} % with "
          "CPU-bound warnings")
    figures["journal"] = {"bytes": total_bytes, "files": written["sizes"], "generate_s": generate_s,
                          "index_bytes": written["index_bytes"],
                          "append_sample": len(append),
                          "append_median_s": statistics.median(append) if append else None,
                          "to_record_mean_s": statistics.mean(written["to_record_s"]) if append else None,
                          "statuses": records.statuses}
    return work, run_dir, written["files"], total_bytes


if __name__ == "__main__":
    sys.exit(main())
