"""The smaller items of issue 13's security review, each on the real thing: a planted symlink as the run
directory, a node name that is not a pattern, the CLI's state file, terminal-safe tool output, and what the
agent's parameter checks let through."""

import json
import math
import os
import stat
import types

import pytest

from pytest_meshperf.agent import protocol
from pytest_meshperf.cluster.inventory import Node
from pytest_meshperf.control import operations
from pytest_meshperf.errors import AgentError, ResultsWriteError, printable
from pytest_meshperf.results.rundir import RunDir
from pytest_meshperf.transport.local import LocalNode, start_agent
from pytest_meshperf.transport.rpc import AgentClient

SECRET = "h4rd" * 16


def test_a_run_directory_planted_as_a_symlink_is_refused_not_followed(tmp_path):
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    out = tmp_path / "results"
    out.mkdir()
    (out / "20261202T000000Z-abcd").symlink_to(victim)
    with pytest.raises(ResultsWriteError, match="not a directory .a symlink.*refusing to write through it"):
        RunDir(str(out), "20261202T000000Z-abcd").create({"id": "x"}, {})
    assert list(victim.iterdir()) == []
    RunDir(str(out), "20261202T000001Z-abcd").create({"id": "y"}, {})   # a fresh one is made as before
    assert (out / "20261202T000001Z-abcd" / "run.json").is_file()


def test_a_node_name_is_matched_as_itself_not_as_a_pattern(tmp_path):
    handles = [start_agent(types.SimpleNamespace(name=name, data_address=address), SECRET, str(tmp_path))
               for name, address in (("n.1", "127.0.0.31"), ("nX1", "127.0.0.32"))]
    try:
        found = LocalNode(Node(name="n.1", address="127.0.0.31")).agent_pids()
        assert found == [handles[0].info["pid"]]   # pgrep -f 'n.1' matched nX1's agent too
    finally:
        for handle in handles:
            handle.stop()


def test_the_cli_state_is_0600_whatever_was_left_and_goes_with_its_agents(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cluster = types.SimpleNamespace(source="hosts.yaml", spec="hosts.yaml")
    path = operations.state_path(cluster)
    os.makedirs(os.path.dirname(path))
    leftover = f"{path}.tmp-{os.getpid()}"
    with open(leftover, "w") as handle:   # a crash's leftover, readable by all
        handle.write("{}")
    os.chmod(leftover, 0o644)
    operations.save_state(cluster, {"secret": "s" * 64, "agents": {"node1": {"pid": 1}}})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and not os.path.exists(leftover)
    assert json.load(open(path))["secret"] == "s" * 64
    operations.save_state(cluster, {"secret": "s" * 64, "agents": {}})   # stop: no agent left
    assert not os.path.exists(path)   # the secret goes with them


def test_tool_output_shown_in_a_terminal_has_no_raw_control_characters():
    shown = printable("iperf3: error - \x1b]0;pwned\x07\x1b[2J unable to connect\n\tto server\x9b")
    assert shown == "iperf3: error - \\x1b]0;pwned\\x07\\x1b[2J unable to connect\n\tto server\\x9b"
    assert not any(ord(c) < 32 and c not in "\n\t" for c in shown)


@pytest.fixture
def agent(tmp_path):
    handle = start_agent(types.SimpleNamespace(name="node1", data_address="127.0.0.11"), SECRET, str(tmp_path))
    yield handle
    handle.stop()


def test_a_float_core_and_json_infinity_do_not_pass_the_agents_checks(agent):
    client = AgentClient("node1", agent.connect, SECRET)
    with pytest.raises(AgentError, match="cpu must be one of its usable cores"):
        client.call("process.start", {"tool": "iperf3", "role": "server", "bind": "127.0.0.11", "timeout_s": 5,
                                      "cpu": 0.0})
    # Infinity is not JSON: a frame holding it ends the connection, unanswered (not a server with no deadline).
    sock = agent.connect()
    session = protocol.client_handshake(sock, protocol.node_key(SECRET, "node1"), "node1")
    session.send(sock, {"id": 1, "method": "process.start",
                        "params": {"tool": "iperf3", "role": "server", "bind": "127.0.0.11", "timeout_s": math.inf}})
    sock.settimeout(10)
    assert sock.recv(1) == b""
    sock.close()
    assert client.call("process.list")["processes"] == []
