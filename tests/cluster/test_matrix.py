"""--matrix CLIENTS SERVERS: address lists as a cluster, every client against every server.

The lists are parsed into the same nodes a hosts.yaml gives; real pytest runs
measure them with real iperf3 (loopback entries through local agents) and over
SSH with ssh_config aliases on a netns testbed.
"""

import json
from pathlib import Path

import pytest

from pytest_meshperf.cluster.inventory import load_cluster
from pytest_meshperf.cluster.matrix import load_matrix
from pytest_meshperf.errors import InventoryError
from pytest_meshperf.plan.schedule import Schedule, plan_pairs
from pytest_meshperf.results.export import SPEC_KEYS

from support.meshcheck import iter_entries, validate_mesh_file
from support.testbed_fixtures import netns_testbed
from support.usage import MESH_TEST, assert_usage_error


def write(folder, name, text):
    path = Path(folder) / name
    path.write_text(text)
    return str(path)


def pair_ids(cluster):
    return sorted(pair.id for pair in plan_pairs(cluster, Schedule("rounds")))


def test_lists_become_nodes_with_roles(tmp_path):
    write(tmp_path, "clients.txt", "# clients\n10.0.1.20\n10.0.1.21   # rack 2\n\nweb-1\n")
    write(tmp_path, "servers.txt", "10.0.1.10\n  WEB-1\n2001:db8::1\n")
    cluster = load_matrix("clients.txt", "servers.txt", tmp_path)
    assert cluster.kind == "matrix"
    assert [(n.name, n.address, n.role) for n in cluster.nodes] == [
        ("10.0.1.20", "10.0.1.20", "client"), ("10.0.1.21", "10.0.1.21", "client"),
        ("web-1", "web-1", "both"),            # in both lists (host names are case-insensitive): one node
        ("10.0.1.10", "10.0.1.10", "server"), ("2001_db8__1", "2001:db8::1", "server")]
    # SSH settings come from ssh_config and the defaults: the lists set none.
    assert all(n.ssh_user is None and n.ssh_port is None and n.ssh_key is None for n in cluster.nodes)
    # 3 clients x 3 servers, less web-1 -> web-1.
    assert len(pair_ids(cluster)) == 8
    assert "web-1->web-1" not in pair_ids(cluster)


def test_spec_example_four_clients_two_servers_is_eight_pairs(tmp_path):
    write(tmp_path, "c.txt", "10.0.1.20\n10.0.1.21\n10.0.1.22\n10.0.1.23\n")
    write(tmp_path, "s.txt", "10.0.1.10\n10.0.1.11\n")
    assert pair_ids(load_matrix("c.txt", "s.txt", tmp_path)) == sorted(
        f"10.0.1.2{c}->10.0.1.1{s}" for c in range(4) for s in range(2))


def test_hosts_yaml_roles_shape_the_pairs_the_same_way(tmp_path):
    write(tmp_path, "hosts.yaml", "hosts:\n"
          "  - {name: c1, address: 10.0.1.20, role: client}\n"
          "  - {name: c2, address: 10.0.1.21, role: client}\n"
          "  - {name: b1, address: 10.0.1.30}\n"
          "  - {name: s1, address: 10.0.1.10, role: server}\n")
    assert pair_ids(load_cluster("hosts.yaml", tmp_path)) == sorted(
        ["c1->b1", "c1->s1", "c2->b1", "c2->s1", "b1->s1"])


@pytest.mark.parametrize("clients, fragments", [
    ("10.0.1.20\n10.0.1.21\n10.0.1.20\n", ["clients.txt:3", "'10.0.1.20' is listed twice (first at line 1)"]),
    ("10.0.1.20 10.0.1.21\n", ["clients.txt:1", "more than one word"]),
    ("root@10.0.1.20\n", ["clients.txt:1", "'@'", "ssh_config"]),
    ("ok\n$(reboot)\n", ["clients.txt:2", "'$'"]),
    ("-oProxy\n", ["clients.txt:1", "starts with '-'"]),
    ("# nothing\n\n", ["--matrix clients.txt", "lists no host"]),
])
def test_bad_lists_name_file_and_line(tmp_path, clients, fragments):
    write(tmp_path, "clients.txt", clients)
    write(tmp_path, "servers.txt", "10.0.1.10\n")
    with pytest.raises(InventoryError) as err:
        load_matrix("clients.txt", "servers.txt", tmp_path)
    assert "\n" not in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_missing_list_and_single_host(tmp_path):
    with pytest.raises(InventoryError, match=r"--matrix nope.txt: no such file .*one IP address"):
        load_matrix("nope.txt", "nope.txt", tmp_path)
    write(tmp_path, "one.txt", "10.0.1.10\n")
    with pytest.raises(InventoryError, match="the only host"):
        load_matrix("one.txt", "one.txt", tmp_path)


