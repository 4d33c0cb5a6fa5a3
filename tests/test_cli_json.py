"""Output that scripts and monitoring read: ``--json`` documents, OpenMetrics, completion, plain terminals, Ctrl-C.

The ``meshperf`` command of this environment (commands.py) on the embedded cluster, on real recorded runs
(tests/data/report, tests/data/compare) and on a silent loopback SSH port.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from support.commands import MESHPERF, document, meshperf
from support.paths import BASELINE, SLOW_LINK
from support.paths import RECORDED_MESH as RECORDED


def test_check_and_status_json_on_the_embedded_cluster(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))   # this test's own state file
    check = meshperf("check", "--cluster", "local:2", "--json", env=env)
    assert check.returncode == 0, check.stderr
    doc = document(check, "check")
    assert doc["ok"] is True and (doc["online"], doc["total"]) == (2, 2)
    assert [h["name"] for h in doc["hosts"]] == ["node1", "node2"]
    assert doc["hosts"][0]["address"] == "127.0.0.11" and doc["hosts"][0]["tools"]["iperf3"]["version"].startswith("3.")
    assert check.stderr.startswith("Checking 2 hosts...")   # the human line goes to stderr with --json

    stopped = meshperf("status", "--cluster", "local:2", "--json", env=env)
    assert stopped.returncode == 1
    doc = document(stopped, "status")
    assert doc["running"] == 0 and all(h["running"] is False for h in doc["hosts"])
    try:
        assert meshperf("start", "--cluster", "local:2", env=env).returncode == 0
        running = meshperf("status", "--cluster", "local:2", "--json", env=env)
        assert running.returncode == 0, running.stderr
        doc = document(running, "status")
        assert doc["ok"] is True and doc["running"] == 2
        assert all(isinstance(h["pid"], int) and h["uptime_s"] >= 0 for h in doc["hosts"])
    finally:
        assert meshperf("stop", "--cluster", "local:2", env=env).returncode == 0


def test_summary_json_of_a_recorded_run():
    result = meshperf("summary", "--json", RECORDED)
    doc = document(result, "summary")
    mesh = json.loads(RECORDED.read_text())
    assert result.returncode == 1 and doc["ok"] is False   # the recorded run has failures and an error
    assert doc["mesh"] == str(RECORDED) and doc["nodes"] == list(mesh["cluster"]["nodes"])
    recorded = {(src, dst, key): entry for src, s in mesh["sources"].items()
                for dst, d in s["destinations"].items() for key, entry in d["tests"].items()}
    assert {(link["src"], link["dst"], link["test"]) for link in doc["links"]} == set(recorded)
    for link in doc["links"]:
        entry = recorded[(link["src"], link["dst"], link["test"])]
        assert link["status"] == entry["status"] and link["metrics"] == entry.get("metrics", {})
    assert doc["counts"]["failed"] == sum(e["status"] == "failed" for e in recorded.values())
    assert any(link["messages"] for link in doc["links"] if link["status"] == "failed")


def test_compare_json_of_two_recorded_runs():
    result = meshperf("compare", "--json", BASELINE, SLOW_LINK)
    assert result.returncode == 1
    doc = document(result, "compare")
    assert doc["ok"] is False and doc["max_regression"] == 0.1
    regressed = {(c["src"], c["dst"]) for c in doc["changes"] if c["status"] == "regressed"}
    assert regressed == {("node1", "node2")}
    assert doc["changes"][0]["status"] == "regressed"   # worst first


def test_openmetrics_export_of_a_recorded_run_parses_with_prometheus_client(tmp_path):
    out = tmp_path / "meshperf.prom"
    result = meshperf("export", "--format", "openmetrics", RECORDED, out)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    mesh = json.loads(RECORDED.read_text())
    assert set(families["meshperf_run_timestamp_seconds"].samples[0].labels) == set()
    throughput = families["meshperf_throughput_bits_per_second"]
    assert throughput.type == "gauge" and throughput.unit == "bits_per_second"
    measured = {(s.labels["test"], s.labels["src"], s.labels["dst"]): s.value for s in throughput.samples}
    for src, source in mesh["sources"].items():
        for dst, destination in source["destinations"].items():
            for key, entry in destination["tests"].items():
                if "throughput_bps" in entry.get("metrics", {}):
                    assert measured[(key, src, dst)] == pytest.approx(entry["metrics"]["throughput_bps"])
    for family in families.values():
        for sample in family.samples:
            assert set(sample.labels) <= {"test", "src", "dst", "tool", "status"}   # bounded labels only
            assert mesh["run"]["id"] not in str(sample.labels)
    latency = families.get("meshperf_latency_p99_seconds")
    if latency is not None:
        assert all(s.value < 1 for s in latency.samples)   # microseconds turned into seconds
    statuses = {s.labels["status"] for s in families["meshperf_measurement_status"].samples}
    assert {"passed", "failed", "error"} <= statuses
    to_stdout = meshperf("export", "--format", "openmetrics", RECORDED, "-")
    assert to_stdout.returncode == 0 and to_stdout.stdout == text


def test_a_terminal_that_cannot_encode_the_marks_gets_ascii(tmp_path):
    env = dict(os.environ, PYTHONIOENCODING="ascii", LC_ALL="C", HOME=str(tmp_path))
    result = meshperf("check", "--cluster", "local:2", env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "  + node1 (127.0.0.11)" in result.stdout


def test_completion_scripts_are_generated_from_the_parser(tmp_path):
    result = meshperf("completion", "bash")
    assert result.returncode == 0
    script = tmp_path / "meshperf.bash"
    script.write_text(result.stdout)
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    for word in ("check", "compare", "--max-regression", "openmetrics"):
        assert word in result.stdout
    assert meshperf("completion", "zsh").stdout.startswith("#compdef meshperf")


SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


def _interrupt(proc, to_thread):
    """SIGINT to the process, or (``to_thread``) to one of its threads other than the main one: the kernel
    may hand a process's SIGINT to any thread, and then only a main thread that wakes up runs the handler."""
    if not to_thread:
        proc.send_signal(signal.SIGINT)
        return
    import ctypes
    number = SYS_TGKILL.get(os.uname().machine)
    if number is None:
        pytest.skip("no tgkill number known for this architecture")
    others = sorted(int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task") if int(tid) != proc.pid)
    assert others, "meshperf check runs its connects in threads"
    assert ctypes.CDLL(None, use_errno=True).syscall(number, proc.pid, others[0], int(signal.SIGINT)) == 0


@pytest.mark.parametrize("to_thread", [False, True], ids=["to the process", "to a connecting thread"])
def test_ctrl_c_exits_130(tmp_path, to_thread):
    """An SSH host that accepts and never speaks (on loopback): meshperf check waits; SIGINT ends it, whichever
    thread the kernel hands it to (to a connecting thread, before: not until the 60 s connect time-out)."""
    servers, accepted = [], []
    for i in range(2):   # a mesh needs two hosts, each its own address
        server = socket.socket()
        server.bind((f"127.0.0.{i + 1}", 0))
        server.listen(4)
        servers.append(server)
        threading.Thread(target=lambda s=server: accepted.append(s.accept()), daemon=True).start()
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n" + "".join(
        f"  - {{name: silent{i}, address: {address}, ssh_port: {port}, ssh_user: nobody}}\n"
        for i, (address, port) in enumerate(server.getsockname() for server in servers)))
    proc = subprocess.Popen([MESHPERF, "check", "--cluster", str(hosts), "--ssh-connect-timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert accepted, "meshperf check never connected"
        _interrupt(proc, to_thread)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for server in servers:
            server.close()
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == "meshperf: interrupted" and "Traceback" not in err
