"""Tests of pytest_meshperf.cluster.inventory: ``--cluster`` specs and hosts.yaml validation."""

from __future__ import annotations

import os
import pickle
import sys
import textwrap
from collections.abc import Callable
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest

from pytest_meshperf.cluster.inventory import (
    DEFAULT_CLUSTER,
    HOST_KEYS,
    LOCAL_MAX_NODES,
    ROLES,
    Cluster,
    Node,
    load_cluster,
    local_cluster,
)
from pytest_meshperf.errors import InventoryError, UsageError

from support.paths import DATA as TEST_DATA

DATA = TEST_DATA / "inventory"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# local clusters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [None, "", "  "])
def test_default_is_local_3(spec):
    cluster = load_cluster(spec)
    assert cluster.kind == "local"
    assert cluster.spec == DEFAULT_CLUSTER == "local:3"
    assert [n.name for n in cluster.nodes] == ["node1", "node2", "node3"]
    assert cluster.source is None


def test_local_means_local_3():
    cluster = load_cluster("local")
    assert cluster.kind == "local"
    assert cluster.spec == "local"
    assert len(cluster.nodes) == 3


@pytest.mark.parametrize("n", [2, 5, LOCAL_MAX_NODES])
def test_local_n(n):
    cluster = load_cluster(f"local:{n}")
    assert cluster.spec == f"local:{n}"
    assert len(cluster.nodes) == n
    assert cluster.nodes[-1].name == f"node{n}"
    assert cluster.nodes[-1].address == f"127.0.0.{10 + n}"


def test_local_cluster_nodes():
    cluster = local_cluster(3)
    assert cluster == load_cluster("local:3")
    first = cluster.node("node1")
    assert first.address == first.data_address == "127.0.0.11"
    assert first.role == "both" and first.can_send and first.can_receive
    assert (first.ssh_user, first.ssh_port, first.ssh_key) == (None, None, None)
    assert dict(first.labels) == {}
    assert cluster.senders == cluster.receivers == cluster.nodes


@pytest.mark.parametrize("n", [0, 1, LOCAL_MAX_NODES + 1, True, "3"])
def test_local_cluster_bad_count(n):
    with pytest.raises(InventoryError, match="local:N"):
        local_cluster(n)


# ---------------------------------------------------------------------------
# valid files
# ---------------------------------------------------------------------------


