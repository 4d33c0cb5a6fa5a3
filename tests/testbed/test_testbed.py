"""The netns testbed: real namespaces, real sshd, real ssh, real iperf3.

Tests that build testbeds are skipped (with the reason) unless running as root
with ``ip netns``, ``unshare`` and OpenSSH available; the spec parsing and
error-message tests run everywhere.  Every address used is in 198.18.0.0/15.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_meshperf.cluster.inventory import load_cluster
from pytest_meshperf.errors import InventoryError, MeshperfError, UsageError
from pytest_meshperf.testbed import (
    TESTBED_RANGE,
    NetnsTestbed,
    TestbedError,
    TestbedSpec,
    TestbedUnavailableError,
    build,
    cleanup_stale,
    parse_spec,
    processes,
    stale,
    stale_testbeds,
    unavailable_reason,
)

from support.commands import meshperf
from support.testbed_fixtures import (
    iperf3_rate,
    make_testbed_fixture,
    needs_netns,
    netns_testbed,
    port_answers,
    ssh,
)

testbed = make_testbed_fixture(nodes=3)


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=30).stdout


def _assert_gone(tb: NetnsTestbed) -> None:
    """Nothing of ``tb`` is left on the machine."""
    tag = tb.tag
    assert tag
    assert tag + "-" not in _run("ip", "netns", "list"), _run("ip", "netns", "list")
    assert tag + "-" not in _run("ip", "-o", "link"), _run("ip", "-o", "link")
    for name in tb.spec.names:
        config = os.path.join(tb.workdir, name, "sshd_config")
        left = subprocess.run(["pgrep", "-af", config], check=False, capture_output=True, text=True, timeout=30)
        assert left.returncode == 1, left.stdout
    # no route through the testbed's veth (another testbed may already reuse the /24)
    routes = _run("ip", "-4", "route", "show", "table", "all")
    assert f"dev {tag}-" not in routes, routes
    assert tb.leftovers() == []


# --------------------------------------------------------------------------
# spec (no root needed)
# --------------------------------------------------------------------------

GOOD_SPECS = [
    ("netns:2", 2, {}),
    ("netns:4", 4, {}),
    (" netns:64 ", 64, {}),
    ("NETNS:3", 3, {}),
    ("netns:3,rate=200mbit", 3, {"node1": "200mbit", "node2": "200mbit", "node3": "200mbit"}),
    ("netns:4,rate.node2=200mbit", 4, {"node2": "200mbit"}),
    ("netns:3, rate=1gbit, rate.node3=500kbit", 3, {"node1": "1gbit", "node2": "1gbit", "node3": "500kbit"}),
    ("netns:2,rate.node1=1.5gbit,rate.node2=100mbps", 2, {"node1": "1.5gbit", "node2": "100mbps"}),
    ("netns:3,rate=200mbit,rate.node1->node2=100mbit", 3, {"node1": "200mbit", "node2": "200mbit", "node3": "200mbit"}),
]


@pytest.mark.parametrize("text, nodes, rates", GOOD_SPECS, ids=[s[0].strip() for s in GOOD_SPECS])
def test_parse_spec_accepts(text, nodes, rates):
    spec = parse_spec(text)
    assert spec.nodes == nodes
    assert dict(spec.rates) == rates
    assert spec.names == [f"node{i}" for i in range(1, nodes + 1)]
    assert parse_spec(str(spec)) == spec  # str() gives a spec back


def test_parse_spec_link_rates():
    spec = parse_spec("netns:3,rate.node3->node1=50mbit, rate.node1 -> node2=100mbit")
    assert dict(spec.link_rates) == {"node1->node2": "100mbit", "node3->node1": "50mbit"}
    assert dict(spec.rates) == {}


BAD_SPECS = [
    ("netns", "not a netns testbed spec"),
    ("local:4", "not a netns testbed spec"),
    ("netns:", "node count is missing"),
    ("netns:x", "'x' is not a whole number"),
    ("netns:-2", "is not a whole number"),
    ("netns:1", "2 to 64 nodes, got 1"),
    ("netns:65", "2 to 64 nodes, got 65"),
    ("netns:4,", "empty option"),
    ("netns:4,,rate=1mbit", "empty option"),
    ("netns:4,rate", "has no value"),
    ("netns:4,rate=", "has no value"),
    ("netns:4,rate=fast", "not a number with a tc unit"),
    ("netns:4,rate=200", "not a number with a tc unit"),
    ("netns:4,rate=200 mbit", "not a number with a tc unit"),
    ("netns:4,rate=0mbit", "not positive"),
    ("netns:4,rate.node5=1mbit", "no node 'node5'"),
    ("netns:4,rate.=1mbit", "no node ''"),
    ("netns:4,rate=1mbit,rate=2mbit", "given twice"),
    ("netns:4,delay=10ms", "unknown option 'delay'"),
    ("netns:3,rate.node1->node4=1mbit", "no node 'node4'"),
    ("netns:3,rate.node2->node2=1mbit", "a link joins two different nodes"),
    ("netns:3,rate.node1->node2=fast", "not a number with a tc unit"),
]


@pytest.mark.parametrize("text, problem", BAD_SPECS, ids=[s[0] for s in BAD_SPECS])
def test_parse_spec_rejects(text, problem):
    with pytest.raises(InventoryError) as info:
        parse_spec(text)
    message = str(info.value)
    assert problem in message
    assert message.startswith(f"--cluster {text!r}: ")
    assert "accepted forms: netns:N, netns:N,rate=200mbit" in message
    assert "\n" not in message
    assert isinstance(info.value, UsageError)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"nodes": 65}, "2 to 64 nodes, got 65"),
        ({"nodes": 1}, "2 to 64 nodes, got 1"),
        ({"nodes": True}, "must be an integer"),
        ({"nodes": 3, "rates": {"node4": "1mbit"}}, "no node 'node4' to shape"),
        ({"nodes": 3, "rates": {"node1": "1 mbit"}}, "not a number with a tc unit"),
    ],
)
def test_spec_validates_before_anything_is_built(kwargs, problem):
    with pytest.raises(InventoryError, match=problem):
        TestbedSpec(**kwargs)


def test_spec_is_read_only():
    spec = TestbedSpec(nodes=2, rates={"node2": "1mbit"})
    with pytest.raises(TypeError):
        spec.rates["node1"] = "2mbit"  # type: ignore[index]
    assert hash(spec) == hash(TestbedSpec(nodes=2, rates={"node2": "1mbit"}))


def test_not_root_is_a_clear_usage_error(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = unavailable_reason()
    assert reason == "netns testbed needs root (running as uid 1000); run as root or use --cluster local:N"
    tb = NetnsTestbed(TestbedSpec(nodes=2), tmp_path)
    with pytest.raises(TestbedUnavailableError, match=r"needs root \(running as uid 1000\)") as info:
        tb.up()
    assert isinstance(info.value, UsageError) and isinstance(info.value, MeshperfError)
    assert tb.tag is None and not os.path.exists(tb.hosts_yaml)
    tb.down()  # nothing built: fine


def test_exec_wants_an_argv_list(tmp_path):
    tb = NetnsTestbed(TestbedSpec(nodes=2), tmp_path)
    with pytest.raises(TypeError, match="list of strings"):
        tb.exec("node1", "hostname")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# a running testbed (module-scoped, 3 nodes)
# --------------------------------------------------------------------------


@needs_netns
def test_layout(testbed):
    tb = testbed
    assert [n.name for n in tb.nodes] == ["node1", "node2", "node3"]
    assert tb.tag and len(tb.tag) == 6 and tb.tag.startswith("mp")
    assert tb.subnet.prefixlen == 24 and tb.subnet.subnet_of(TESTBED_RANGE)
    assert tb.host_address == str(tb.subnet.network_address + 254)
    for i, node in enumerate(tb.nodes, 1):
        assert node.address == str(tb.subnet.network_address + i)
        assert node.netns == f"{tb.tag}-n{i}"
    names = _run("ip", "netns", "list")
    for ns in [n.netns for n in tb.nodes] + [tb.switch_netns]:
        assert ns in names
    links = _run("ip", "-o", "link") + _run("ip", "-n", tb.switch_netns, "-o", "link")
    for line in links.splitlines():
        assert len(line.split(": ")[1].split("@")[0]) <= 15, line
    # the root namespace reaches the /24 through the testbed's own veth only
    assert f"{tb.subnet} dev {tb.host_veth} " in _run("ip", "-4", "route")
    # nodes have only their /24: no default route, nothing beyond the testbed
    routes = tb.exec("node1", ["ip", "-4", "route"], capture_output=True, text=True).stdout
    assert routes.split("\n")[0].startswith(f"{tb.subnet} dev eth0 "), routes
    assert "default" not in routes


@needs_netns
def test_files(testbed):
    tb = testbed
    assert stat.S_IMODE(os.stat(tb.user_key).st_mode) == 0o600
    cluster = load_cluster(tb.hosts_yaml)
    assert cluster.names == ("node1", "node2", "node3")
    for node, tnode in zip(cluster.nodes, tb.nodes):
        assert node.address == tnode.address
        assert (node.role, node.ssh_user, node.ssh_port, node.ssh_key) == ("both", "root", 22, tb.user_key)
        assert node.labels["netns"] == tnode.netns
    config = Path(tb.ssh_config).read_text()
    for tnode in tb.nodes:
        assert f"Host {tnode.name}\n    HostName {tnode.address}\n" in config
    assert config.count("StrictHostKeyChecking yes") == 3
    assert config.count(f"UserKnownHostsFile {tb.known_hosts}") == 3
    assert config.count(f"IdentityFile {tb.user_key}") == 3
    known = Path(tb.known_hosts).read_text().splitlines()
    assert [line.split()[0] for line in known] == [n.address for n in tb.nodes]
    assert all(line.split()[1] == "ssh-ed25519" for line in known)


@needs_netns
def test_ssh_into_every_node(testbed):
    for node in testbed.nodes:
        result = ssh(testbed, node.name, "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == node.name


@needs_netns
def test_the_largest_testbed_answers_on_every_node_and_leaves_nothing(tmp_path):
    # 64 nodes (the spec's maximum): every sshd up and verified, every node's neighbours known without ARP.
    with netns_testbed(tmp_path / "tb", nodes=64, rates="20mbit") as tb:
        result = meshperf("check", "--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "Result: 64/64 hosts online" in result.stdout, result.stdout[-2000:]
        neighbours = tb.exec("node64", ["ip", "neigh", "show", "nud", "permanent"], capture_output=True,
                             text=True).stdout
        assert len(neighbours.splitlines()) == 64, neighbours  # 63 nodes and this machine
    _assert_gone(tb)


@needs_netns
def test_nodes_reach_each_other(testbed):
    target = testbed.node("node3").address
    probe = f"import socket; s = socket.create_connection(({target!r}, 22), timeout=5); print(s.recv(64).decode())"
    result = testbed.exec("node1", [sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SSH-2.0-OpenSSH")


@needs_netns
def test_tcp_forwarding_and_sftp(testbed):
    """meshperf reaches agents through direct-tcpip channels and copies files over sftp."""
    tb = testbed
    target = tb.node("node3").address
    forward = subprocess.run(
        ["ssh", "-F", tb.ssh_config, "-W", f"{target}:22", "node1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert forward.stdout.startswith("SSH-2.0-OpenSSH"), forward.stderr
    sftp = subprocess.run(
        ["sftp", "-F", tb.ssh_config, "-b", "-", "node2"],
        input=f"ls {tb.workdir}\n", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert sftp.returncode == 0, sftp.stderr
    assert "hosts.yaml" in sftp.stdout


def _class_packets(tb, node: str, classid: str) -> int:
    """Packets an htb class on the node's eth0 has sent so far."""
    shown = tb.exec(node, ["tc", "-s", "class", "show", "dev", "eth0", "classid", classid],
                    capture_output=True, text=True).stdout  # fmt: skip
    match = re.search(r"Sent \d+ bytes (\d+) pkt", shown)
    assert match, shown
    return int(match.group(1))


