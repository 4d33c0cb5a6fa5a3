"""The schedules that load many links at once (burst, incast), pinned instances, and CPU monitoring."""

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from pytest_meshperf.agent.monitor import CpuMonitor

from support.meshcheck import iter_entries, validate_mesh_file
from support.procs import inner_pytest, wait_for
from support.testbed_fixtures import netns_testbed

TCP_TEST = """
import pytest

@pytest.mark.meshperf(duration={duration})
def test_tcp(mesh_pair, measure):
    measure()
"""
RATE_BPS = 200e6


def run_mesh(pytester, out, *args, duration=2):
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=duration))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mesh-out", str(out), *map(str, args))


def entries(out):
    doc = validate_mesh_file(str(Path(out) / "latest" / "mesh.json"))
    return doc, [(src, dst, entry) for src, dst, _, entry in iter_entries(doc)]


def spans(found):
    from datetime import datetime

    def epoch(text):
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
    return [(epoch(inst["start"]), epoch(inst["end"])) for _, _, entry in found for inst in entry["instances"]]


@pytest.mark.alone
@pytest.mark.usefixtures("netns_required")
def test_burst_starts_every_flow_together_and_each_pair_gets_its_share(pytester, tmp_path):
    # Every node's egress is shaped to 200 Mbit/s: in a burst a node's 3 flows share it.
    with netns_testbed(tmp_path / "tb", nodes=4, rates="200mbit") as tb:
        result = run_mesh(pytester, tmp_path / "out", "--cluster", tb.hosts_yaml, "--ssh-known-hosts",
                          tb.known_hosts, "--mesh-schedule", "burst", "-n", "2", duration=3)
    result.assert_outcomes(passed=12)
    doc, found = entries(tmp_path / "out")
    assert doc["run"]["parameters"]["schedule"] == "burst"
    groups = {(e["group"]["start_at"], e["group"]["skew_s"], e["group"]["flows"]) for _, _, e in found}
    assert len(groups) == 1, groups            # one group, run once, whatever worker ran which test
    (_, skew_s, flows), = groups
    assert flows == 12 and 0 <= skew_s < 1.0
    starts, ends = zip(*spans(found))
    assert max(starts) - min(starts) <= skew_s + 1e-3   # every flow started within the recorded skew
    assert max(starts) < min(ends)                      # and all of them ran at the same time
    for node in ("node1", "node2", "node3", "node4"):
        shares = [e["metrics"]["throughput_bps"] for src, _, e in found if src == node]
        # One after the other, each flow would get the whole link (about 191 Mbit/s, 573 together);
        # at once, they share it (TCP over one shaped class does not share fairly in 3 s, so only the sum is asserted).
        assert len(shares) == 3 and 0.8 * RATE_BPS < sum(shares) <= 1.01 * RATE_BPS, shares


def test_incast_sends_every_other_node_to_one(pytester, tmp_path):
    result = run_mesh(pytester, tmp_path / "out", "--cluster", "local:4", "--mesh-schedule", "incast:node3",
                      duration=1)
    result.assert_outcomes(passed=3)
    doc, found = entries(tmp_path / "out")
    assert sorted((src, dst) for src, dst, _ in found) == [("node1", "node3"), ("node2", "node3"), ("node4", "node3")]
    assert {(e["group"]["schedule"], e["group"]["target"], e["group"]["flows"]) for _, _, e in found} == \
        {("incast", "node3", 3)}
    starts, ends = zip(*spans(found))
    assert max(starts) < min(ends)
    assert doc["run"]["parameters"]["schedule"] == "incast:node3"


