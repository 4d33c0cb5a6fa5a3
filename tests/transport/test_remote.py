"""Remote clusters over SSH, on real hosts: sshd in network namespaces (the netns testbed).

Each test builds its own testbed (about a second), drives a real pytest run of
mesh tests against it over SSH with verified host keys, and checks what the
run recorded and what it left on the nodes.  In CI the testbed must be
available: there these tests fail instead of skipping.
"""

import json
import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest

from support.meshcheck import validate_mesh_file
from support.paths import SUITES
from support.procs import inner_pytest, processes_on, wait_for
from support.testbed_fixtures import iperf3_rate, netns_testbed

pytestmark = pytest.mark.usefixtures("netns_required")


TCP_TEST = """
import pytest

@pytest.mark.meshperf(duration={duration})
def test_tcp(mesh_pair, measure):
    measure()
"""


def run_against(pytester, tb, out, *args, duration=1):
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=duration))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", tb.hosts_yaml,
                                         "--ssh-known-hosts", tb.known_hosts, "--mesh-out", str(out), *args)


def mesh_entries(out):
    mesh = validate_mesh_file(str(Path(out) / "latest" / "mesh.json"))
    found = {}
    for src, source in mesh["sources"].items():
        for dst, destination in source["destinations"].items():
            (entry,) = destination["tests"].values()
            found[(src, dst)] = entry
    return mesh, found


def test_tcp_suite_over_ssh_with_verified_host_keys(pytester, tmp_path):
    shutil.copy(SUITES / "test_tcp.py", pytester.path / "test_tcp.py")   # profile="tcp": the shipped one
    with netns_testbed(tmp_path / "tb", nodes=4) as tb:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", tb.hosts_yaml,
                                               "--ssh-known-hosts", tb.known_hosts, "--mesh-out",
                                               str(tmp_path / "out"), "--mesh-duration", "1")
        result.assert_outcomes(passed=12)
        mesh, entries = mesh_entries(tmp_path / "out")
        assert len(entries) == 12
        for name, node in mesh["cluster"]["nodes"].items():
            assert node["ssh"]["host_key_check"] == "yes"
            assert node["address"] == tb.node(name).address
        for (src, dst), entry in entries.items():
            assert f"-c {tb.node(dst).address}" in entry["instances"][0]["command"]
        assert processes_on(tb) == []

        # The same run against an empty known_hosts connects nowhere: keys really are verified.
        empty = tmp_path / "empty_known_hosts"
        empty.write_text("")
        refused = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", tb.hosts_yaml,
                                                "--ssh-known-hosts", str(empty), "--mesh-out",
                                                str(tmp_path / "out2"), "--mesh-duration", "1")
        refused.assert_outcomes(errors=12)
        _, entries = mesh_entries(tmp_path / "out2")
        assert all("unknown host key" in e["error"] for e in entries.values())
        assert empty.read_text() == ""


@pytest.mark.alone
@pytest.mark.plugin_defaults
def test_shaped_host_fails_exactly_its_outgoing_pairs(pytester, tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=4, rates={"node2": "200mbit"}) as tb:
        result = run_against(pytester, tb, tmp_path / "out", "--mesh-threshold", "throughput>=500Mbit/s",
                             duration=3)
        result.assert_outcomes(passed=9, failed=4)   # node2's 3 pairs, and the diagnosis: sender node2
        result.stdout.re_match_lines([r".*node2->node1: throughput 1\d\d\.?\d* Mbit/s < 500 Mbit/s \(--mesh-threshold\)"])
        _, entries = mesh_entries(tmp_path / "out")
        failed = {pair for pair, entry in entries.items() if entry["status"] == "failed"}
        assert failed == {("node2", "node1"), ("node2", "node3"), ("node2", "node4")}
        raw_bps = iperf3_rate(tb, "node2", "node3", seconds=3)
        measured_bps = entries[("node2", "node3")]["metrics"]["throughput_bps"]
        assert abs(measured_bps / raw_bps - 1) <= 0.05, (measured_bps, raw_bps)


@pytest.mark.parametrize("mode, outcome", [("error", "errors"), ("skip", "skipped")])
def test_unreachable_host(pytester, tmp_path, mode, outcome):
    with netns_testbed(tmp_path / "tb", nodes=3) as tb:
        tb.stop_sshd("node3")
        result = run_against(pytester, tb, tmp_path / "out", "--mesh-unreachable", mode)
        result.assert_outcomes(passed=2, **{outcome: 4})
        _, entries = mesh_entries(tmp_path / "out")
        assert set(entries) == ({("node1", "node2"), ("node2", "node1")} if mode == "skip" else
                                {(a, b) for a in ("node1", "node2", "node3") for b in ("node1", "node2", "node3")
                                 if a != b})
        for pair, entry in entries.items():
            if "node3" in pair:
                assert entry["status"] == "error"
                assert f"node3 ({tb.node('node3').address}): cannot connect to port 22" in entry["error"]
            else:
                assert entry["status"] == "passed"
        assert processes_on(tb) == []