def test_usage_errors_exit_4(pytester):
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    write(pytester.path, "c.txt", "127.0.0.21\n")
    write(pytester.path, "s.txt", "127.0.0.22\n127.0.0.22\n")
    assert_usage_error(pytester.runpytest_subprocess("--matrix", "c.txt", "s.txt"),
                       "s.txt:2", "listed twice")
    assert_usage_error(pytester.runpytest_subprocess("--matrix", "c.txt", "c.txt", "--cluster", "local:2"),
                       "--matrix c.txt c.txt and --cluster local:2", "give one of them")


def test_two_clients_three_servers_on_loopback_is_six_measured_pairs(pytester, mesh_out):
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    clients = ["127.0.0.21", "127.0.0.22"]
    servers = ["127.0.0.23", "127.0.0.24", "127.0.0.25"]
    write(pytester.path, "clients.txt", "# senders\n" + "".join(f"{c}\n" for c in clients))
    write(pytester.path, "servers.txt", "\n".join(servers) + "\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--matrix", "clients.txt", "servers.txt",
                                           "--mesh-out", str(mesh_out), "--mesh-export", "export.json")
    result.assert_outcomes(passed=6)
    mesh = validate_mesh_file(str(mesh_out / "latest" / "mesh.json"))
    assert mesh["cluster"]["kind"] == "matrix"
    assert {name: node["role"] for name, node in mesh["cluster"]["nodes"].items()} == \
        dict([(c, "client") for c in clients] + [(s, "server") for s in servers])
    measured = {(src, dst): entry for src, dst, _, entry in iter_entries(mesh)}
    assert set(measured) == {(c, s) for c in clients for s in servers}
    # Rounds 2 and 3 are set up during the round before (the pipeline runs up to three rounds ahead): a lease of
    # round 1 left held (lease ids are per node, and one kept lease's id hid another node's) made round 3 wait
    # for its expiry, not pipelined.
    assert sorted((e["round"], e["group"].get("pipelined", False)) for e in measured.values()) == \
        [(1, False), (1, False), (2, True), (2, True), (3, True), (3, True)]
    for (src, dst), entry in measured.items():
        assert entry["metrics"]["throughput_bps"] > 0
        assert f"-c {dst}" in entry["instances"][0]["command"] and f"-B {src}" in entry["instances"][0]["command"]
        assert "agent" in mesh["cluster"]["nodes"][src] and "ssh" not in mesh["cluster"]["nodes"][src]  # local agents
    exported = json.loads((pytester.path / "export.json").read_text())
    assert [(e["client"], e["server"]) for e in exported] == list(measured)
    assert all(list(e)[:len(SPEC_KEYS)] == list(SPEC_KEYS) for e in exported)


@pytest.mark.usefixtures("netns_required")
def test_matrix_of_ssh_config_aliases_over_ssh(pytester, tmp_path):
    """node1..node3 are aliases in the testbed's ssh_config (HostName, User, Port, IdentityFile, known_hosts)."""
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    write(pytester.path, "clients.txt", "node1\nnode2\n")
    write(pytester.path, "servers.txt", "node2\nnode3\n")
    with netns_testbed(tmp_path / "tb", nodes=3) as tb:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--matrix", "clients.txt", "servers.txt",
                                               "--ssh-config", tb.ssh_config, "--mesh-out", str(tmp_path / "out"))
        result.assert_outcomes(passed=3)
        mesh = validate_mesh_file(str(tmp_path / "out" / "latest" / "mesh.json"))
        assert {(src, dst) for src, dst, _, _ in iter_entries(mesh)} == \
            {("node1", "node2"), ("node1", "node3"), ("node2", "node3")}
        for name, node in mesh["cluster"]["nodes"].items():
            assert node["address"] == name                              # the alias, as listed
            assert node["data_address"] == tb.node(name).address        # ssh_config's HostName
            assert node["ssh"]["host_key_check"] == "yes"               # StrictHostKeyChecking yes in ssh_config
        assert mesh["cluster"]["nodes"]["node2"]["role"] == "both"
