"""The meshperf operations CLI against real hosts: check, deploy, start, status, stop."""

import os

import pytest

from support.commands import document, meshperf
from support.testbed_fixtures import netns_testbed

CHECK, CROSS = "\u2713", "\u2717"


def test_check_on_the_embedded_cluster():
    result = meshperf("check", "--cluster", "local:2")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "Checking 2 hosts..."
    assert f"{CHECK} node1 (127.0.0.11)" in result.stdout and "iperf3 3." in result.stdout
    assert result.stdout.rstrip().endswith("Result: 2/2 hosts online")


def test_bad_cluster_is_one_line_usage_error(tmp_path):
    result = meshperf("status", "--cluster", tmp_path / "nosuch.yaml")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no such file" in result.stderr


@pytest.mark.parametrize("command", ["check", "deploy", "start", "status", "stop", "summary", "report", "assemble",
                                     "compare"])
def test_every_command_has_complete_help(command):
    result = meshperf(command, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: meshperf {command}")
    if command not in ("summary", "report", "assemble", "compare"):
        for option in ("--cluster", "-v", "--ssh-host-keys", "--ssh-known-hosts", "--ssh-config", "--iperf3",
                       "--local-iperf3"):
            assert option in result.stdout


@pytest.mark.usefixtures("netns_required")
def test_workflow_on_four_namespaced_hosts(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path / "home"))  # this test's own state file
    with netns_testbed(tmp_path / "tb", nodes=4) as tb:
        common = ["--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts,
                  "--mesh-remote-dir", tmp_path / "remote"]
        check = meshperf("check", *common, env=env)
        assert check.returncode == 0 and check.stdout.count(CHECK) == 4
        assert "host key verified" in check.stdout and "Clock offset between nodes" in check.stdout
        assert check.stdout.rstrip().endswith("Result: 4/4 hosts online")
        checked = document(meshperf("check", *common, "--json", env=env), "check")
        assert checked["online"] == 4 and all(h["host_key_check"] == "yes" for h in checked["hosts"])
        assert [h["address"] for h in checked["hosts"]] == [tb.node(f"node{i}").address for i in range(1, 5)]

        first = meshperf("deploy", *common, env=env)
        # Testbed nodes share one disk (like NFS homes): the first node to finish ships, the others may find it.
        assert first.returncode == 0 and first.stdout.count("bytes sent") >= 1
        assert first.stdout.count("bytes sent") + first.stdout.count("up to date") == 4
        again = meshperf("deploy", *common, env=env)
        assert again.returncode == 0 and again.stdout.count("up to date") == 4 and "bytes sent" not in again.stdout

        start = meshperf("start", *common, env=env)
        assert start.returncode == 0 and start.stdout.count("agent started (PID") == 4
        status = meshperf("status", *common, env=env)
        assert status.returncode == 0 and status.stdout.count(": Running (PID") == 4
        assert "RPC" in status.stdout and "tool processes" in status.stdout
        running = document(meshperf("status", *common, "--json", env=env), "status")
        assert running["running"] == 4 and all(h["pid"] and h["rpc_rtt_s"] is not None for h in running["hosts"])
        state_dir = tmp_path / "home" / ".meshperf" / "state"
        (state_file,) = state_dir.iterdir()
        assert oct(state_file.stat().st_mode & 0o777) == "0o600"

        verbose = meshperf("stop", *common, "-v", env=env)
        assert verbose.returncode == 0 and verbose.stdout.count("stopped PID") == 4
        assert "node1$ python3 -I -S -c" in verbose.stdout  # -v shows the remote commands
        after = meshperf("status", *common, env=env)
        assert after.returncode == 1 and after.stdout.count("not running") == 4

        tb.stop_sshd("node4")
        down = meshperf("check", *common, env=env)
        assert down.returncode == 1
        assert f"{CROSS} node4 ({tb.node('node4').address})  cannot connect to port 22" in down.stdout
        assert down.stdout.rstrip().endswith("Result: 3/4 hosts online")
