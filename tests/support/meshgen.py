"""A generated mesh.json of N nodes, valid under mesh.schema.json, for reports of sizes no test can measure.

Every entry is a real recorded entry (tests/data/report/mesh-3-nodes.json, the TCP test) with its pair,
figures, ports, commands and verdicts rewritten: a 10 Gbit/s fabric (about 9.4 Gbit/s per link), one
sick sender (node SICK sends at about a fifth), one slow link, a dead server (every pair into DEAD is
an error), a few scattered errors and a few pairs not measured.  Which pairs are which is returned with
the document, so tests know what the report must show.

    python tests/support/meshgen.py 100 mesh-100.json [--raw]   # --raw keeps the recorded iperf3 JSON per entry
"""

import copy
import json
import os
import random
import sys

from pytest_meshperf.spec.metrics import METRICS, format_value

RECORDED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "report",
                        "mesh-3-nodes.json")   # tests/data: this file also runs as a script
TEST_KEY = "suites/test_tcp.py::test_tcp_throughput"
THRESHOLD_BPS = 8e9
REFUSED = "iperf3: error - unable to connect to server - server may have stopped running or not started: " \
          "Connection refused"


def _template():
    with open(RECORDED, encoding="utf-8") as handle:
        mesh = json.load(handle)
    entry = mesh["sources"]["node1"]["destinations"]["node2"]["tests"]["tests/data/report/record_suite.py::test_tcp"]
    return mesh, entry


def _address(i):
    return f"198.18.{i // 250}.{i % 250 + 1}"


