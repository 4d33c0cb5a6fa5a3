"""Native tool arguments through the allow-list (tools/args.py): every bypass a security review found, each
refused by the controller (a usage error naming it) and by the agent's re-check (a real agent asked
directly), with the real binaries shown to act on it: none reaches a tool."""

import socket
import subprocess
import threading
import time
import types

import pytest

from pytest_meshperf.errors import AgentError
from pytest_meshperf.tools import iperf3, netperf
from pytest_meshperf.tools.args import ArgError
from pytest_meshperf.transport.local import start_agent
from pytest_meshperf.transport.rpc import AgentClient

from support.usage import assert_usage_error

SECRET = "4rg5" * 16
OUTSIDE = "127.0.0.9"   # stands for a host outside the inventory: a listener there sees any stray connection

# (tool, the arguments, what the refusal names).  What each one did before the allow-list:
BYPASSES = [
    ("iperf3", ["--cli", OUTSIDE], "--cli"),              # iperf3 takes prefixes: --cli is --client
    ("iperf3", ["--por", "5999"], "--por"),               # --port
    ("iperf3", ["--logf", "/tmp/meshperf-victim"], "--logf"),   # --logfile: appends to any file
    ("iperf3", ["--pid", "/tmp/meshperf-victim"], "--pid"),     # --pidfile
    ("iperf3", ["--one"], "--one"),                       # --one-off
    ("iperf3", ["-Z", "-4c" + OUTSIDE], "-4c" + OUTSIDE),  # not a negative number: getopt reads -4 -c HOST
    ("iperf3", ["-F", "/etc/hostname", "-R"], "-F"),      # sends (or, -R, overwrites) a file on the node
    ("iperf3", ["--file=/etc/hostname"], "--file"),
    ("netperf", ["-j", "-4H" + OUTSIDE], "-4H" + OUTSIDE),  # -4 -H HOST
    ("netperf", ["-F", ",/etc/shadow", "--", "-d", "recv"], "-F"),  # netserver fills its sends from the file
    ("netperf", ["-l", "1", "--", "-H", OUTSIDE], "-H"),  # the data connection to another host
]
IDS = [" ".join(args) for _, args, _ in BYPASSES]
MODULES = {"iperf3": iperf3, "netperf": netperf}


@pytest.mark.parametrize("tool, args, named", BYPASSES, ids=IDS)
def test_the_controller_refuses_every_bypass_naming_it(tool, args, named):
    with pytest.raises(ArgError) as raised:
        MODULES[tool].native_params(args)
    assert str(raised.value).startswith(named + ":") or str(raised.value).startswith(named + " "), raised.value


@pytest.mark.parametrize("tool, args, named", BYPASSES, ids=IDS)
def test_a_bypass_on_the_command_line_is_a_usage_error_before_any_agent_starts(pytester, tool, args, named):
    pytester.makepyfile(test_mesh="""
        import pytest

        @pytest.mark.meshperf(duration=1)
        def test_link(mesh_pair, measure):
            measure()
    """)
    out = pytester.path / "results"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "--mesh-out", str(out),
                                           "--mesh-tool", tool, "--mesh-tool-args=" + " ".join(args))
    assert_usage_error(result, "--mesh-tool-args", named)
    assert not list(out.glob("*/journal*")), "something was measured"


def test_prefixes_and_glued_options_are_options_to_the_real_iperf3():
    """The bypasses are real: iperf3 3.x connects to the host of a trailing ``--cli`` or ``-4cHOST``."""
    for extra in (["--cli", OUTSIDE], ["-Z", "-4c" + OUTSIDE]):
        with listener() as (server, port):
            subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "1", "-J", "--connect-timeout",
                            "2000"] + extra, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            assert accepted(server), f"iperf3 {' '.join(extra)} did not reach {OUTSIDE}"


@pytest.fixture
def agent(tmp_path):
    handle = start_agent(types.SimpleNamespace(name="node1", data_address="127.0.0.11"), SECRET, str(tmp_path))
    yield AgentClient("node1", handle.connect, SECRET)
    handle.stop()


@pytest.mark.parametrize("tool, args, named", [b for b in BYPASSES if b[0] == "iperf3"],
                         ids=[i for i, b in zip(IDS, BYPASSES) if b[0] == "iperf3"])
def test_the_agent_refuses_what_the_controller_would_and_starts_nothing(agent, tool, args, named):
    with listener() as (server, port):
        with pytest.raises(AgentError, match="bad_request|" + named.replace("-", r"\-")) as raised:
            agent.call("process.start", {"tool": tool, "role": "client", "target": "127.0.0.1", "port": port,
                                         "bind": "127.0.0.11", "timeout_s": 5,
                                         "params": {"duration_s": 1, "args": args}})
        assert named in str(raised.value)
        assert agent.call("process.list")["processes"] == []
        assert not accepted(server)


def test_the_agent_refuses_a_netperf_bypass_in_either_part(agent):
    for params in ({"duration_s": 1, "args": ["-j", "-4H" + OUTSIDE]},
                   {"duration_s": 1, "args": ["-F", ",/etc/shadow"], "test_args": ["-d", "recv"]},
                   {"duration_s": 1, "test_args": ["-H", OUTSIDE]}):
        with pytest.raises(AgentError, match="bad_request|-[FH4]"):
            agent.call("process.start", {"tool": "netperf", "role": "client", "target": "127.0.0.1", "port": 12865,
                                         "bind": "127.0.0.11", "timeout_s": 5, "params": params})
    assert agent.call("process.list")["processes"] == []


def test_what_the_allow_list_passes_is_written_back_canonically():
    assert iperf3.native_params(["--window", "256K", "-Z", "--bitrate=100M", "-t", "3"]) == (
        {"duration_s": 3}, ["--window=256K", "-Z", "--bitrate=100M"], [])
    mapped, global_args, test_args = netperf.native_params("-c -C -i 10,3 -T 0,1 -- -T udp -D -s 128K,128K")
    assert (mapped, global_args, test_args) == ({"udp": True}, ["-i", "10,3", "-T", "0,1"], ["-D", "-s", "128K,128K"])


class listener:
    """A TCP listener on OUTSIDE, on a free port, that accepts and at once closes whatever connects (so a
    stray client ends): (listener, port); ``accepted(listener)`` says whether anything connected."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind((OUTSIDE, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self, self.sock.getsockname()[1]

    def _serve(self):
        while not self.stop.is_set():   # bounded by the with-block
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def accepted(server):
    time.sleep(0.3)   # a connection already made is accepted within the listener's 0.2 s poll
    return server.connections > 0
