#!/usr/bin/env python3
"""Full-mesh wall time, per-test overhead and throughput ratio on real SSH hosts: a benchmark, not a test.

For every size asked for, builds a netns testbed (``pytest_meshperf.testbed``:
N network namespaces with their own sshd on 198.18.0.0/15, every node's egress
shaped with tbf) and runs a one-test TCP suite on it through real pytest, once
per schedule:

* (a) **wall time of the full mesh** per schedule: from the first measurement's
  start to the last one's end (from ``mesh.json``; agent set-up excluded, which
  ``setup_bench.py`` measures), against the ideal: ``rounds`` (N-1) x T with
  ``-n N``, ``sequential`` N(N-1) x T, ``burst`` and ``incast`` 1 x T; the
  whole pytest command's wall time is printed too;
* (b) **per-test orchestration overhead** (``sequential``, no xdist): the
  pytest test's own time (JUnit ``time``: set-up, call, teardown) minus T, and
  the measurement's (``finished - started`` in ``mesh.json``: leases, server
  start, client, collection) minus T; medians, min and max;
* (c) **measured throughput over raw iperf3** on the same shaped links:
  ``sequential``'s figure per pair against a plain ``iperf3 -c`` run between the
  same namespaces right after, with the same duration.

Nothing passes or fails: it prints figures (and ``--json`` writes them) and
exits 0 (2 when this machine cannot build a testbed). Needs root, iproute2,
OpenSSH's sshd and iperf3. From the repository root:

    python3 bench/mesh_bench.py                            # N = 4 and 8, T = 5 s, every schedule
    python3 bench/mesh_bench.py --nodes 4 --duration 3 --schedules rounds,burst
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from machine import machine  # noqa: E402  (bench/machine.py)

from pytest_meshperf.testbed import NetnsTestbed, TestbedSpec, unavailable_reason  # noqa: E402

SUITE = """
import pytest

@pytest.mark.meshperf(duration={duration})
def test_tcp(mesh_pair, measure):
    measure()