def generate(nodes=100, seed=7, raw=False):
    """(mesh document, expected) where expected maps (src, dst) to "passed", "failed", "error" or None."""
    rng = random.Random(seed)
    recorded, template = _template()
    (recorded_instance,) = template["instances"]
    recorded_raw = recorded_instance["raw"] if raw else {}
    template["instances"] = [dict(recorded_instance, raw={}, server=dict(recorded_instance["server"], raw=None))]
    template_json = json.dumps(template)
    names = [f"node{i}" for i in range(1, nodes + 1)]
    sick, dead, slow = names[nodes * 37 // 100], names[nodes * 63 // 100], (names[11 % nodes], names[nodes * 8 // 10])
    pairs = [(a, b) for a in names for b in names if a != b]
    unmeasured = set(rng.sample(pairs, min(3, len(pairs) // 10)))
    scattered = set(rng.sample([p for p in pairs if dead not in p and p not in unmeasured], min(5, len(pairs) // 10)))
    node_template = recorded["cluster"]["nodes"]["node1"]
    cluster = {"kind": "file", "spec": "hosts.yaml", "source": "/etc/meshperf/hosts.yaml", "nodes": {}}
    for i, name in enumerate(names):
        node = copy.deepcopy(node_template)
        node.update(address=_address(i), data_address=_address(i), labels={"rack": f"r{i // 20 + 1}"})
        node["agent"]["hostname"] = name
        cluster["nodes"][name] = node
    run = dict(recorded["run"], id="20261122T100000Z-9e1d", started="2026-11-22T10:00:00.000000Z",
               finished="2026-11-22T10:41:12.000000Z", exit_status=1,
               command_line=["pytest", "suites/test_tcp.py", "--cluster", "hosts.yaml", "-n", "16"])
    run["parameters"] = dict(run["parameters"], cluster="hosts.yaml", schedule="rounds")
    mesh = {"meshperf_version": recorded["meshperf_version"], "schema_version": recorded["schema_version"],
            "run": run, "cluster": cluster, "sources": {}}
    expected = {}
    for index, (src, dst) in enumerate(pairs):
        if (src, dst) in unmeasured:
            expected[(src, dst)] = None
            continue
        entry = json.loads(template_json)   # a fresh copy, faster than deepcopy for 9,900 entries
        start_s = 12.4 * (index % nodes)   # rounds of disjoint pairs, 10 s each and the set-up
        entry.update(nodeid=f"{TEST_KEY}[{src}->{dst}]", name="test_tcp_throughput", round=index % nodes + 1,
                     started=_at(start_s), finished=_at(start_s + 10.4))
        entry["params"] = dict(entry["params"], duration_s=10)
        if dst == dead or (src, dst) in scattered:
            entry.update(status="error", metrics={}, instances=[], node_load={}, warnings=[], tool_version=None,
                         error=REFUSED if dst == dead else f"agent on {src}: iperf3 client timed out after 25 s")
            entry["thresholds"] = [dict(t, measured=None, passed=None, message="not evaluated: no measurement")
                                   for t in _thresholds(entry)]
            expected[(src, dst)] = "error"
        else:
            bps = 9.41e9 * rng.uniform(0.985, 1.0)
            if src == sick:
                bps = rng.uniform(1.8e9, 2.3e9)
            elif (src, dst) == slow:
                bps = 4.62e9
            retransmits = float(rng.randint(0, 40) + (900 if src == sick else 0))
            metrics = {"throughput_bps": bps, "retransmits": retransmits,
                       "cpu_local_percent": rng.uniform(20, 45), "cpu_remote_percent": rng.uniform(30, 60)}
            entry["metrics"] = metrics
            (instance,) = entry["instances"]
            port = 5201 + index % 50
            instance.update(pid=10000 + index, client_port=40000 + index % 20000, server_port=port, metrics=metrics,
                            command=f"/usr/bin/iperf3 -c {cluster['nodes'][dst]['data_address']} -p {port} -J -t 10 -B "
                                    f"{cluster['nodes'][src]['data_address']}",
                            raw=recorded_raw)
            instance["server"] = dict(instance["server"], pid=20000 + index, port=port,
                                      command=f"/usr/bin/iperf3 -s -1 -J -p {port} -B "
                                              f"{cluster['nodes'][dst]['data_address']}", raw=None)
            entry["thresholds"] = [_judged(t, metrics) for t in _thresholds(entry)]
            entry["status"] = "failed" if any(t["passed"] is False for t in entry["thresholds"]) else "passed"
            entry["warnings"] = [] if src != sick else [
                f"sender {src} was CPU-bound (its iperf3 used 99% of a core; a core saturated in 100% of the samples, "
                "softirq peak 61%): this measured the CPU, not the network"]
            entry["node_load"]["src"]["process_cpu_percent"] = 99.0 if src == sick else round(rng.uniform(40, 70), 1)
            expected[(src, dst)] = entry["status"]
        mesh["sources"].setdefault(src, {"destinations": {}})["destinations"].setdefault(dst, {"tests": {}})[
            "tests"][TEST_KEY] = entry
    return mesh, expected


def _at(seconds):
    minutes, rest = divmod(seconds, 60)
    return f"2026-11-22T{int(10 + minutes // 60):02d}:{int(minutes % 60):02d}:{rest:09.6f}Z"


def _thresholds(entry):
    return [dict(t, expression=e, metric=m, op=o, value=v, unit=u, origin="suites/tcp.yaml:9")
            for t, (e, m, o, v, u) in zip(entry["thresholds"], (
                ("throughput >= 8Gbit/s", "throughput_bps", ">=", THRESHOLD_BPS, "Gbit/s"),
                ("retransmits <= 500", "retransmits", "<=", 500.0, "")))]


def _judged(threshold, metrics):
    measured = metrics[threshold["metric"]]
    passed = measured >= threshold["value"] if threshold["op"] == ">=" else measured <= threshold["value"]
    shown = format_value(threshold["metric"], measured)
    limit = format_value(threshold["metric"], threshold["value"])
    op = threshold["op"] if passed else {">=": "<", "<=": ">"}[threshold["op"]]
    name = METRICS[threshold["metric"]].label
    return dict(threshold, measured=measured, passed=passed,
                message=f"{name} {shown} {op} {limit} ({threshold['origin']})")


def main(argv):
    if len(argv) < 2 or not argv[0].isdigit():
        sys.stderr.write("usage: python tests/support/meshgen.py NODES OUT.json [--raw]\n")
        return 2
    mesh, _ = generate(int(argv[0]), raw="--raw" in argv[2:])
    with open(argv[1], "w", encoding="utf-8") as handle:
        json.dump(mesh, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
