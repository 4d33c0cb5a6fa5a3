"""netperf as meshperf's second tool: recorded output parsed, native arguments, real runs on the embedded
cluster and over SSH on the netns testbed (real netserver and netperf), usage errors, missing netperf."""

import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import psutil
import pytest

from pytest_meshperf.agent import protocol
from pytest_meshperf.errors import ParameterError
from pytest_meshperf.spec.params import merge_params, parse_params
from pytest_meshperf.tools import iperf3, netperf
from pytest_meshperf.tools.args import ArgError
from pytest_meshperf.tools.errors import ToolFailure
from pytest_meshperf.transport.local import start_agent
from pytest_meshperf.transport.rpc import AgentClient

from support.meshcheck import validate_mesh_file
from support.paths import DATA as TEST_DATA
from support.paths import SUITES
from support.procs import processes_on, wait_for
from support.testbed_fixtures import netns_testbed
from support.usage import MESH_TEST, assert_usage_error

DATA = TEST_DATA / "netperf"
SECRET = "n3tp3rf" * 10


def recorded(name):
    return (DATA / name).read_text()


# -- output recorded from real netperf runs (tests/data/netperf/README.md says how) -------------------------
def test_rr_output_gives_transaction_rate_and_latency_percentiles():
    data = netperf.load_output(recorded("tcp-rr-1s.out"))
    metrics = netperf.metrics_from_json(data)
    assert metrics == {"transaction_rate": 41235.878, "latency_mean_us": 24.17, "latency_p50_us": 22.0,
                       "latency_p90_us": 24.0, "latency_p99_us": 88.0, "cpu_local_percent": 100.0,
                       "cpu_remote_percent": 100.0}
    assert data["stdout"] == recorded("tcp-rr-1s.out")  # the raw output is kept whole


def test_send_output_gives_throughput_in_bits_per_second_and_no_latency():
    metrics = netperf.metrics_from_json(netperf.load_output(recorded("tcp-send-1s.out")))
    assert metrics == {"throughput_bps": 5038.51e6, "cpu_local_percent": 99.51, "cpu_remote_percent": 99.50}
    udp = netperf.load_output(recorded("udp-send-1s.out"))
    assert netperf.metrics_from_json(udp)["throughput_bps"] == 295.38e6
    assert udp["selectors"]["THROUGHPUT_CONFID"] == "-1.000"   # a user's own selector, kept
    counted = netperf.metrics_from_json(netperf.load_output(recorded("udp-send-counts-1s.out")))
    assert counted["packets"] == 166876 and counted["lost_packets"] == 166876 - 156087
    assert counted["lost_percent"] == pytest.approx(100.0 * (166876 - 156087) / 166876)
    assert "transaction_rate" not in counted and counted["throughput_bps"] == 1748.01e6


def test_no_netserver_is_a_tool_failure_with_netperfs_words():
    with pytest.raises(ToolFailure, match="netperf printed no result: establish_control could not establish"):
        netperf.load_output(recorded("no-netserver.out"))


# -- native arguments -----------------------------------------------------------------------------------
def test_spec_style_netperf_arguments_map_onto_meshperf_parameters():
    mapped, global_args, test_args = netperf.native_params("-d send -l 30 -o THROUGHPUT,P50_LATENCY,P99_LATENCY")
    assert mapped == {"test": "send", "duration_s": 30, "selectors": ["THROUGHPUT", "P50_LATENCY", "P99_LATENCY"]}
    mapped, global_args, test_args = netperf.native_params(["-i", "10,3", "-T", "0,1", "--", "-d", "rr", "-r",
                                                            "64,1024", "-D", "-o", "JSON,MEAN_LATENCY"])
    assert mapped == {"test": "rr", "request_size": 64, "response_size": 1024, "selectors": ["MEAN_LATENCY"]}
    assert (global_args, test_args) == (["-i", "10,3", "-T", "0,1"], ["-D"])
    argv = netperf.client_argv("netperf", "198.18.0.2", 5201, {"duration_s": 2, "test": "rr", "args": global_args,
                                                               "test_args": test_args}, bind="198.18.0.1")
    dash = argv.index("--")
    assert argv[:dash][-4:] == ["-i", "10,3", "-T", "0,1"] and argv[dash:][:5] == ["--", "-d", "rr", "-T", "tcp"]
    assert netperf.expected_runtime_s({"duration_s": 2, "args": global_args}) == 20  # up to 10 iterations