def test_changed_host_key_is_refused_before_any_login(pytester, tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=3) as tb:
        tb.regenerate_host_key("node2")
        result = run_against(pytester, tb, tmp_path / "out")
        result.assert_outcomes(passed=2, errors=4)
        _, entries = mesh_entries(tmp_path / "out")
        for pair, entry in entries.items():
            if "node2" in pair:
                assert "HOST KEY CHANGED" in entry["error"] and "ssh-keygen" in entry["error"]
        log = Path(tb.workdir, "node2", "sshd.log").read_text()
        assert "Accepted publickey" not in log  # no login happened: no command could have run


def test_agent_killed_mid_run(pytester, tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=3) as tb:
        pytester.makepyfile(test_mesh=TCP_TEST.format(duration=3))
        with inner_pytest(pytester, "--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts,
                          "--mesh-out", tmp_path / "out") as proc:
            def node3_agent_while_measuring():
                procs = processes_on(tb)
                agents = [p for p in procs if p[0] == "node3" and "agent.pyz" in p[2]]
                return agents if any(p[2].startswith("iperf3 -c") or "/iperf3 -c" in p[2] for p in procs) else None
            (_, pid, _), = wait_for(node3_agent_while_measuring, 60, what="node3's agent during the first pair")
            os.kill(pid, signal.SIGKILL)
            proc.wait(120)
        assert proc.returncode == 1
        _, entries = mesh_entries(tmp_path / "out")
        statuses = {pair: entry["status"] for pair, entry in entries.items()}
        assert statuses == {("node1", "node2"): "passed", ("node2", "node1"): "passed",
                            ("node1", "node3"): "error", ("node2", "node3"): "error",
                            ("node3", "node1"): "error", ("node3", "node2"): "error"}
        assert processes_on(tb) == []


def test_sigkilled_pytest_leaves_nothing_after_the_lease(pytester, tmp_path):
    lease_s = 5
    with netns_testbed(tmp_path / "tb", nodes=3) as tb:
        pytester.makepyfile(test_mesh=TCP_TEST.format(duration=10))
        with inner_pytest(pytester, "--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts,
                          "--mesh-out", tmp_path / "out", "--mesh-lease", lease_s) as proc:
            wait_for(lambda: any(p[1] and "iperf3 -c" in p[2] for p in processes_on(tb)), 60,
                     what="a running measurement")
            assert len([p for p in processes_on(tb) if "agent.pyz" in p[2]]) == 3
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        # Agents notice the silence after the lease and stop their iperf3; bounded wait, generous margin.
        wait_for(lambda: processes_on(tb) == [], lease_s + 20, interval_s=0.2,
                 what="agents and iperf3 to be gone from every node")


def canary_path(tmp_path):
    return tmp_path / (f"canary-{uuid.uuid4().hex[:8]}")


@pytest.mark.parametrize("field", ["name", "address", "data_address", "ssh_user", "ssh_jump", "python", "iperf3"])
@pytest.mark.parametrize("evil", ["a;touch {c}", "$(touch {c})", "`touch {c}`", "a'b\"c", "a b", "x|touch {c}"])
def test_shell_metacharacters_in_inventory_are_rejected(pytester, tmp_path, field, evil):
    mark = canary_path(tmp_path)
    host = {"name": "node1", "address": "127.0.0.11"}
    host[field] = evil.format(c=mark)
    hosts = pytester.path / "hosts.yaml"
    hosts.write_text(json.dumps({"hosts": [host, {"name": "node2", "address": "127.0.0.12"}]}))
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=1))
    result = pytester.runpytest_subprocess("--cluster", str(hosts))
    assert result.ret == 4
    assert "hosts.yaml:1: host" in result.stderr.str() and field in result.stderr.str()
    assert not mark.exists()


def test_shell_metacharacters_that_pass_travel_safely(pytester, tmp_path):
    """Values validation lets through (a key path, labels, --iperf3) reach the nodes quoted, never run."""
    mark = f"canary-{uuid.uuid4().hex[:8]}"   # a bare name: wherever a shell would run, it would land there
    places = [Path(pytester.path), tmp_path, Path.home(), Path("/"), Path("/tmp")]
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        evil_key = tmp_path / (f"key $(touch {mark}); `touch {mark}` 'q\"")
        shutil.copy(tb.user_key, evil_key)
        os.chmod(evil_key, 0o600)
        text = Path(tb.hosts_yaml).read_text()
        assert f"ssh_key: {tb.user_key}\n" in text
        text = text.replace(f"ssh_key: {tb.user_key}\n", f"ssh_key: {json.dumps(str(evil_key))}\n")
        note = json.dumps(f"$(touch {mark}); `touch {mark}`")
        text = text.replace("labels:\n", f"labels:\n    note: {note}\n", 1)
        hosts = tmp_path / "evil-hosts.yaml"
        hosts.write_text(text)
        pytester.makepyfile(test_mesh=TCP_TEST.format(duration=1))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", str(hosts),
                                               "--ssh-known-hosts", tb.known_hosts,
                                               "--mesh-out", str(tmp_path / "out"))
        result.assert_outcomes(passed=2)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", str(hosts),
                                               "--ssh-known-hosts", tb.known_hosts,
                                               "--iperf3", f"iperf3;touch {mark}",
                                               "--mesh-out", str(tmp_path / "out2"))
        result.assert_outcomes(errors=2)
        _, entries = mesh_entries(tmp_path / "out2")
        assert all("not found on the node" in e["error"] for e in entries.values())
    assert [str(p / mark) for p in places if (p / mark).exists()] == []
