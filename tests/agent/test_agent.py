"""The node agent on its own: real agent processes, real iperf3, real sockets."""

import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import types

import psutil
import pytest

from pytest_meshperf.agent import protocol
from pytest_meshperf.errors import AgentError
from pytest_meshperf.transport.local import start_agent
from pytest_meshperf.transport.rpc import AgentClient, RemoteError

from support.procs import alive, wait_for

SECRET = "s3cr3t" * 11


@pytest.fixture
def agent(tmp_path):
    started = []

    def start(name="node1", lease_s=60.0, extra=()):
        handle = start_agent(types.SimpleNamespace(name=name, data_address="127.0.0.11"), SECRET, str(tmp_path), lease_s, extra)
        started.append(handle)
        return handle, AgentClient(name, handle.connect, SECRET)

    yield start
    for handle in started:
        handle.stop()


def agent_process(handle):
    return psutil.Process(handle.info["pid"])


def test_info_reports_tools_and_resources(agent):
    _, client = agent()
    info = client.call("agent.info")
    assert info["node"] == "node1" and info["protocol"] == protocol.PROTOCOL_VERSION
    assert info["tools"]["iperf3"]["version"].startswith("3.")
    assert info["resources"]["cpu_count"] >= 1 and info["resources"]["memory_total_bytes"] > 0
    health = client.call("agent.health")
    assert health["processes"] == [] and health["agent_usage"]["cpu_seconds"] >= 0


def test_wrong_secret_is_refused(agent):
    handle, _ = agent()
    with pytest.raises(AgentError, match="authentication failed"):
        AgentClient("node1", handle.connect, "x" * 64).call("agent.ping")


def test_unauthenticated_request_gets_nothing(agent):
    handle, _ = agent()
    sock = handle.connect()
    challenge = protocol.recv_frame(sock)
    assert set(challenge) == {"meshperf_agent", "nonce", "node"}
    protocol.send_frame(sock, {"id": 1, "method": "process.start", "params": {"tool": "iperf3", "role": "server",
                                                                              "timeout_s": 5}})
    answer = protocol.recv_frame(sock)
    assert answer["ok"] is False and "result" not in answer
    with pytest.raises(protocol.ProtocolError):
        protocol.recv_frame(sock)  # the agent hung up