@pytest.mark.alone
@needs_netns
def test_shaping_is_exact_enough_to_assert(testbed):
    tb = testbed
    tb.shape("node2", "200mbit")
    try:
        qdisc = tb.exec("node2", ["tc", "qdisc", "show", "dev", "eth0"], capture_output=True, text=True).stdout
        assert "qdisc htb 1: root" in qdisc and "bfifo" in qdisc and "limit 500000b" in qdisc, qdisc  # 20 ms
        assert dict(tb.rates) == {"node2": "200mbit"}
        rate = iperf3_rate(tb, "node2", "node3", seconds=3)
        assert 0.85 * 200e6 <= rate <= 1.0 * 200e6, f"{rate / 1e6:.1f} Mbit/s through a 200mbit htb class"
        data_before, acks_before = _class_packets(tb, "node2", "1:10"), _class_packets(tb, "node2", "1:2")
        iperf3_rate(tb, "node3", "node2", seconds=1)  # node2 receives: what it sends is ACKs
        data_after, acks_after = _class_packets(tb, "node2", "1:10"), _class_packets(tb, "node2", "1:2")
        # the control connection's few packets are data; the flow's thousands of ACKs are not
        assert acks_after - acks_before > 100 and data_after - data_before < 50, (
            acks_before, acks_after, data_before, data_after)
        # A slow class's 20 ms queue (50 KB) is smaller than one 64 KB GSO batch: batches must be smaller.
        tb.shape("node2", "20mbit")
        rate = iperf3_rate(tb, "node2", "node3", seconds=2)
        assert 0.85 * 20e6 <= rate <= 1.05 * 20e6, f"{rate / 1e6:.1f} Mbit/s through a 20mbit htb class"
    finally:
        tb.unshape("node2")
    qdisc = tb.exec("node2", ["tc", "qdisc", "show", "dev", "eth0"], capture_output=True, text=True).stdout
    assert "htb" not in qdisc and "bfifo" not in qdisc
    link = tb.exec("node2", ["ip", "-d", "link", "show", "eth0"], capture_output=True, text=True).stdout
    assert "gso_max_size 65536" in link, link
    tb.unshape("node2")  # unshaped already: fine
    assert dict(tb.rates) == {}
    with pytest.raises(TestbedError, match="cannot shape node2: rate 'fast'"):
        tb.shape("node2", "fast")