def test_valid_file(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id_test").write_text("dummy")
    write(
        tmp_path / "hosts.yaml",
        """\
        defaults:
          ssh_user: root
          ssh_key: keys/id_test
          labels: {zone: a}
        hosts:
          - name: server1
            address: 10.0.1.10
            role: server
            ssh_port: 22
            data_address: 10.1.1.10
            labels: {rack: 01, zone: b}
          - name: client1
            address: netperf-client1
            role: client
            ssh_user: admin
          - name: both1
            address: "fe80::1%eth0"
        """,
    )
    cluster = load_cluster("hosts.yaml", base_dir=tmp_path)
    assert cluster.kind == "file"
    assert cluster.spec == "hosts.yaml"
    assert cluster.source == str(tmp_path / "hosts.yaml")
    server, client, both = cluster.nodes
    key = str(tmp_path / "keys" / "id_test")

    assert server == Node(
        name="server1",
        address="10.0.1.10",
        role="server",
        data_address="10.1.1.10",
        ssh_user="root",
        ssh_port=22,
        ssh_key=key,
        labels={"zone": "b", "rack": "01"},  # host wins; scalar kept as written
    )
    assert client.data_address == "netperf-client1"  # defaults to address
    assert client.ssh_user == "admin"  # host overrides defaults
    assert client.ssh_key == key
    assert client.labels == {"zone": "a"}
    assert both.role == "both" and both.address == "fe80::1%eth0"

    assert cluster.node("client1") is client
    assert cluster.senders == (client, both)
    assert cluster.receivers == (server, both)
    assert (server.can_send, server.can_receive) == (False, True)
    assert (client.can_send, client.can_receive) == (True, False)


def test_example_inventory_in_tests_data():
    cluster = load_cluster(str(DATA / "hosts.yaml"))
    assert cluster.names == ("server1", "server2", "client1", "client2")
    assert cluster.node("client2").ssh_port == 2222
    assert cluster.node("client2").ssh_user == "netperf"
    assert cluster.node("server1").labels == {"site": "lab", "zone": "a", "rack": "r1"}


def test_ssh_key_home_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa").write_text("dummy")
    path = write(
        tmp_path / "hosts.yaml",
        """\
        hosts:
          - {name: a, address: 10.0.0.1, ssh_key: ~/.ssh/id_rsa}
          - {name: b, address: 10.0.0.2}
        """,
    )
    cluster = load_cluster(str(path))
    assert cluster.node("a").ssh_key == str(tmp_path / ".ssh" / "id_rsa")
    assert cluster.node("b").ssh_key is None


def test_inventory_path_home_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    write(
        tmp_path / "hosts.yaml",
        "hosts:\n  - {name: a, address: 10.0.0.1}\n  - {name: b, address: 10.0.0.2}\n",
    )
    cluster = load_cluster("~/hosts.yaml", base_dir="/nonexistent")
    assert cluster.source == str(tmp_path / "hosts.yaml")
    assert cluster.spec == "~/hosts.yaml"


def test_null_clears_a_default(tmp_path):
    path = write(
        tmp_path / "hosts.yaml",
        """\
        defaults: {ssh_user: root, ssh_port: 2222}
        hosts:
          - {name: a, address: 10.0.0.1, ssh_user: null}
          - {name: b, address: 10.0.0.2, data_address: ~}
        """,
    )
    a, b = load_cluster(str(path)).nodes
    assert (a.ssh_user, a.ssh_port) == (None, 2222)
    assert (b.ssh_user, b.data_address) == ("root", "10.0.0.2")


def test_yaml_merge_keys(tmp_path):
    path = write(
        tmp_path / "hosts.yaml",
        """\
        hosts:
          - &first {name: a, address: 10.0.0.1, role: server, ssh_port: 2200}
          - <<: *first
            name: b
            address: 10.0.0.2
            role: client
        """,
    )
    _a, b = load_cluster(str(path)).nodes
    assert (b.name, b.role, b.ssh_port) == ("b", "client", 2200)


def test_shared_address_with_different_ports(tmp_path):
    """Port-forwarded hosts behind one address are fine with their own data_address."""
    path = write(
        tmp_path / "hosts.yaml",
        """\
        hosts:
          - {name: a, address: gw.example, ssh_port: 2201, data_address: 10.0.0.1}
          - {name: b, address: gw.example, ssh_port: 2202, data_address: 10.0.0.2}
        """,
    )
    assert load_cluster(str(path)).names == ("a", "b")


def test_two_hosts_one_sender_one_receiver(tmp_path):
    path = write(
        tmp_path / "hosts.yaml",
        """\
        hosts:
          - {name: s, address: 10.0.0.1, role: server}
          - {name: c, address: 10.0.0.2, role: client}
        """,
    )
    cluster = load_cluster(str(path))
    assert [n.name for n in cluster.senders] == ["c"]
    assert [n.name for n in cluster.receivers] == ["s"]


# ---------------------------------------------------------------------------
# data model
# ---------------------------------------------------------------------------


def test_host_keys_are_node_fields():
    assert set(HOST_KEYS) <= set(Node.__dataclass_fields__)
    assert ROLES == ("server", "client", "both")


def test_node_is_frozen_hashable_and_picklable():
    node = Node(name="a", address="10.0.0.1", labels={"zone": "a"})
    with pytest.raises(FrozenInstanceError):
        node.name = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        node.labels["zone"] = "b"  # type: ignore[index]
    assert node.labels == {"zone": "a"}
    assert hash(node) == hash(Node(name="a", address="10.0.0.1", labels={"zone": "a"}))
    assert len({node, Node(name="a", address="10.0.0.1", labels=[("zone", "a")])}) == 1
    assert pickle.loads(pickle.dumps(node)) == node
    assert node.to_dict()["labels"] == {"zone": "a"}
    assert node.data_address == "10.0.0.1"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "a b", "address": "x"}, "name"),
        ({"name": "a", "address": "x;y"}, "address"),
        ({"name": "a", "address": "x", "role": "sever"}, "role"),
        ({"name": "a", "address": "x", "ssh_port": 0}, "ssh_port"),
        ({"name": "a", "address": "x", "ssh_user": "-x"}, "ssh_user"),
        ({"name": "a", "address": "x", "netserver": "/opt/net server"}, "netserver"),
        ({"name": "a", "address": "x", "labels": {"k": 1}}, "labels"),
    ],
)
def test_node_validates_direct_construction(kwargs, field):
    with pytest.raises(InventoryError, match=f"node '.*' {field}: "):
        Node(**kwargs)