"""
RAW_PORT = 5390


def epoch(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def entries(mesh_path):
    with open(mesh_path) as handle:
        doc = json.load(handle)
    for src, source in doc["sources"].items():
        for dst, destination in source["destinations"].items():
            for entry in destination["tests"].values():
                yield src, dst, entry


def ideal_rounds(schedule, nodes):
    return {"rounds": nodes - 1, "sequential": nodes * (nodes - 1)}.get(schedule.split(":")[0], 1)


def run_schedule(tb, workdir, schedule, nodes, duration):
    out = os.path.join(workdir, "out-" + schedule.replace(":", "-"))
    junit = os.path.join(workdir, "junit-%s.xml" % schedule.replace(":", "-"))
    xdist = ["-n", str(nodes)] if schedule == "rounds" else []
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_mesh.py",
            "--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts, "--mesh-schedule", schedule,
            "--mesh-out", out, "--junitxml", junit, "--mesh-progress", "-1"] + xdist
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=3600)
    wall = time.monotonic() - started
    found = list(entries(os.path.join(out, "latest", "mesh.json")))
    statuses = [e["status"] for _, _, e in found]
    first = min(epoch(e["started"]) for _, _, e in found)
    last = max(epoch(e["finished"]) for _, _, e in found)
    ideal = ideal_rounds(schedule, nodes) * duration
    figures = {"schedule": schedule, "nodes": nodes, "duration_s": duration, "pairs": len(found),
               "passed": statuses.count("passed"), "pytest_wall_s": round(wall, 2),
               "mesh_wall_s": round(last - first, 2), "ideal_s": ideal, "ratio": round((last - first) / ideal, 3),
               "exit": proc.returncode}
    if proc.returncode != 0:
        figures["output_tail"] = proc.stdout[-1500:]
    groups = {json.dumps(e.get("group"), sort_keys=True) for _, _, e in found if e.get("group")}
    if groups:
        figures["skew_s"] = max(json.loads(g)["skew_s"] or 0 for g in groups)
    measured = [epoch(e["finished"]) - epoch(e["started"]) - duration for _, _, e in found]
    tests = [float(case.get("time")) - duration for case in ET.parse(junit).getroot().iter("testcase")]
    figures["measurement_overhead_s"] = _spread(measured)
    figures["test_overhead_s"] = _spread(tests)
    figures["throughput_bps"] = {"%s->%s" % (s, d): e["metrics"].get("throughput_bps") for s, d, e in found}
    return figures


def _spread(values):
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4)} if values else None


def raw_iperf3(tb, sender, receiver, duration):
    addr = tb.node(receiver).address
    server = tb.popen(receiver, ["iperf3", "-s", "-1", "-B", addr, "-p", str(RAW_PORT)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = None
        for _ in range(100):  # bounded: the server listens within milliseconds
            time.sleep(0.05)
            client = tb.exec(sender, ["iperf3", "-c", addr, "-p", str(RAW_PORT), "-t", str(duration), "-J"],
                             capture_output=True, text=True, timeout=duration + 30)
            data = json.loads(client.stdout or "{}")
            if "error" not in data:
                return float(data["end"]["sum_received"]["bits_per_second"])
        raise RuntimeError("raw iperf3 %s->%s: %s" % (sender, receiver, client.stdout[-300:]))
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="4,8", help="testbed sizes, comma-separated (default 4,8)")
    parser.add_argument("--duration", type=int, default=5, help="T: seconds per measurement (default 5)")
    parser.add_argument("--rate", default="200mbit", help="tbf rate of every node's egress (default 200mbit)")
    parser.add_argument("--schedules", default="rounds,sequential,burst,incast",
                        help="schedules to run (incast means incast:node1)")
    parser.add_argument("--raw-pairs", type=int, default=12,
                        help="pairs compared with raw iperf3 per size (default 12; 0: none)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print("cannot build a netns testbed here: %s" % reason)
        return 2
    schedules = ["incast:node1" if s == "incast" else s for s in args.schedules.split(",") if s]
    report = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "runs": [], "throughput_ratio": []}
    print("machine: %(nproc)s CPUs (%(cpu)s), Linux %(kernel)s, Python %(python)s, meshperf %(meshperf)s at %(code)s"
          % report["machine"])
    for nodes in [int(n) for n in args.nodes.split(",")]:
        workdir = tempfile.mkdtemp(prefix="meshperf-meshbench-")
        with open(os.path.join(workdir, "test_mesh.py"), "w") as handle:
            handle.write(SUITE.format(duration=args.duration))
        spec = TestbedSpec(nodes=nodes, rates={"node%d" % i: args.rate for i in range(1, nodes + 1)})
        tb = NetnsTestbed(spec, os.path.join(workdir, "tb")).up()
        try:
            print("\n== %d nodes, T = %d s, every node's egress shaped to %s ==" % (nodes, args.duration, args.rate))
            print("%-14s %6s %7s %9s %8s %7s %7s %26s" % ("schedule", "pairs", "passed", "mesh wall", "ideal",
                                                         "ratio", "pytest", "test overhead med (min-max)"))
            sequential = None
            for schedule in schedules:
                figures = run_schedule(tb, workdir, schedule, nodes, args.duration)
                report["runs"].append(figures)
                over = figures["test_overhead_s"]
                print("%-14s %6d %7d %8.2fs %7.0fs %7.3f %6.1fs %12.3f (%.3f-%.3f)%s" % (
                    schedule, figures["pairs"], figures["passed"], figures["mesh_wall_s"], figures["ideal_s"],
                    figures["ratio"], figures["pytest_wall_s"], over["median"], over["min"], over["max"],
                    "  skew %.3f s" % figures["skew_s"] if "skew_s" in figures else ""))
                if figures["exit"]:
                    print("   pytest exited %d:\n%s" % (figures["exit"], figures["output_tail"]))
                if schedule == "sequential":
                    sequential = figures
            if sequential:
                m = sequential["measurement_overhead_s"]
                print("per-measurement overhead (sequential, mesh.json finished - started - T): median %.3f s "
                      "(%.3f-%.3f)" % (m["median"], m["min"], m["max"]))
                ratios = []
                for pair, measured in list(sequential["throughput_bps"].items())[:args.raw_pairs]:
                    src, dst = pair.split("->")
                    raw = raw_iperf3(tb, src, dst, args.duration)
                    ratios.append(measured / raw)
                    report["throughput_ratio"].append({"nodes": nodes, "pair": pair, "meshperf_bps": measured,
                                                       "raw_bps": raw, "ratio": round(measured / raw, 4)})
                if ratios:
                    print("throughput meshperf / raw iperf3 over %d pairs: median %.4f (%.4f-%.4f)" % (
                        len(ratios), statistics.median(ratios), min(ratios), max(ratios)))
        finally:
            tb.down()
    report["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