def _pinned_clients(addresses):
    """iperf3 clients to the testbed's addresses, with their CPU affinity: [(pid, [cores])]."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "iperf3" and "-c" in cmdline and set(cmdline) & addresses:
            try:
                found.append((proc.pid, proc.cpu_affinity()))
            except psutil.Error:
                pass
    return found


@pytest.mark.usefixtures("netns_required")
def test_instances_auto_runs_pinned_processes_per_pair(pytester, tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("instances=auto needs 2 free cores on both ends to run more than one process")
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=4))
    with netns_testbed(tmp_path / "tb", nodes=2, rates="500mbit") as tb:
        addresses = {tb.node(name).address for name in ("node1", "node2")}
        with inner_pytest(pytester, "--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts,
                          "--mesh-instances", "auto", "--mesh-out", tmp_path / "out") as proc:
            running = wait_for(lambda: [c for c in [_pinned_clients(addresses)] if len(c) >= 2] or None, 60,
                               what="two iperf3 clients of one pair")[0]
            proc.wait(120)
    assert proc.returncode == 0, proc.stdout.read().decode()
    assert all(len(cores) == 1 for _, cores in running), running          # each pinned to one core
    assert len({cores[0] for _, cores in running}) == len(running)       # and to its own
    _, found = entries(tmp_path / "out")
    assert len(found) == 2
    for _, _, entry in found:
        instances = entry["instances"]
        assert len(instances) >= 2 and entry["params"]["instances"] == "auto"
        assert len({i["cpu"] for i in instances}) == len(instances) and None not in {i["cpu"] for i in instances}
        assert entry["metrics"]["throughput_bps"] == pytest.approx(sum(i["metrics"]["throughput_bps"]
                                                                       for i in instances))


@pytest.mark.alone
def test_pinned_loopback_flows_are_reported_cpu_bound(pytester, tmp_path):
    # On loopback nothing limits iperf3 but the CPU: with its client and server pinned to one core,
    # that core is saturated, and the run says so.
    result = run_mesh(pytester, tmp_path / "out", "--cluster", "local:2", "--mesh-instances", "2", duration=2)
    result.assert_outcomes(passed=2)
    _, found = entries(tmp_path / "out")
    for src, _, entry in found:
        load = entry["node_load"]["src"]
        assert load["samples"] >= 4 and load["pinned_core"] is not None and load["process_cpu_percent"] > 0, load
        assert entry["warnings"] and f"sender {src} was CPU-bound (its iperf3 " in entry["warnings"][0]
    result.stdout.fnmatch_lines(["CPU-bound or otherwise doubtful (2 of 2 measurements*",
                                 "  node1->node2 test_tcp: sender node1 was CPU-bound (its iperf3 *"])


@pytest.mark.alone
def test_monitor_sees_a_saturated_core():
    core = sorted(os.sched_getaffinity(0))[0]
    monitor = CpuMonitor(interval_s=0.1).start()
    try:
        busy = subprocess.Popen([sys.executable, "-c", f"import os, time\nos.sched_setaffinity(0, {{{core}}})\nend = "
                                                       "time.monotonic() + 1.5\nwhile time.monotonic() < end: pass"])
        monitor.open("busy")
        busy.wait(30)
        load = monitor.close("busy")
    finally:
        monitor.stop()
    assert load["samples"] >= 5 and load["cores"] == psutil.cpu_count()
    assert load["core_busy_mean_percent"][core] >= 90 and load["saturated_fraction"] >= 0.5, load
    assert load["memory_used_peak_bytes"] > 0 and monitor.close("busy") is None


def test_inventory_limits_reach_the_agents(pytester, tmp_path):
    hosts = pytester.makefile(".yaml", hosts="""
        defaults: {max_processes: 2, ports: 5300-5309, max_send: 1}
        hosts:
          - {name: a, address: 127.0.0.21}
          - {name: b, address: 127.0.0.22}
    """)
    result = run_mesh(pytester, tmp_path / "out", "--cluster", hosts, duration=1)
    result.assert_outcomes(passed=2)
    doc, found = entries(tmp_path / "out")
    for node in ("a", "b"):
        assert doc["cluster"]["nodes"][node]["limits"] == {"max_processes": 2, "max_send": 1, "max_recv": 1,
                                                           "ports": [5300, 5309]}
    assert all(5300 <= e["instances"][0]["server_port"] <= 5309 for _, _, e in found)
    # Three instances need three servers on the destination: over its cap, a clear error.
    capped = run_mesh(pytester, tmp_path / "capped", "--cluster", hosts, "--mesh-instances", "3", duration=1)
    capped.assert_outcomes(errors=2)
    capped.stdout.fnmatch_lines(["*runs its maximum of 2 tool processes*"])
    # No client ran (its server could not start): nothing of a client is recorded.
    assert all(e["status"] == "error" and e["client"] is None for _, _, e in entries(tmp_path / "capped")[1])


def test_burst_error_keeps_what_the_client_did(pytester, tmp_path):
    # iperf3 runs and rejects the congestion algorithm in every flow of the group.
    pytester.makepyfile(test_mesh="""
        import pytest

        @pytest.mark.meshperf(duration=1, congestion="nosuchcc")
        def test_cc(mesh_pair, measure):
            measure()
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mesh-out", str(tmp_path / "out"),
                                           "--cluster", "local:2", "--mesh-schedule", "burst")
    result.assert_outcomes(errors=2)
    _, found = entries(tmp_path / "out")
    for src, dst, entry in found:
        client = entry["client"]
        assert "TCP_CONGESTION" in entry["error"] and "-C nosuchcc" in client["command"], entry
        assert "TCP_CONGESTION" in client["stdout"] and isinstance(client["exit_code"], int)