def test_cluster_node_lookup_and_unique_names():
    cluster = local_cluster(2)
    with pytest.raises(KeyError, match="node1, node2"):
        cluster.node("nope")
    a = Node(name="a", address="10.0.0.1")
    with pytest.raises(InventoryError, match="used twice"):
        Cluster(kind="file", spec="x", nodes=(a, Node(name="A", address="10.0.0.2")))
    assert Cluster(kind="file", spec="x", nodes=[a]).nodes == (a,)  # type: ignore[arg-type]


def test_inventory_error_is_a_usage_error():
    assert issubclass(InventoryError, UsageError)


# ---------------------------------------------------------------------------
# invalid specs: one case = one file (or spec) and the message it must give
# ---------------------------------------------------------------------------

TWO_HOSTS = """\
  - name: other1
    address: 10.9.0.1
  - name: other2
    address: 10.9.0.2
"""


@dataclass(frozen=True)
class Bad:
    id: str
    text: str | bytes | None  # hosts.yaml content (None: `make` builds the spec)
    line: int | None  # expected line; None: message starts with "--cluster '<spec>'"
    parts: tuple[str, ...]  # fragments the message must contain (field, problem, fix)
    make: Callable[[Path], str] | None = None
    needs_non_root: bool = False

    def spec(self, folder: Path) -> str:
        if self.make is not None:
            return self.make(folder)
        return str(write(folder / "hosts.yaml", self.text))  # type: ignore[arg-type]


def first_host(*lines: str) -> str:
    """``hosts:`` then one host made of ``lines`` (line 2 = first of them), then 2 valid hosts."""
    body = "  - " + lines[0] + "\n" + "".join(f"    {line}\n" for line in lines[1:])
    return "hosts:\n" + body + TWO_HOSTS


def _missing(folder: Path) -> str:
    return str(folder / "nosuch.yaml")


def _directory(folder: Path) -> str:
    (folder / "inventory.d").mkdir()
    return str(folder / "inventory.d")


def _unreadable(folder: Path) -> str:
    path = write(folder / "hosts.yaml", "hosts: []\n")
    path.chmod(0)
    return str(path)


def _key_dir(folder: Path) -> str:
    (folder / "keydir").mkdir()
    return str(
        write(
            folder / "hosts.yaml",
            first_host("name: web1", "address: 10.0.1.10", "ssh_key: keydir"),
        )
    )


def _spec(value: str) -> Callable[[Path], str]:
    return lambda folder: value