@pytest.mark.parametrize("module, args, named", [
    (netperf, "-H 10.0.0.1", "-H"), (netperf, "-l 5 -- -H 10.0.0.1", "-H"), (netperf, "-p 12865", "-p"),
    (netperf, "-L 10.0.0.2", "-L"), (netperf, "-t TCP_RR", "-t TCP_RR"), (netperf, "-o P99_LATNCY", "P99_LATENCY"),
    (netperf, "-- -P 5000", "-P"), (iperf3, "-c 10.0.0.1", "-c"), (iperf3, "--bind=10.0.0.2", "--bind"),
    (iperf3, "-J", "-J"), (iperf3, "-n 1G", "-n"), (iperf3, "--logfile /tmp/x", "--logfile"),
    # Glued or bundled short options would hide an owned one: refused, with the separate-word spelling.
    (iperf3, "-c10.0.0.1", "'-c 10.0.0.1'"), (iperf3, "-Rc 10.0.0.1", "'-R c'"),
    (netperf, "-H10.0.0.1", "'-H 10.0.0.1'"), (netperf, "-- -L10.0.0.1", "'-L 10.0.0.1'"),
])
def test_an_argument_meshperf_owns_is_refused_by_name(module, args, named):
    with pytest.raises(ArgError, match=named.replace("-", r"\-")):
        module.native_params(args)


def test_parameters_of_the_other_tool_are_refused_but_command_line_ones_are_ignored():
    with pytest.raises(ParameterError, match=r"t\.py: mark: parallel=4 is a parameter of iperf3 only; this test "
                                             r"measures with netperf"):
        merge_params(parse_params({"tool": "netperf", "parallel": 4}, "t.py: mark"))
    with pytest.raises(ParameterError, match="test='rr' is a parameter of netperf only"):
        merge_params(parse_params({"test": "rr"}, "t.py: mark"))
    params = merge_params(parse_params({"tool": "netperf", "args": "-d rr -l 3"}, "t.py: mark"),
                          parse_params({"parallel": 4, "duration": 2}, "command line"))
    assert (params.test, params.duration_s, params.parallel) == ("rr", 2, 1)
    assert "parallel" not in params.tool_params()


# -- real runs ---------------------------------------------------------------------------------------------
def copy_latency_suite(pytester):
    shutil.copy(SUITES / "test_latency.py", pytester.path / "test_latency.py")   # profile="latency": shipped


def latency_entries(mesh_path):
    mesh = validate_mesh_file(str(mesh_path))
    return {(src, dst): entry for src, source in mesh["sources"].items()
            for dst, destination in source["destinations"].items()
            for entry in destination["tests"].values()}


def assert_latency_recorded(entries, pairs):
    assert set(entries) == pairs
    for entry in entries.values():
        assert entry["status"] == "passed" and entry["tool"] == "netperf"
        assert entry["metrics"]["latency_p50_us"] <= entry["metrics"]["latency_p99_us"]
        assert entry["metrics"]["transaction_rate"] > 0
        (instance,) = entry["instances"]
        assert instance["raw"]["stdout"].startswith("THROUGHPUT=") and "P99_LATENCY=" in instance["raw"]["stdout"]
        assert " -- -d rr -T tcp " in instance["command"]
        assert instance["server"]["shared"] is True and "netserver -D" in instance["server"]["command"]


def tool_pids(entries):
    return {pid for entry in entries.values() for inst in entry["instances"]
            for pid in (inst["pid"], inst["server"]["pid"])}


def assert_gone(pids):
    """None of ``pids`` is a netperf or netserver still running.  A zombie has ended: a per-test netserver child
    killed with its group after netserver itself is reaped by whatever init this machine has, eventually."""
    left = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and proc.name() in ("netperf", "netserver"):
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    assert left == [], f"netperf processes left behind: {left}"


def test_latency_suite_on_the_embedded_cluster(pytester, mesh_out):
    copy_latency_suite(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "--mesh-out",
                                           str(mesh_out), "--mesh-duration", "1")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_latency.py::test_tcp_latency: p50 latency", "*node1 *-*us",
                                 "*test_latency.py::test_tcp_latency: p99 latency", "*node1 *-*us"])
    entries = latency_entries(mesh_out / "latest" / "mesh.json")
    assert_latency_recorded(entries, {("node1", "node2"), ("node2", "node1")})
    # One netserver per node, shared by every measurement to it; none outlives the run.
    assert len({entry["instances"][0]["server"]["pid"] for entry in entries.values()}) == 2
    assert_gone(tool_pids(entries))