@pytest.mark.alone
@needs_netns
def test_one_link_is_shaped_within_its_nodes_rate(testbed):
    # node2 sends at 200mbit as a whole, and to node3 at 100mbit: htb classes by destination address.
    tb = testbed
    tb.shape("node2", "200mbit")
    tb.shape_link("node2", "node3", "100mbit")
    try:
        qdisc = tb.exec("node2", ["tc", "class", "show", "dev", "eth0"], capture_output=True, text=True).stdout
        assert "htb" in qdisc and "rate 100Mbit" in qdisc, qdisc
        assert dict(tb.link_rates) == {"node2->node3": "100mbit"} and dict(tb.rates) == {"node2": "200mbit"}
        to_node3 = iperf3_rate(tb, "node2", "node3", seconds=2)
        to_node1 = iperf3_rate(tb, "node2", "node1", seconds=2)
        assert 0.85 * 100e6 <= to_node3 <= 1.0 * 100e6, f"{to_node3 / 1e6:.1f} Mbit/s through a 100mbit link"
        assert 0.85 * 200e6 <= to_node1 <= 1.0 * 200e6, f"{to_node1 / 1e6:.1f} Mbit/s through node2's 200mbit"
    finally:
        tb.unshape("node2")
    qdisc = tb.exec("node2", ["tc", "qdisc", "show", "dev", "eth0"], capture_output=True, text=True).stdout
    assert "htb" not in qdisc and dict(tb.link_rates) == {}
    with pytest.raises(TestbedError, match="cannot shape node2->node2: a link joins two different nodes"):
        tb.shape_link("node2", "node2", "1mbit")