BAD = [
    # keys
    Bad(
        "unknown-key-suggestion",
        first_host("name: server2", "address: 10.0.1.11", "ssh_prot: 22"),
        4,
        ("host 'server2'", "unknown key 'ssh_prot'", "did you mean 'ssh_port'?"),
    ),
    Bad(
        "unknown-key-list",
        first_host("name: web1", "address: 10.0.1.10", "colour: red"),
        4,
        ("host 'web1'", "unknown key 'colour'", "valid keys are: name, address, role"),
    ),
    Bad(
        "repeated-key",
        first_host("name: web1", "address: 10.0.1.10", "role: server", "role: client"),
        5,
        ("host 'web1'", "key 'role' is given twice (first at line 4)", "keep only one"),
    ),
    Bad(
        "netserver-relative-path",
        first_host("name: web1", "address: 10.0.1.10", "netserver: bin/netserver"),
        4,
        ("host 'web1'", "netserver", "'bin/netserver' is neither a program name nor an absolute path",
         "give a program name or an absolute path on the node"),
    ),
    Bad(
        "missing-name",
        first_host("address: 10.0.1.10", "role: server"),
        2,
        ("host #1", "missing 'name'", "give every host a unique name"),
    ),
    Bad(
        "missing-address",
        first_host("name: web1", "role: server"),
        2,
        (
            "host 'web1'",
            "missing 'address'",
            "IP address, DNS name or ssh_config alias",
        ),
    ),
    # names
    Bad(
        "duplicate-name",
        "hosts:\n  - {name: web1, address: 10.0.1.10}\n  - {name: web2, address: 10.0.1.11}\n"
        "  - {name: web1, address: 10.0.1.12}\n",
        4,
        ("host 'web1' name", "duplicate name (first defined at line 2)", "unique"),
    ),
    Bad(
        "duplicate-name-case",
        "hosts:\n  - {name: Web1, address: 10.0.1.10}\n  - {name: web1, address: 10.0.1.11}\n",
        3,
        (
            "host 'web1' name",
            "duplicate name (first defined at line 2 as 'Web1')",
            "unique",
        ),
    ),
    Bad(
        "name-not-string",
        first_host("name: 123", "address: 10.0.1.10"),
        2,
        (
            "host #1 name",
            "expected a string, got a number (123)",
            "quote the value, e.g. name: '123'",
        ),
    ),
    Bad(
        "name-empty",
        first_host("name: ''", "address: 10.0.1.10"),
        2,
        ("host #1 name", "is empty", "give every host a unique name"),
    ),
    Bad(
        "name-space",
        first_host("name: web 1", "address: 10.0.1.10"),
        2,
        (
            "host #1 name",
            "'web 1' contains a space",
            "letters, digits, '.', '_' and '-'",
        ),
    ),
    Bad(
        "name-slash",
        first_host("name: web/1", "address: 10.0.1.10"),
        2,
        ("host #1 name", "'web/1' contains '/'", "letters, digits"),
    ),
    Bad(
        "name-dots",
        first_host("name: ..", "address: 10.0.1.10"),
        2,
        ("host #1 name", "'..' starts with '.'", "start the name with a letter"),
    ),
    # addresses
    Bad(
        "duplicate-address",
        "hosts:\n  - name: web1\n    address: 10.0.1.10\n  - name: web2\n    address: 10.0.1.10\n",
        5,
        (
            "host 'web2' address",
            "'10.0.1.10' is also the address of host 'web1' (line 3)",
            "own address",
        ),
    ),
    Bad(
        "duplicate-data-address",
        "hosts:\n  - {name: web1, address: 10.0.1.10, data_address: 10.1.1.1}\n"
        "  - {name: web2, address: 10.0.1.11, data_address: 10.1.1.1}\n",
        3,
        (
            "host 'web2' data_address",
            "also the data address of host 'web1' (line 2)",
            "own data_address",
        ),
    ),
    Bad(
        "address-not-string",
        first_host("name: web1", "address: [10.0.1.10]"),
        3,
        ("host 'web1' address", "expected a string, got a list", "address: 10.0.1.10"),
    ),
    Bad(
        "address-empty",
        first_host("name: web1", "address: ''"),
        3,
        ("host 'web1' address", "is empty", "IP address, DNS name or ssh_config alias"),
    ),
    Bad(
        "address-null",
        first_host("name: web1", "address:"),
        3,
        ("host 'web1' address", "is empty", "IP address"),
    ),
    Bad(
        "address-semicolon",
        first_host("name: web1", "address: '10.0.1.10;reboot'"),
        3,
        (
            "host 'web1' address",
            "contains ';'",
            "IP address, DNS name or ssh_config alias",
        ),
    ),
    Bad(
        "address-space",
        first_host("name: web1", "address: 10.0.1.10 x"),
        3,
        ("host 'web1' address", "contains a space", "IP address"),
    ),
    Bad(
        "address-subshell",
        first_host("name: web1", "address: $(reboot)"),
        3,
        ("host 'web1' address", "contains '$'", "IP address"),
    ),
    Bad(
        "address-option",
        first_host("name: web1", "address: -oProxyCommand"),
        3,
        ("host 'web1' address", "starts with '-'", "IP address"),
    ),
    Bad(
        "data-address-pipe",
        first_host("name: web1", "address: 10.0.1.10", "data_address: 10.1.1.1|x"),
        4,
        ("host 'web1' data_address", "contains '|'", "IP address"),
    ),
    # role
    Bad(
        "role-unknown",
        first_host("name: web1", "address: 10.0.1.10", "role: sever"),
        4,
        (
            "host 'web1' role",
            "'sever' is not one of server, client, both",
            "did you mean 'server'?",
        ),
    ),
    Bad(
        "role-unknown-no-match",
        first_host("name: web1", "address: 10.0.1.10", "role: router"),
        4,
        (
            "host 'web1' role",
            "'router' is not one of server, client, both",
            "valid roles are: server, client, both",
        ),
    ),
    Bad(
        "role-list",
        first_host("name: web1", "address: 10.0.1.10", "role: [server]"),
        4,
        (
            "host 'web1' role",
            "expected one of server, client, both, got a list",
            "role: both",
        ),
    ),
    # max_processes, ports
    Bad(
        "max-processes-zero",
        first_host("name: web1", "address: 10.0.1.10", "max_processes: 0"),
        4,
        ("host 'web1' max_processes", "0 is outside 1..4096", "max_processes: 32"),
    ),
    Bad(
        "ports-backwards",
        first_host("name: web1", "address: 10.0.1.10", "ports: 5299-5201"),
        4,
        ("host 'web1' ports", "'5299-5201' is not an ascending range", "ports: 5201-5299"),
    ),
    Bad(
        "ports-shell",
        first_host("name: web1", "address: 10.0.1.10", "ports: '5201-5299;reboot'"),
        4,
        ("host 'web1' ports", "is not a LOW-HIGH port range", "ports: 5201-5299"),
    ),
    # ssh_port
    Bad(
        "port-quoted",
        first_host("name: web1", "address: 10.0.1.10", "ssh_port: '22'"),
        4,
        ("host 'web1' ssh_port", "'22' is a string, not an integer", "without quotes"),
    ),
    Bad(
        "port-word",
        first_host("name: web1", "address: 10.0.1.10", "ssh_port: ssh"),
        4,
        (
            "host 'web1' ssh_port",
            "expected an integer, got a string ('ssh')",
            "between 1 and 65535",
        ),
    ),
    Bad(
        "port-bool",
        first_host("name: web1", "address: 10.0.1.10", "ssh_port: true"),
        4,
        (
            "host 'web1' ssh_port",
            "expected an integer, got a boolean (True)",
            "between 1 and 65535",
        ),
    ),
    Bad(
        "port-float",
        first_host("name: web1", "address: 10.0.1.10", "ssh_port: 22.5"),
        4,
        (
            "host 'web1' ssh_port",
            "expected an integer, got a number (22.5)",
            "between 1 and 65535",
        ),
    ),
    Bad(
        "port-zero",
        first_host("name: web1", "address: 10.0.1.10", "ssh_port: 0"),
        4,
        ("host 'web1' ssh_port", "0 is outside 1..65535", "between 1 and 65535"),
    ),
    Bad(
        "port-too-big",
        first_host("name: web1", "address: 10.0.1.10", "ssh_port: 65536"),
        4,
        ("host 'web1' ssh_port", "65536 is outside 1..65535", "between 1 and 65535"),
    ),
    # ssh_user
    Bad(
        "user-metachar",
        first_host("name: web1", "address: 10.0.1.10", "ssh_user: root;id"),
        4,
        ("host 'web1' ssh_user", "'root;id' contains ';'", "letters, digits"),
    ),
    Bad(
        "user-not-string",
        first_host("name: web1", "address: 10.0.1.10", "ssh_user: {a: b}"),
        4,
        ("host 'web1' ssh_user", "expected a string, got a mapping", "ssh_user: root"),
    ),
    # ssh_key
    Bad(
        "key-missing",
        first_host(
            "name: web1", "address: 10.0.1.10", "ssh_key: /nonexistent-meshperf/id_rsa"
        ),
        4,
        (
            "host 'web1' ssh_key",
            "'/nonexistent-meshperf/id_rsa' does not exist",
            "fix the path or create the key",
        ),
    ),
    Bad(
        "key-missing-relative-default",
        "defaults:\n  ssh_key: keys/id_missing\nhosts:\n" + TWO_HOSTS,
        2,
        (
            "defaults ssh_key",
            "'keys/id_missing' (",
            "does not exist",
            "fix the path or create the key",
        ),
    ),
    Bad(
        "key-directory",
        None,
        4,
        ("host 'web1' ssh_key", "is a directory", "private key file"),
        make=_key_dir,
    ),
    Bad(
        "key-empty",
        first_host("name: web1", "address: 10.0.1.10", "ssh_key: ''"),
        4,
        ("host 'web1' ssh_key", "is empty", "ssh_key: ~/.ssh/id_rsa"),
    ),
    # labels
    Bad(
        "labels-list",
        first_host("name: web1", "address: 10.0.1.10", "labels: [a, b]"),
        4,
        (
            "host 'web1' labels",
            "expected a mapping of key: value, got a list",
            "labels: {zone: a",
        ),
    ),
    Bad(
        "label-nested",
        first_host("name: web1", "address: 10.0.1.10", "labels: {zone: {a: b}}"),
        4,
        (
            "host 'web1' labels zone",
            "expected a single value, got a mapping",
            "zone: a",
        ),
    ),
    Bad(
        "label-null",
        first_host("name: web1", "address: 10.0.1.10", "labels:", "  zone: ~"),
        5,
        (
            "host 'web1' labels zone",
            "has no value",
            "give it a value or remove the label",
        ),
    ),
    Bad(
        "label-key-number",
        first_host("name: web1", "address: 10.0.1.10", "labels: {1: a}"),
        4,
        ("host 'web1' labels", "key is a number (1), not a name", "plain words"),
    ),
    # structure
    Bad(
        "empty-file",
        "",
        1,
        ("inventory", "the file is empty", "list at least two hosts under 'hosts:'"),
    ),
    Bad(
        "comments-only",
        "# nothing yet\n",
        1,
        ("inventory", "the file is empty", "hosts:"),
    ),
    Bad(
        "no-hosts-key",
        "defaults:\n  ssh_user: root\n",
        1,
        ("inventory", "no 'hosts:' list", "add 'hosts:'"),
    ),
    Bad(
        "hosts-empty-list",
        "defaults: {}\nhosts: []\n",
        2,
        ("hosts", "the list is empty", "add at least two hosts"),
    ),
    Bad(
        "hosts-null",
        "# inventory\nhosts:\n",
        2,
        ("hosts", "the list is empty", "add at least two hosts"),
    ),
    Bad(
        "hosts-not-list",
        "hosts:\n  name: web1\n  address: 10.0.1.10\n",
        2,
        ("hosts", "expected a list of hosts, got a mapping", "'- name: ...'"),
    ),
    Bad(
        "host-not-mapping",
        "hosts:\n  - web1\n  - web2\n",
        2,
        (
            "host #1",
            "expected a mapping (name, address, ...), got a string ('web1')",
            "'- name: ...'",
        ),
    ),
    Bad(
        "top-level-unknown-key",
        "host:\n" + TWO_HOSTS,
        1,
        ("top level", "unknown key 'host'", "did you mean 'hosts'?"),
    ),
    Bad(
        "top-level-list",
        TWO_HOSTS,
        1,
        ("inventory", "got a list", "under a top-level 'hosts:' key"),
    ),
    Bad(
        "top-level-text-list",
        "10.0.1.20\n10.0.1.21\n",
        1,
        (
            "inventory",
            "expected a mapping with a 'hosts:' list, got a string",
            "start the file with 'hosts:'",
        ),
    ),
    Bad(
        "defaults-not-mapping",
        "defaults: root\nhosts:\n" + TWO_HOSTS,
        1,
        ("defaults", "expected a mapping, got a string ('root')", "ssh_user: root"),
    ),
    Bad(
        "defaults-name",
        "defaults:\n  name: web\nhosts:\n" + TWO_HOSTS,
        2,
        ("defaults", "'name' cannot be a default", "set 'name' on each host"),
    ),
    Bad(
        "defaults-address",
        "defaults:\n  address: 10.0.0.1\nhosts:\n" + TWO_HOSTS,
        2,
        ("defaults", "'address' cannot be a default", "set 'address' on each host"),
    ),
    Bad(
        "defaults-unknown-key",
        "defaults:\n  ssh_usr: root\nhosts:\n" + TWO_HOSTS,
        2,
        ("defaults", "unknown key 'ssh_usr'", "did you mean 'ssh_user'?"),
    ),
    Bad(
        "defaults-bad-port",
        "defaults:\n  ssh_port: 99999\nhosts:\n" + TWO_HOSTS,
        2,
        ("defaults ssh_port", "99999 is outside 1..65535", "between 1 and 65535"),
    ),
    # mesh
    Bad(
        "single-host",
        "hosts:\n  - name: web1\n    address: 10.0.1.10\n",
        1,
        ("hosts", "a mesh needs at least 2 hosts, got 1", "add another host"),
    ),
    Bad(
        "no-sender",
        "hosts:\n  - {name: a, address: 10.0.0.1, role: server}\n"
        "  - {name: b, address: 10.0.0.2, role: server}\n",
        1,
        (
            "hosts",
            "no host can send (roles: server)",
            "give at least one host role 'client' or 'both'",
        ),
    ),
    Bad(
        "no-receiver",
        "hosts:\n  - {name: a, address: 10.0.0.1, role: client}\n"
        "  - {name: b, address: 10.0.0.2, role: client}\n",
        1,
        (
            "hosts",
            "no host can receive (roles: client)",
            "give at least one host role 'server' or 'both'",
        ),
    ),
    # YAML
    Bad(
        "yaml-indentation",
        "hosts:\n  - name: a\n    address: 10.0.1.10\n   - name: b\n",
        4,
        (":4:4: YAML syntax error: expected <block end>", "check indentation"),
    ),
    Bad(
        "yaml-unclosed-quote",
        "hosts:\n  - name: 'a\n",
        3,
        (":3:1: YAML syntax error: found unexpected end of stream", "quotes"),
    ),
    Bad(
        "yaml-tab",
        "hosts:\n\t- name: a\n",
        2,
        (":2:1: YAML syntax error:", "cannot start any token"),
    ),
    Bad(
        "yaml-two-documents",
        "hosts: []\n---\nhosts: []\n",
        2,
        (":2:1: YAML syntax error:", "another document"),
    ),
    Bad(
        "yaml-python-tag",
        "hosts: !!python/object:os.system x\n",
        1,
        (":1:8: invalid YAML", "could not determine a constructor", "no tags"),
    ),
    Bad(
        "yaml-control-char",
        "hosts:\n  - name: a\x07\n",
        2,
        (
            ":2:12: YAML syntax error: unacceptable character #x0007",
            "remove the character",
        ),
    ),
    # the file itself
    Bad(
        "not-utf8",
        b"hosts:\n  - name: caf\xe9\n",
        None,
        ("is not UTF-8 text (byte 0xe9", "save", "UTF-8"),
    ),
    Bad(
        "missing-file",
        None,
        None,
        ("no such file", "give a hosts.yaml path or local:N"),
        make=_missing,
    ),
    Bad(
        "directory",
        None,
        None,
        ("is a directory", "give a hosts.yaml path or local:N"),
        make=_directory,
    ),
    Bad(
        "unreadable",
        None,
        None,
        ("cannot read the file (Permission denied)", "permissions"),
        make=_unreadable,
        needs_non_root=True,
    ),
    # local:N
    Bad(
        "local-1",
        None,
        None,
        ("needs 2 to 64 nodes, got 1", "local:N with 2 <= N <= 64"),
        make=_spec("local:1"),
    ),
    Bad("local-0", None, None, ("got 0", "local:N"), make=_spec("local:0")),
    Bad(
        "local-65",
        None,
        None,
        ("got 65", "local:N with 2 <= N <= 64"),
        make=_spec("local:65"),
    ),
    Bad(
        "local-word",
        None,
        None,
        ("'three' is not a node count", "local:N"),
        make=_spec("local:three"),
    ),
    Bad(
        "local-empty",
        None,
        None,
        ("missing the node count", "local:N"),
        make=_spec("local:"),
    ),
    Bad(
        "local-negative",
        None,
        None,
        ("'-2' is not a node count", "local:N"),
        make=_spec("local:-2"),
    ),
    Bad(
        "local-float",
        None,
        None,
        ("'2.5' is not a node count", "local:N"),
        make=_spec("local:2.5"),
    ),
]


