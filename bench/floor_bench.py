#!/usr/bin/env python3
"""The floor under `rounds` on this machine: a full mesh of bare iperf3 rounds, no meshperf at all.

A benchmark, not a test. For every size asked for, it builds the same netns
testbed as ``mesh_bench.py`` (N namespaces on 198.18.0.0/15, every node's
egress shaped with htb) and measures the mesh the cheapest way there is:

* one persistent ``iperf3 -s`` per node, started once (meshperf starts a
  server per pair);
* round k (k = 1 .. N-1): node i sends to node i+k. Its clients are forked
  (``ip netns exec``, then ``sh`` waiting for a line) while round k-1's flows
  run, and all released at once, by one write each, as soon as the last
  client of round k-1 has exited. No agent, no RPC, no SSH, no pytest.

So its span over the ideal (N-1) x T is what the machine itself costs a
round: the clients' start, their connection set-up and result exchange, all
on the same cores. meshperf's ``mesh_bench.py`` ratio cannot be below it on
the same machine; the difference is what meshperf adds. It prints figures
and exits 0 (2 when this machine cannot build a testbed). Needs root,
iproute2 and iperf3. From the repository root:

    python3 bench/floor_bench.py --nodes 8,16,32,64 --duration 2 --rate 20mbit
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from machine import machine, machine_line  # noqa: E402  (bench/machine.py)

from pytest_meshperf.testbed import NetnsTestbed, TestbedSpec, unavailable_reason  # noqa: E402

PORT = 5391
ROUND_TIMEOUT_S = 60


def start_servers(tb, names):
    servers = [tb.popen(name, ["iperf3", "-s", "-p", str(PORT), "-B", tb.node(name).address],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name in names]
    for name in names:  # bounded: each listens within milliseconds
        for _ in range(100):
            listening = tb.exec(name, ["ss", "-Hltn", f"sport = :{PORT}"], capture_output=True, text=True, timeout=30)
            if listening.stdout.strip():
                break
            time.sleep(0.05)
    return servers


ARMED = 'read -r _ && exec "$@"'   # the client forked ahead, exec'd when its line comes (as meshperf's agent does)


def arm_round(tb, names, shift, duration):
    """Round ``shift``'s clients forked and held before exec: node i will send to node i+shift."""
    n, armed = len(names), []
    for i, src in enumerate(names):
        dst = names[(i + shift) % n]
        argv = ["sh", "-c", ARMED, "sh", "iperf3", "-c", tb.node(dst).address, "-p", str(PORT),
                "-t", str(duration), "-J", "-B", tb.node(src).address]
        armed.append(tb.popen(src, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True))
    return armed


def release(armed):
    """Every client of a round exec'd at once; their release times."""
    times = []
    for proc in armed:
        times.append(time.time())
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.stdin = None   # communicate() must not touch it again
    return times


def finish(armed, started):
    """(start, end, bits/s) per client, once each has exited."""
    results = []
    for begun, proc in zip(started, armed):
        out, _ = proc.communicate(timeout=ROUND_TIMEOUT_S)
        data = json.loads(out or "{}")
        bps = (data.get("end", {}).get("sum_received") or {}).get("bits_per_second")
        results.append((begun, time.time() if proc.returncode is not None else None, bps))
    return results


def run_rounds(tb, names, duration):
    """Every round back to back: round k+1 forked while round k's flows run, released once they have all
    ended. The end of a client is when this process sees it exit (it waits for each in turn)."""
    rounds, armed = [], arm_round(tb, names, 1, duration)
    for shift in range(1, len(names)):
        started = release(armed)
        following = arm_round(tb, names, shift + 1, duration) if shift + 1 < len(names) else None
        rounds.append(finish(armed, started))
        armed = following
    return rounds


def bench(nodes, duration, rate):
    workdir = tempfile.mkdtemp(prefix="meshperf-floorbench-")
    spec = TestbedSpec(nodes=nodes, rates={f"node{i}": rate for i in range(1, nodes + 1)})
    tb = NetnsTestbed(spec, os.path.join(workdir, "tb")).up()
    servers = []
    try:
        names = [f"node{i}" for i in range(1, nodes + 1)]
        servers = start_servers(tb, names)
        rounds = run_rounds(tb, names, duration)
    finally:
        for server in servers:
            server.kill()
            server.wait(timeout=10)
        tb.down()
    first = min(s for r in rounds for s, _, _ in r)
    last = max(e for r in rounds for _, e, _ in r)
    ideal = (nodes - 1) * duration
    starts = [max(s for s, _, _ in r) - min(s for s, _, _ in r) for r in rounds]
    beyond = [max(e for _, e, _ in r) - min(s for s, _, _ in r) - duration for r in rounds]
    over = [statistics.median(e - s - duration for s, e, _ in r) for r in rounds]
    rates = [b for r in rounds for _, _, b in r if b]
    return {"nodes": nodes, "duration_s": duration, "rate": rate, "flows": sum(len(r) for r in rounds),
            "failed": sum(1 for r in rounds for _, _, b in r if not b), "span_s": round(last - first, 2),
            "ideal_s": ideal, "ratio": round((last - first) / ideal, 3),
            "round_beyond_T_s": round(statistics.median(beyond), 3),
            "client_start_spread_s": round(statistics.median(starts), 3),
            "client_beyond_T_s": round(statistics.median(over), 3),
            "throughput_bps_median": statistics.median(rates) if rates else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="8,16,32", help="testbed sizes, comma-separated (default 8,16,32)")
    parser.add_argument("--duration", type=int, default=2, help="T: seconds per flow (default 2)")
    parser.add_argument("--rate", default="20mbit", help="rate of every node's egress (default 20mbit)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cannot build a netns testbed here: {reason}")
        return 2
    report = {"machine": machine(), "runs": []}
    print(machine_line(report["machine"]))
    print(f"{'nodes':>5} {'flows':>6} {'failed':>6} {'span':>8} {'ideal':>6} {'ratio':>6} {'round>T':>8} "
          f"{'start spread':>12} {'client>T':>8} {'median rate':>12}")
    for nodes in [int(n) for n in args.nodes.split(",") if n]:
        f = bench(nodes, args.duration, args.rate)
        report["runs"].append(f)
        print(f"{f['nodes']:5d} {f['flows']:6d} {f['failed']:6d} {f['span_s']:7.2f}s {f['ideal_s']:5d}s "
              f"{f['ratio']:6.3f} {f['round_beyond_T_s']:7.3f}s {f['client_start_spread_s']:11.3f}s "
              f"{f['client_beyond_T_s']:7.3f}s {(f['throughput_bps_median'] or 0) / 1e6:9.2f} Mb/s")
    report["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