def test_p99_threshold_not_met_fails_every_pair_with_a_readable_message(pytester, mesh_out):
    copy_latency_suite(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "--mesh-out",
                                           str(mesh_out), "--mesh-duration", "1", "--mesh-threshold",
                                           "p99_latency<=1us")
    result.assert_outcomes(failed=2)
    for pair in ("node1->node2", "node2->node1"):
        result.stdout.re_match_lines([rf".*{pair}: p99 latency [0-9.]+ us > 1 us \(--mesh-threshold\)"])
    for entry in latency_entries(mesh_out / "latest" / "mesh.json").values():
        assert entry["status"] == "failed"
        assert [t["passed"] for t in entry["thresholds"] if t["metric"] == "latency_p99_us"] == [False]


@pytest.mark.parametrize("args, fragments", [
    (["--mesh-tool-args=-H 10.0.0.1"], ["--mesh-tool-args", "-H", "meshperf sets the target host"]),
    (["--mesh-tool-args=-d rr -- -L 10.0.0.1"], ["--mesh-tool-args", "-L"]),
    (["--mesh-tool", "iperf3"], ["profiles/latency.yaml:8: test='rr' is a parameter of netperf only; this test "
                                 "measures with iperf3"]),
    (["--mesh-tool-args=-o P99_LATNCY"], ["P99_LATNCY", "did you mean 'P99_LATENCY'"]),
])
def test_native_argument_breaking_meshperfs_control_is_a_usage_error(pytester, args, fragments):
    copy_latency_suite(pytester)
    assert_usage_error(pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", *args),
                       *fragments)