def bad_params():
    for case in BAD:
        marks = []
        if case.needs_non_root:
            marks.append(
                pytest.mark.skipif(
                    IS_ROOT or sys.platform == "win32", reason="root reads any file"
                )
            )
        yield pytest.param(case, id=case.id, marks=marks)


def check_message(case: Bad, spec: str, message: str) -> None:
    assert "\n" not in message and "\r" not in message, message
    if case.line is None:
        assert message.startswith(f"--cluster {spec!r}: "), message
    else:
        assert message.startswith(f"{spec}:{case.line}:"), message
    for part in case.parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert "; " in message, f"no fix in {message!r}"


@pytest.mark.parametrize("case", list(bad_params()))
def test_invalid_inventory(case: Bad, tmp_path: Path) -> None:
    spec = case.spec(tmp_path)
    with pytest.raises(InventoryError) as excinfo:
        load_cluster(spec)
    check_message(case, spec, str(excinfo.value))


def test_error_names_the_file_as_given(tmp_path):
    write(
        tmp_path / "hosts.yaml",
        first_host("name: server2", "address: 10.0.1.11", "ssh_prot: 22"),
    )
    with pytest.raises(InventoryError) as excinfo:
        load_cluster("hosts.yaml", base_dir=tmp_path)
    assert (
        str(excinfo.value)
        == "hosts.yaml:4: host 'server2': unknown key 'ssh_prot'; did you mean 'ssh_port'?"
    )


