#!/usr/bin/env python3
"""Full-mesh wall time, per-test overhead and throughput ratio on real SSH hosts: a benchmark, not a test.

For every size asked for, builds a netns testbed (``pytest_meshperf.testbed``:
N network namespaces with their own sshd on 198.18.0.0/15, every node's egress
shaped with htb) and runs a one-test TCP suite on it through real pytest, once
per schedule:

* (a) **wall time of the full mesh** per schedule: from the first measurement's
  start to the last one's end (from ``mesh.json``; agent set-up excluded, which
  ``setup_bench.py`` measures), against the ideal: ``rounds`` (N-1) x T (no
  xdist needed; ``--xdist N`` runs every schedule with ``-n N``), ``sequential`` N(N-1) x T, ``burst`` and ``incast`` 1 x T; the
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

from machine import machine, machine_line  # noqa: E402  (bench/machine.py)

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


def run_schedule(tb, workdir, schedule, nodes, duration, workers=0):
    out = os.path.join(workdir, "out-" + schedule.replace(":", "-"))
    junit = os.path.join(workdir, f"junit-{schedule.replace(':', '-')}.xml")
    xdist = ["-n", str(workers)] if workers else []   # rounds needs none: the controller runs each round at once
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_mesh.py",
            "--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts, "--mesh-schedule", schedule,
            "--mesh-out", out, "--junitxml", junit, "--mesh-progress", "-1"] + xdist
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(argv, cwd=workdir, stdout=output, stderr=subprocess.STDOUT, text=True)
        peak = watch(proc.pid, proc, deadline_s=3600)
        wall = time.monotonic() - started
        output.seek(0)
        proc.stdout = output.read()
    found = list(entries(os.path.join(out, "latest", "mesh.json")))
    statuses = [e["status"] for _, _, e in found]
    first = min(epoch(e["started"]) for _, _, e in found)
    last = max(epoch(e["finished"]) for _, _, e in found)
    ideal = ideal_rounds(schedule, nodes) * duration
    figures = {"schedule": schedule, "nodes": nodes, "duration_s": duration, "pairs": len(found),
               "passed": statuses.count("passed"), "pytest_wall_s": round(wall, 2),
               "mesh_wall_s": round(last - first, 2), "ideal_s": ideal, "ratio": round((last - first) / ideal, 3),
               "exit": proc.returncode, "controller": peak}
    if proc.returncode != 0:
        figures["output_tail"] = proc.stdout[-1500:]
    groups = {json.dumps(e.get("group"), sort_keys=True) for _, _, e in found if e.get("group")}
    if groups:
        figures["skew_s"] = max(json.loads(g)["skew_s"] or 0 for g in groups)
    measured = [epoch(e["finished"]) - epoch(e["started"]) - duration for _, _, e in found]
    tests = [float(case.get("time")) - duration for case in ET.parse(junit).getroot().iter("testcase")]
    figures["measurement_overhead_s"] = _spread(measured)
    figures["test_overhead_s"] = _spread(tests)
    figures["throughput_bps"] = {f"{s}->{d}": e["metrics"].get("throughput_bps") for s, d, e in found}
    return figures


def watch(pid, proc, deadline_s):
    """The pytest process's peak RSS, threads and open files, sampled every 0.2 s until it exits (bounded)."""
    peak = {"rss_mib": 0.0, "threads": 0, "fds": 0, "used_mib": 0.0}
    deadline = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as handle:
                status = dict(line.split(":", 1) for line in handle if ":" in line)
            peak["rss_mib"] = max(peak["rss_mib"], int(status["VmRSS"].split()[0]) / 1024)
            peak["threads"] = max(peak["threads"], int(status["Threads"]))
            peak["fds"] = max(peak["fds"], len(os.listdir(f"/proc/{pid}/fd")))
            peak["used_mib"] = max(peak["used_mib"], used_mib())
        except (OSError, KeyError, ValueError):
            pass  # exiting
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    peak["rss_mib"] = round(peak["rss_mib"], 1)
    return peak