@pytest.mark.parametrize("mark, fragments", [
    ('tool="netperf", args=["-d", "rr", "-p", "12865"]', ["test_mesh.py::test_link: mark", "-p", "allocates"]),
    ('args="-t 2 -c 10.0.0.1"', ["test_mesh.py::test_link: mark", "iperf3 args", "-c", "meshperf sets the target"]),
])
def test_mark_args_owned_by_meshperf_are_a_usage_error(pytester, mark, fragments):
    pytester.makepyfile(test_mesh=MESH_TEST.format(mark=mark))
    assert_usage_error(pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2"), *fragments)


def test_node_without_netperf_errors_with_the_install_hint_and_check_says_so(pytester, mesh_out):
    pytester.path.joinpath("hosts.yaml").write_text(
        "hosts:\n  - {name: node1, address: 127.0.0.11}\n"
        "  - {name: node2, address: 127.0.0.12, netperf: /opt/no-such/netperf}\n")
    pytester.makepyfile(test_mesh="""
        import pytest

        @pytest.mark.meshperf(tool="netperf", test="rr", duration=1)
        def test_rr(mesh_pair, measure):
            measure()

        @pytest.mark.meshperf(duration=1)
        def test_tcp(mesh_pair, measure):
            measure()
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "hosts.yaml", "--mesh-out",
                                           str(mesh_out))
    result.assert_outcomes(passed=2, errors=2)   # iperf3 still measures both pairs
    result.stdout.fnmatch_lines(["*MeasurementError: node*node*/opt/no-such/netperf not found*non-free*"])
    check = [sys.executable, "-m", "pytest_meshperf.cli", "check", "--cluster", "hosts.yaml"]
    out = subprocess.run(check, cwd=pytester.path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "netperf missing: /opt/no-such/netperf not found; install it (Debian ships it in the non-free" in out.stdout
    out = subprocess.run(check + ["--tool", "netperf"], cwd=pytester.path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "1/2 hosts online" in out.stdout


def test_agent_restarts_a_netserver_that_died(tmp_path):
    handle = start_agent(types.SimpleNamespace(name="node1", data_address="127.0.0.11"), SECRET, str(tmp_path), 60.0)
    try:
        client = AgentClient("node1", handle.connect, SECRET)
        start = {"tool": "netperf", "role": "server", "bind": "127.0.0.11", "timeout_s": 30}
        first = client.call("process.start", start)
        assert first["shared"] and client.call("process.start", start)["pid"] == first["pid"]
        victim = psutil.Process(first["pid"])
        victim.kill()
        victim.wait(10)
        again = client.call("process.start", start)
        assert again["pid"] != first["pid"] and psutil.Process(again["pid"]).name() == "netserver"
    finally:
        handle.stop()
    assert_gone([first["pid"], again["pid"]])


@pytest.mark.alone
@pytest.mark.usefixtures("netns_required")
def test_latency_suite_over_ssh_on_the_netns_testbed(pytester, tmp_path):
    copy_latency_suite(pytester)
    with netns_testbed(tmp_path / "tb", nodes=2) as tb:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", tb.hosts_yaml,
                                               "--ssh-known-hosts", tb.known_hosts, "--mesh-out",
                                               str(tmp_path / "out"), "--mesh-duration", "1")
        result.assert_outcomes(passed=2)
        entries = latency_entries(tmp_path / "out" / "latest" / "mesh.json")
        assert_latency_recorded(entries, {("node1", "node2"), ("node2", "node1")})
        for (src, dst), entry in entries.items():   # each end bound to its own node's address
            assert f" -L {tb.node(src).address} " in entry["instances"][0]["command"]
        assert processes_on(tb, names=("netperf", "netserver")) == []


def test_netserver_serves_no_client_without_the_runs_passphrase_and_stops_with_its_children(tmp_path):
    # Stands for any file the agent's user can read on the node; netperf takes fill file names below 32
    # characters (the same check then refuses both the bare and the keyed client: no test).
    handle_fd, name = tempfile.mkstemp(prefix="mpv", dir="/tmp")
    os.write(handle_fd, b"not for the data network\n")
    os.close(handle_fd)
    victim = Path(name)
    assert len(name) < 32
    phrase = netperf.passphrase(protocol.node_key(SECRET, "node1"), "node1")   # what the agent derives
    handle = start_agent(types.SimpleNamespace(name="node1", data_address="127.0.0.11"), SECRET, str(tmp_path), 60.0)
    try:
        client = AgentClient("node1", handle.connect, SECRET)
        server = client.call("process.start", {"tool": "netperf", "role": "server", "bind": "127.0.0.11",
                                               "timeout_s": 30})
        assert "-Z ********" in " ".join(server["command"]) and phrase not in str(server)
        # A measurement as meshperf makes one (the controller hands the client the destination's passphrase)...
        running = client.call("process.start", {"tool": "netperf", "role": "client", "target": "127.0.0.11",
                                                "port": server["port"], "bind": "127.0.0.11", "timeout_s": 30,
                                                "params": {"duration_s": 3}, "passphrase": phrase})
        wait_for(lambda: psutil.Process(server["pid"]).children(), 10, what="netserver's child for the test")

        # ... while real netperf without it asks netserver to fill its sends from the file: nothing is served.
        def fill_from_victim(*extra):
            return subprocess.run(["netperf", "-H", "127.0.0.11", "-p", str(server["port"]), "-t", "omni", "-l", "1",
                                   "-P", "0", "-F", f",{victim}", *extra, "--", "-d", "recv", "-k",
                                   "THROUGHPUT,REMOTE_FILL_FILE"], capture_output=True, text=True, timeout=60)
        bare = fill_from_victim()
        assert bare.returncode != 0 and "THROUGHPUT" not in bare.stdout and str(victim) not in bare.stdout
        assert fill_from_victim("-Z", "0" * 32).returncode != 0   # nor with another run's or node's
        # What the passphrase stops: with it, netserver does send the file.
        assert f"REMOTE_FILL_FILE={victim}" in fill_from_victim("-Z", phrase).stdout

        result = client.wait_process(running["id"], 30)
        assert result["exit_code"] == 0 and "THROUGHPUT=" in result["stdout"], result
        assert phrase not in result["command"] and phrase not in " ".join(result["argv"])
        # A test in progress when the agent stops: netserver's child for it stops with the group.
        again = client.call("process.start", {"tool": "netperf", "role": "client", "target": "127.0.0.11",
                                              "port": server["port"], "bind": "127.0.0.11", "timeout_s": 30,
                                              "params": {"duration_s": 20}, "passphrase": phrase})
        assert again["id"]
        wait_for(lambda: len(psutil.Process(server["pid"]).children()) > 0, 10, what="netserver's child")
        children = psutil.Process(server["pid"]).children()
    finally:
        handle.stop()
        victim.unlink()
    assert_gone([server["pid"]] + [child.pid for child in children])
    assert phrase not in (tmp_path / "agent-node1.log").read_text()