def test_missing_relative_key_shows_resolved_path(tmp_path):
    write(
        tmp_path / "hosts.yaml",
        "defaults:\n  ssh_key: keys/id_missing\nhosts:\n" + TWO_HOSTS,
    )
    with pytest.raises(InventoryError) as excinfo:
        load_cluster("hosts.yaml", base_dir=tmp_path)
    assert (
        f"'keys/id_missing' ({tmp_path / 'keys' / 'id_missing'}) does not exist"
        in str(excinfo.value)
    )


def test_missing_file_as_given(tmp_path):
    with pytest.raises(InventoryError) as excinfo:
        load_cluster("nosuch.yaml", base_dir=tmp_path)
    message = str(excinfo.value)
    assert message.startswith("--cluster 'nosuch.yaml': no such file")
    assert message.endswith("; give a hosts.yaml path or local:N")


def test_read_error_is_an_inventory_error(tmp_path, monkeypatch):
    path = write(tmp_path / "hosts.yaml", "hosts: []\n")

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pytest_meshperf.cluster.hosts_file.open", deny, raising=False)
    with pytest.raises(
        InventoryError,
        match=r"cannot read the file \(Permission denied\); check its permissions",
    ):
        load_cluster(str(path))


# ---------------------------------------------------------------------------
# end to end: the plugin turns an InventoryError into a usage error (exit 4)
# (needs the plugin's --cluster option and `pytest_plugins = ["pytester"]`)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(bad_params()))
def test_invalid_inventory_is_usage_error(case: Bad, pytester: pytest.Pytester) -> None:
    spec = case.spec(pytester.path)
    with pytest.raises(InventoryError) as excinfo:
        load_cluster(spec)
    message = str(excinfo.value)
    pytester.makepyfile("def test_nothing():\n    pass\n")

    result = pytester.runpytest_subprocess("--cluster", spec)

    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert f"ERROR: {message}" in result.stderr.lines, output
    assert "Traceback" not in output