def test_agent_listens_on_loopback_only(agent):
    handle, _ = agent()
    listening = [c for c in agent_process(handle).net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
    refused = subprocess.run([sys.executable, "-m", "pytest_meshperf.agent", "--node", "n", "--listen", "0.0.0.0"],
                             input=b"", capture_output=True, timeout=30)
    assert refused.returncode == 2 and b"loopback address only" in refused.stderr


def test_secret_is_not_in_the_process_list(agent):
    handle, _ = agent()
    assert SECRET not in " ".join(agent_process(handle).cmdline())
    assert SECRET not in open(f"/proc/{handle.info['pid']}/environ", "rb").read().decode("latin-1")


def test_concurrent_servers_get_distinct_ports(agent):
    _, client = agent()
    first = client.call("process.start", {"tool": "iperf3", "role": "server", "bind": "127.0.0.11", "timeout_s": 30})
    second = client.call("process.start", {"tool": "iperf3", "role": "server", "bind": "127.0.0.11", "timeout_s": 30})
    assert first["port"] != second["port"]
    assert sorted(client.call("agent.health")["ports_held"]) == sorted([first["port"], second["port"]])
    for ident in (first["id"], second["id"]):
        assert client.call("process.stop", {"id": ident})["result"]["stopped"] is True
    assert client.call("agent.health")["ports_held"] == []


def test_pinned_process_runs_on_its_core_only(agent):
    _, client = agent()
    cores = client.call("agent.info")["resources"]["cores"]
    server = client.call("process.start", {"tool": "iperf3", "role": "server", "bind": "127.0.0.11",
                                           "timeout_s": 30, "cpu": cores[-1]})
    assert psutil.Process(server["pid"]).cpu_affinity() == [cores[-1]] and server["cpu"] == cores[-1]
    assert client.call("process.stop", {"id": server["id"]})["result"]["cpu"] == cores[-1]
    with pytest.raises(RemoteError, match="usable cores") as info:
        client.call("process.start", {"tool": "iperf3", "role": "server", "timeout_s": 5, "cpu": max(cores) + 1})
    assert info.value.code == "bad_request"


def server_and_client(client, **start):
    """A one-off iperf3 server on 127.0.0.11 and a 1 s client to it started with ``start`` (start_at, hold)."""
    server = client.call("process.start", {"tool": "iperf3", "role": "server", "bind": "127.0.0.11", "timeout_s": 30})
    call = {"tool": "iperf3", "role": "client", "target": "127.0.0.11", "port": server["port"],
            "params": {"duration_s": 1}, "timeout_s": 20} | start
    return server, call, client.call("process.start", call)


def test_timed_start_waits_for_its_moment(agent):
    _, client = agent()
    start_at = time.time() + 0.8
    _, _, pending = server_and_client(client, start_at=start_at)
    assert pending["pid"] is None  # answered at once; the process starts at start_at
    result = client.wait_process(pending["id"], 30)
    assert start_at <= result["started"] and result["exit_code"] == 0
    assert result["node_load"]["samples"] >= 1 and len(result["node_load"]["core_busy_mean_percent"]) >= 1
    with pytest.raises(RemoteError, match="start_at is") as info:
        client.call("process.start", {"tool": "iperf3", "role": "client", "target": "127.0.0.11", "port": 5201,
                                      "timeout_s": 5, "start_at": time.time() + 3600})
    assert info.value.code == "bad_request"


def test_a_late_release_starts_at_once_where_a_late_timed_start_is_refused(agent):
    """A round's flows share no node, so a release that arrives after its moment (a slow controller) starts the
    flow at once; a timed start that late is refused (clocks far apart?): rounds therefore hold, then release."""
    _, client = agent()
    server, start, held = server_and_client(client, hold=True)
    with pytest.raises(RemoteError, match="start_at is") as info:
        client.call("process.start", start | {"hold": False, "start_at": time.time() - 5})
    assert info.value.code == "bad_request"
    released_at = time.time()
    client.call("process.release", {"id": held["id"], "start_at": released_at - 5})
    result = client.wait_process(held["id"], 30)
    assert result["exit_code"] == 0 and result["started"] >= released_at   # started, not refused


def armed_children(handle):
    """The agent's timed starts forked ahead and held in sh's read (supervisor.Supervisor._arm).  Only sh: a
    child forked a moment ago may still be the setpriv that execs it (seen with other tests beside this one)."""
    held = []
    for proc in agent_process(handle).children():
        try:
            if proc.name() == "sh" and "read -r _ && exec" in " ".join(proc.cmdline()):
                held.append(proc)
        except psutil.Error:   # ended meanwhile
            continue
    return held


@pytest.mark.parametrize("then", ["started", "stopped", "agent killed"])
def test_a_timed_start_is_forked_ahead_and_execs_the_tool_only_at_its_moment(agent, then):
    handle, client = agent()
    start_at = time.time() + 1.5
    server, _, pending = server_and_client(client, start_at=start_at)
    wait_for(lambda: armed_children(handle), 1.0, what="the client forked ahead")
    (armed,) = armed_children(handle)
    # Held before exec: the tool's words are sh's arguments, after its fixed script.
    assert armed.name() == "sh" and armed.cmdline()[:4] == ["/bin/sh", "-c", 'read -r _ && exec "$@"', "sh"]
    assert armed.cmdline()[4].endswith("iperf3") and "127.0.0.11" in armed.cmdline()[5:]
    assert [p.pid for p in agent_process(handle).children() if p.name() == "iperf3"] == [server["pid"]]
    if then == "started":
        result = client.wait_process(pending["id"], 30)
        assert result["pid"] == armed.pid and start_at <= result["started"] and result["exit_code"] == 0
        assert result["spawn_error"] is None and '"sum_received"' in result["stdout"]
    elif then == "stopped":
        result = client.call("process.stop", {"id": pending["id"]})
        assert result["result"]["stopped"] and alive([armed]) == []
        time.sleep(max(0.0, start_at - time.time()) + 0.3)
        # Nothing ran at its moment: the one-off server is still waiting for its only client.
        assert client.call("process.wait", {"id": server["id"], "timeout_s": 0})["done"] is False
    else:
        agent_process(handle).send_signal(signal.SIGKILL)
        wait_for(lambda: not alive([armed]), 10, what="the armed client to die with its agent (PR_SET_PDEATHSIG)")


def test_a_held_client_starts_only_when_released_and_a_forgotten_one_fails(agent):
    handle, client = agent()
    server, start, held = server_and_client(client, hold=True)
    wait_for(lambda: armed_children(handle), 1.0, what="the held client forked")
    time.sleep(0.5)
    (armed,) = armed_children(handle)   # still waiting: no time was given, only the release starts it
    released_at = time.time()
    client.call("process.release", {"id": held["id"], "start_at": released_at + 0.2})
    result = client.wait_process(held["id"], 30)
    assert result["pid"] == armed.pid and result["started"] >= released_at + 0.2 and result["exit_code"] == 0
    for bad in ({"id": held["id"]}, {"id": server["id"]}):   # collected, and never held
        with pytest.raises(RemoteError) as info:
            client.call("process.release", bad)
        assert info.value.code in ("unknown_process", "bad_request")
    for bad in ({"start_at": time.time() + 1}, {"role": "server"}, {"hold": 1}):
        with pytest.raises(RemoteError, match="hold must be") as info:
            client.call("process.start", start | bad)
    forgotten = client.call("process.start", start | {"timeout_s": 1})
    result = client.wait_process(forgotten["id"], 10)
    assert "never released" in result["spawn_error"] and result["started"] is None
    wait_for(lambda: not armed_children(handle), 5, what="the forgotten client's sh gone")


def test_process_past_its_deadline_is_killed(agent):
    _, client = agent()
    server = client.call("process.start", {"tool": "iperf3", "role": "server", "bind": "127.0.0.11", "timeout_s": 1})
    result = client.wait_process(server["id"], 30)
    assert result["timed_out"] is True and result["ended"] is not None  # iperf3 exits on SIGTERM by itself
    assert not psutil.pid_exists(server["pid"]) or psutil.Process(server["pid"]).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("request_, code", [
    ({"method": "no.such"}, "unknown_method"),
    ({"method": "process.start", "params": {"tool": "iperf3", "role": "client", "timeout_s": 5}}, "bad_request"),
    ({"method": "process.start", "params": {"tool": "iperf3", "role": "client", "timeout_s": 5, "target": "127.0.0.12",
                                            "port": 5201, "params": {"duration_s": 1, "rm -rf /": True}}},
     "bad_request"),
    ({"method": "process.start", "params": {"tool": "nc", "role": "server", "timeout_s": 5}}, "bad_request"),
    ({"method": "process.wait", "params": {"id": "p999"}}, "unknown_process"),
])
def test_bad_requests_get_error_codes(agent, request_, code):
    _, client = agent()
    with pytest.raises(RemoteError) as info:
        client.call(request_["method"], request_.get("params"))
    assert info.value.code == code


def test_missing_tool_is_reported(agent):
    _, client = agent(extra=("--tool", "iperf3=/nonexistent/iperf3"))
    assert "/nonexistent/iperf3 not found on the node; install it" in client.call("agent.info")["tools"]["iperf3"]["error"]
    with pytest.raises(RemoteError) as info:
        client.call("process.start", {"tool": "iperf3", "role": "server", "timeout_s": 5})
    assert info.value.code == "tool_missing"


def _running_server(client):
    server = client.call("process.start", {"tool": "iperf3", "role": "server", "bind": "127.0.0.11", "timeout_s": 300})
    return psutil.Process(server["pid"])


def test_lease_expiry_stops_everything(agent, tmp_path):
    handle, client = agent(lease_s=2.0)
    server = _running_server(client)
    client.close()
    proc = agent_process(handle)
    wait_for(lambda: not alive([proc]), 30, what="the agent to exit after its lease")
    assert alive([server]) == []
    assert "lease expired" in (tmp_path / "agent-node1.log").read_text()


def test_controller_gone_stops_everything(agent):
    handle, client = agent()
    server = _running_server(client)
    proc = agent_process(handle)
    handle.stop()  # closes the agent's stdin, as the death of the controller does
    wait_for(lambda: not alive([proc]), 30, what="the agent to exit")
    assert alive([server]) == []


@pytest.mark.parametrize("wrappers", ["setpriv", "without setpriv"])
def test_killed_agent_takes_its_tools_along(agent, tmp_path, monkeypatch, wrappers):
    if wrappers == "without setpriv":
        # A PATH with iperf3 only: the agent falls back to setting PDEATHSIG and the core in the child.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "iperf3").symlink_to(shutil.which("iperf3"))
        monkeypatch.setenv("PATH", str(bin_dir))
    handle, client = agent()
    cores = client.call("agent.info")["resources"]["cores"]
    server = client.call("process.start", {"tool": "iperf3", "role": "server", "bind": "127.0.0.11",
                                           "timeout_s": 300, "cpu": cores[-1]})
    server = psutil.Process(server["pid"])
    assert server.name() == "iperf3" and server.cpu_affinity() == [cores[-1]]
    agent_process(handle).send_signal(signal.SIGKILL)
    wait_for(lambda: not alive([server]), 30, what="iperf3 to die with its agent (PR_SET_PDEATHSIG)")


def test_a_key_for_one_node_opens_no_other_and_the_agent_never_holds_the_run_secret(agent):
    handle, _ = agent(name="node1")
    # The right secret, the wrong node: the agent of node1 is not node2's.
    with pytest.raises(AgentError, match="reached the agent of node 'node1', not of 'node2'"):
        AgentClient("node2", handle.connect, SECRET).call("agent.ping")
    # A caller that claims node1 with node2's key (what node2's agent knows) fails authentication.
    sock = handle.connect()
    challenge = protocol.recv_frame(sock)
    stolen = protocol.node_key(SECRET, "node2")
    protocol.send_frame(sock, {"protocol": protocol.PROTOCOL_VERSION, "nonce": protocol.new_nonce(),
                               "mac": protocol.mac(stolen, "client", "node1", challenge["nonce"])})
    assert protocol.recv_frame(sock)["error"]["code"] == "auth_failed"
    sock.close()
    assert SECRET not in " ".join(agent_process(handle).cmdline())


def test_every_frame_after_the_handshake_is_authenticated(agent):
    handle, _ = agent()
    sock = handle.connect()
    session = protocol.client_handshake(sock, protocol.node_key(SECRET, "node1"), "node1")
    session.send(sock, {"id": 1, "method": "agent.ping", "params": {}})
    assert "result" in session.recv(sock)
    # A frame without a valid MAC (here: a plain frame, as before protocol 2) ends the connection unanswered.
    protocol.send_frame(sock, {"id": 2, "method": "process.list", "params": {}})
    sock.settimeout(10)
    assert sock.recv(1) == b""
    sock.close()
    # A replayed frame fails too: its sequence number is spent.
    sock = handle.connect()
    session = protocol.client_handshake(sock, protocol.node_key(SECRET, "node1"), "node1")
    recorded = Recording(sock)
    session.send(recorded, {"id": 1, "method": "agent.ping", "params": {}})
    assert "result" in session.recv(sock)
    sock.sendall(recorded.sent[0])
    assert sock.recv(1) == b""
    sock.close()


class Recording:
    """A socket's sendall, recorded."""

    def __init__(self, sock):
        self.sock, self.sent = sock, []

    def sendall(self, data):
        self.sent.append(data)
        self.sock.sendall(data)


def test_frames_over_the_limit_are_refused():
    left, right = socket.socketpair()
    with left, right:
        right.sendall((protocol.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
        with pytest.raises(protocol.ProtocolError, match="exceeds"):
            protocol.recv_frame(left)


def test_lease_renew_extends_only_the_callers_own_lease(agent):
    handle, client = agent()
    other = AgentClient("node1", handle.connect, SECRET)
    taken = client.call("lease.acquire", {"role": "send", "holder": "round 1", "ttl_s": 1.0})
    assert taken["granted"]
    # another connection can neither renew it nor take the role meanwhile
    assert other.call("lease.renew", {"id": taken["id"], "ttl_s": 60.0}) == {"renewed": False}
    assert client.call("lease.renew", {"id": taken["id"], "ttl_s": 60.0}) == {"renewed": True}
    [held] = client.call("agent.health")["leases"]
    assert held["id"] == taken["id"] and held["expires_in_s"] > 30   # 60 s from the renewal, not 1 s from the take
    assert not other.call("lease.acquire", {"role": "send", "holder": "other", "ttl_s": 5.0})["granted"]
    with pytest.raises(AgentError, match="ttl_s"):
        client.call("lease.renew", {"id": taken["id"], "ttl_s": 0})
    assert client.call("lease.release", {"id": taken["id"]}) == {"released": True}
    assert client.call("lease.renew", {"id": taken["id"], "ttl_s": 60.0}) == {"renewed": False}   # ended: gone
    other.close()


def test_the_agent_keeps_serving_its_controller_through_a_flood_before_authentication(agent, tmp_path):
    handle, controller = agent()
    process = agent_process(handle)
    assert controller.call("agent.ping")

    # A 60 MiB hello of [{},{},...]: refused at its 4-byte header, none of it read or parsed.
    big = handle.connect()
    protocol.recv_frame(big)
    size = 60 * 1024 * 1024
    big.sendall(struct.pack(">I", size) + b"[" + b"{}," * 20000)
    big.settimeout(30)
    assert big.recv(1) == b""   # hung up on
    big.close()

    # A handshake that trickles a byte every 0.5 s: one deadline for all of it, so it is closed within it.
    slow = handle.connect()
    protocol.recv_frame(slow)
    hello = b'{"protocol":1,"mac":"' + b"0" * 64 + b'","nonce":"x"}'
    frame = struct.pack(">I", len(hello)) + hello
    slow.settimeout(0.5)
    sent, hung_up = 0, False
    for _ in range(120):   # 60 s at most; the agent's deadline is 10 s
        try:
            if slow.recv(1) == b"":
                hung_up = True
                break
        except socket.timeout:
            pass
        try:
            slow.send(frame[sent:sent + 1])
            sent += 1
        except OSError:
            hung_up = True
            break
    assert hung_up and sent < len(frame), f"a trickled handshake held its connection ({sent} bytes sent)"
    slow.close()

    # 1,000 idle connections that never say a word.
    idle = [handle.connect() for _ in range(1000)]
    try:
        assert controller.call("agent.ping")                    # the controller's own connection
        fresh = AgentClient("node1", handle.connect, SECRET)   # and a new one, in the middle of the flood
        assert fresh.call("agent.info")["node"] == "node1"
        fresh.close()
        assert process.memory_info().rss < 100 * 1024 * 1024
        assert process.num_fds() < 200, process.num_fds()
    finally:
        for sock in idle:
            sock.close()
    assert controller.call("agent.ping")
    assert "closing the oldest" in (tmp_path / "agent-node1.log").read_text()


def test_the_minimal_client_in_the_docs_works_against_a_real_agent(agent):
    """docs/agent-api.md's appendix: a protocol-2 client in plain Python, run as written."""
    from support.paths import ROOT
    text = (ROOT / "docs" / "agent-api.md").read_text()
    appendix = text[text.index("## Appendix: a minimal client"):]
    code = appendix[appendix.index("```python") + len("```python"):appendix.index("```", appendix.index("```python") + 9)]
    namespace = {}
    exec(compile(code, "agent-api.md", "exec"), namespace)
    handle, _ = agent()
    port = handle.endpoint["port"] if hasattr(handle, "endpoint") else handle.info["port"]
    connection = namespace["Connection"](port, SECRET, "node1")
    assert connection.call(1, "agent.info")["node"] == "node1"
    assert "processes" in connection.call(2, "process.list")
    with pytest.raises(PermissionError):
        namespace["Connection"](port, "x" * 64, "node1")