@needs_netns
def test_changed_host_key_is_refused(testbed):
    tb = testbed
    old = Path(tb.known_hosts).read_text()
    new_key = tb.regenerate_host_key("node3")
    assert Path(tb.known_hosts).read_text() == old  # known_hosts keeps the old key
    assert new_key.split()[1] not in old
    result = ssh(tb, "node3", "hostname")
    assert result.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr or "Host key verification failed" in result.stderr
    assert ssh(tb, "node2", "hostname").stdout.strip() == "node2"  # the others are untouched
    tb.trust_host_keys()
    result = ssh(tb, "node3", "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "node3"


@needs_netns
def test_stop_and_start_sshd(testbed):
    tb = testbed
    address = tb.node("node3").address
    tb.stop_sshd("node3")
    assert not port_answers(address)
    result = ssh(tb, "node3", "true")
    assert result.returncode == 255
    assert port_answers(tb.node("node2").address)
    tb.start_sshd("node3")
    assert port_answers(address)
    assert ssh(tb, "node3", "hostname").stdout.strip() == "node3"
    tb.start_sshd("node3")  # running already: fine


@needs_netns
def test_unknown_node(testbed):
    with pytest.raises(TestbedError, match="no node 'node9'; nodes are: node1, node2, node3"):
        testbed.stop_sshd("node9")


# --------------------------------------------------------------------------
# teardown and failures (testbeds of their own)
# --------------------------------------------------------------------------


@needs_netns
def test_down_leaves_nothing(tmp_path):
    tb = NetnsTestbed(parse_spec("netns:2,rate=100mbit"), tmp_path)
    tb.up()
    # a session and a background process in a namespace: both must go
    sleeper = tb.popen("node2", ["sleep", "300"])
    session = subprocess.Popen(
        ["ssh", "-F", tb.ssh_config, "node1", "sleep", "300"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # bounded: the session's sleep shows up in node1's namespace
            if any(processes.comm(p) == "sleep" for p in processes.ns_pids([tb.node("node1").netns]).get(tb.node("node1").netns, [])):
                break
            time.sleep(0.05)
        tb.down()
        assert sleeper.wait(timeout=10) is not None
        assert session.wait(timeout=30) != 0
    finally:
        for proc in (sleeper, session):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    _assert_gone(tb)
    assert tb.timings["down"] > 0
    tb.down()  # twice: fine
    _assert_gone(tb)
    old_tag = tb.tag
    tb.up()  # and once more, from scratch
    try:
        assert tb.tag != old_tag and tb.is_up
        assert ssh(tb, "node2", "hostname").stdout.strip() == "node2"
    finally:
        tb.down()
    _assert_gone(tb)


@needs_netns
def test_context_manager_tears_down_on_error(tmp_path):
    tb = NetnsTestbed(TestbedSpec(nodes=2), tmp_path)
    with pytest.raises(RuntimeError, match="inside"), tb:
        assert ssh(tb, "node1", "hostname").stdout.strip() == "node1"
        raise RuntimeError("inside")
    _assert_gone(tb)


def _fail_after(original):
    def step(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise TestbedError("injected failure")

    return step


def _fail_before(exc):
    def step(self, *args, **kwargs):
        raise exc

    return step


@needs_netns
@pytest.mark.parametrize(
    "step, how",
    [
        ("_generate_keys", "after"),  # nothing built yet
        ("_claim_subnet", "before"),  # namespaces and the root veth exist
        ("_claim_subnet", "after"),  # and the root address/route
        ("_start_sshds", "before"),
        ("_start_sshds", "after"),  # sshd running
        ("_write_inventory", "ctrl-c"),
    ],
)
def test_failed_up_leaves_nothing(tmp_path, monkeypatch, step, how):
    original = getattr(NetnsTestbed, step)
    if how == "after":
        monkeypatch.setattr(NetnsTestbed, step, _fail_after(original))
    elif how == "before":
        monkeypatch.setattr(NetnsTestbed, step, _fail_before(TestbedError("injected failure")))
    else:
        monkeypatch.setattr(NetnsTestbed, step, _fail_before(KeyboardInterrupt()))
    tb = NetnsTestbed(TestbedSpec(nodes=3, rates={"node1": "100mbit"}), tmp_path)
    with pytest.raises(KeyboardInterrupt if how == "ctrl-c" else TestbedError, match=None if how == "ctrl-c" else "injected"):
        tb.up()
    if tb.tag is not None:
        _assert_gone(tb)
    assert not tb._atexit_registered
    tb.down()


@needs_netns
def test_sshd_failure_is_reported(tmp_path, monkeypatch):
    real = build.which
    monkeypatch.setattr(build, "which", lambda name: "/bin/false" if name == "sshd" else real(name))
    tb = NetnsTestbed(TestbedSpec(nodes=2), tmp_path)
    with pytest.raises(TestbedError, match=r"^netns testbed mp[0-9a-f]{4}: sshd of node[12] exited with 1: "):
        tb.up()
    _assert_gone(tb)


@needs_netns
def test_two_testbeds_coexist(tmp_path):
    with netns_testbed(tmp_path / "a", nodes=2) as a, netns_testbed(tmp_path / "b", nodes=2) as b:
        assert a.tag != b.tag
        assert not a.subnet.overlaps(b.subnet)
        assert ssh(a, "node1", "hostname").stdout.strip() == "node1"
        assert ssh(b, "node2", "hostname").stdout.strip() == "node2"
        # the two meshes are separate networks
        probe = f"import socket; socket.create_connection(({b.node('node1').address!r}, 22), timeout=1)"
        crossed = a.exec("node1", [sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=30)
        assert crossed.returncode != 0
    _assert_gone(a)
    _assert_gone(b)


# --------------------------------------------------------------------------
# Ctrl-C and the atexit safety net (a real interpreter of their own)
# --------------------------------------------------------------------------

_CHILD = """
import logging, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job inherits SIGINT ignored
from pytest_meshperf.testbed import NetnsTestbed, TestbedSpec
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
tb = NetnsTestbed(TestbedSpec(nodes=int(sys.argv[2])), sys.argv[1])
if sys.argv[3] == "forget":
    tb.up()
    print("UP", tb.tag, flush=True)
    sys.exit(0)  # no down(): the atexit safety net must clean up
if sys.argv[3] == "hang":
    tb.up()
    print("UP", tb.tag, flush=True)
    time.sleep(60)  # killed with SIGKILL: nothing of ours runs
with tb:
    print("UP", tb.tag, flush=True)
    time.sleep(60)
"""


def _child(tmp_path, nodes, mode):
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), str(nodes), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _gone_by_tag(tag):
    assert tag + "-" not in _run("ip", "netns", "list")
    assert tag + "-" not in _run("ip", "-o", "link")
    assert f"dev {tag}-" not in _run("ip", "-4", "route", "show", "table", "all")


@needs_netns
@pytest.mark.parametrize("when", ["during up", "after up"])
def test_ctrl_c_tears_down(tmp_path, when):
    import re
    import signal

    child = _child(tmp_path, 32 if when == "during up" else 2, "with")
    tag = None
    try:
        wanted = "starting sshd of node4" if when == "during up" else "UP "
        stream = child.stderr if when == "during up" else child.stdout
        for _ in range(5000):  # bounded by lines; the child finishes up() in well under a minute
            line = stream.readline()
            if not line:
                break
            found = re.search(r"\bmp[0-9a-f]{4}\b", line)
            tag = tag or (found.group() if found else None)
            if wanted in line:
                break
        assert tag, "the child never built a testbed"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
            if tag:
                stale.remove_testbed(tag)
    assert child.returncode != 0
    assert "KeyboardInterrupt" in err
    if when == "during up":
        assert f"testbed {tag}: up() failed (KeyboardInterrupt" in err
    _gone_by_tag(tag)
    left = subprocess.run(["pgrep", "-af", str(tmp_path)], check=False, capture_output=True, text=True, timeout=30)
    assert left.returncode == 1, left.stdout


@needs_netns
def test_atexit_safety_net(tmp_path):
    child = _child(tmp_path, 2, "forget")
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    tag = out.split()[1]
    _gone_by_tag(tag)
    assert f"testbed {tag}: down in" in err


@needs_netns
def test_cleanup_stale_after_sigkill(tmp_path, testbed):
    child = _child(tmp_path, 2, "hang")
    try:
        tag = child.stdout.readline().split()[1]
        assert tag not in stale_testbeds()  # its owner still runs
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert tag in stale_testbeds()
    assert testbed.tag not in stale_testbeds()  # ours: alive
    assert tag in cleanup_stale()
    _gone_by_tag(tag)
    left = subprocess.run(["pgrep", "-af", str(tmp_path)], check=False, capture_output=True, text=True, timeout=30)
    assert left.returncode == 1, left.stdout
    assert ssh(testbed, "node1", "hostname").stdout.strip() == "node1"  # the live testbed is untouched