def used_mib():
    """The machine's memory in use (total - available), MiB."""
    with open("/proc/meminfo") as handle:
        info = {line.split(":")[0]: int(line.split()[1]) for line in handle}
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def link_spread(measured, reference):
    """Each link's rate against the same link's in ``reference``: min, median, and how many fell below 0.95."""
    ratios = [measured[link] / reference[link] for link in measured if measured[link] and reference.get(link)]
    return {"links": len(ratios), "min": min(ratios, default=0.0), "median": statistics.median(ratios or [0.0]),
            "below_0_95": sum(r < 0.95 for r in ratios)}


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
        raise RuntimeError(f"raw iperf3 {sender}->{receiver}: {client.stdout[-300:]}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="4,8", help="testbed sizes, comma-separated (default 4,8)")
    parser.add_argument("--duration", type=int, default=5, help="T: seconds per measurement (default 5)")
    parser.add_argument("--rate", default="200mbit", help="rate of every node's egress (default 200mbit)")
    parser.add_argument("--schedules", default="rounds,sequential,burst,incast",
                        help="schedules to run (incast means incast:node1)")
    parser.add_argument("--raw-pairs", type=int, default=12,
                        help="pairs compared with raw iperf3 per size (default 12; 0: none)")
    parser.add_argument("--xdist", type=int, default=0, metavar="N",
                        help="run pytest with -n N (default: no xdist; rounds does not need it)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cannot build a netns testbed here: {reason}")
        return 2
    schedules = ["incast:node1" if s == "incast" else s for s in args.schedules.split(",") if s]
    report = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "runs": [], "throughput_ratio": []}
    print(machine_line(report["machine"]))
    for nodes in [int(n) for n in args.nodes.split(",")]:
        workdir = tempfile.mkdtemp(prefix="meshperf-meshbench-")
        with open(os.path.join(workdir, "test_mesh.py"), "w") as handle:
            handle.write(SUITE.format(duration=args.duration))
        spec = TestbedSpec(nodes=nodes, rates={f"node{i}": args.rate for i in range(1, nodes + 1)})
        before_mib, up_from = used_mib(), time.monotonic()
        tb = NetnsTestbed(spec, os.path.join(workdir, "tb")).up()
        up_s, testbed_mib = time.monotonic() - up_from, used_mib() - before_mib
        report.setdefault("testbeds", []).append({"nodes": nodes, "up_s": round(up_s, 2),
                                                  "testbed_mib": round(testbed_mib, 1)})
        try:
            print(f"\ntestbed of {nodes} nodes up in {up_s:.1f} s; {testbed_mib:.0f} MiB "
                  f"({testbed_mib / nodes:.1f} MiB per node: namespaces, veths, sshd)")
            print(f"\n== {nodes} nodes, T = {args.duration} s, every node's egress shaped to {args.rate} ==")
            print(f"{'schedule':<14} {'pairs':>6} {'passed':>7} {'mesh wall':>9} {'ideal':>8} {'ratio':>7} "
                  f"{'pytest':>7} {'test overhead med (min-max)':>26}")
            sequential, by_schedule = None, {}
            for schedule in schedules:
                figures = run_schedule(tb, workdir, schedule, nodes, args.duration, args.xdist)
                report["runs"].append(figures)
                over = figures["test_overhead_s"]
                skew = f"  skew {figures['skew_s']:.3f} s" if "skew_s" in figures else ""
                print(f"{schedule:<14} {figures['pairs']:6d} {figures['passed']:7d} {figures['mesh_wall_s']:8.2f}s "
                      f"{figures['ideal_s']:7.0f}s {figures['ratio']:7.3f} {figures['pytest_wall_s']:6.1f}s "
                      f"{over['median']:12.3f} ({over['min']:.3f}-{over['max']:.3f}){skew}")
                peak = figures["controller"]
                run_mib = peak["used_mib"] - before_mib - testbed_mib
                print(f"{'':<14} controller peak: {peak['rss_mib']:.0f} MiB RSS, {peak['threads']} threads, "
                      f"{peak['fds']} open files; machine +{run_mib:.0f} MiB at the peak of the run "
                      f"({run_mib / nodes:.1f} MiB per node: agents, tools, controller)")
                if figures["exit"]:
                    print(f"   pytest exited {figures['exit']}:\n{figures['output_tail']}")
                if schedule == "sequential":
                    sequential = figures
                by_schedule[schedule] = figures
            if sequential and "rounds" in by_schedule:
                # Per link: does measuring a round's pairs together cost any link its rate?
                spread = link_spread(by_schedule["rounds"]["throughput_bps"], sequential["throughput_bps"])
                report.setdefault("link_spread", []).append({"nodes": nodes, **spread})
                print(f"rounds / sequential per link, over {spread['links']} links: min {spread['min']:.3f} "
                      f"(median {spread['median']:.3f}); below 0.95: {spread['below_0_95']}")
            if sequential:
                m = sequential["measurement_overhead_s"]
                print("per-measurement overhead (sequential, mesh.json finished - started - T): median "
                      f"{m['median']:.3f} s ({m['min']:.3f}-{m['max']:.3f})")
                ratios = []
                for pair, measured in list(sequential["throughput_bps"].items())[:args.raw_pairs]:
                    src, dst = pair.split("->")
                    raw = raw_iperf3(tb, src, dst, args.duration)
                    ratios.append(measured / raw)
                    report["throughput_ratio"].append({"nodes": nodes, "pair": pair, "meshperf_bps": measured,
                                                       "raw_bps": raw, "ratio": round(measured / raw, 4)})
                if ratios:
                    print(f"throughput meshperf / raw iperf3 over {len(ratios)} pairs: median "
                          f"{statistics.median(ratios):.4f} ({min(ratios):.4f}-{max(ratios):.4f})")
        finally:
            tb.down()
    report["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
