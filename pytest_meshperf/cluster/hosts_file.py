"""hosts.yaml read into nodes: every key and value checked, every problem one line naming file:line and the fix."""

from __future__ import annotations

import os
from typing import Any

import yaml

from pytest_meshperf.cluster.fields import (
    HOST_KEYS,
    OPTIONAL_HOST_KEYS,
    REQUIRED_HOST_KEYS,
    TOP_KEYS,
    VALUE_CHECKS,
    check_label,
    check_name,
    suggest,
)
from pytest_meshperf.cluster.model import Cluster, Node
from pytest_meshperf.errors import InventoryError
from pytest_meshperf.yamlfile import YamlDocument, one_line

_YamlNode = yaml.Node
_Pairs = dict[str, tuple[_YamlNode, _YamlNode]]


class HostsFile(YamlDocument):
    error = InventoryError

    def __init__(self, display: str, base_dir: str) -> None:
        super().__init__(display)
        path = os.path.expanduser(display)
        if not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        self.path = os.path.abspath(path)
        self.folder = os.path.dirname(self.path)

    # -- errors -------------------------------------------------------------

    def _spec_error(self, what: str, fix: str) -> InventoryError:
        shown = f" ({self.path})" if self.path != self.display else ""
        return InventoryError(
            one_line(f"--cluster {self.display!r}: {what}{shown}; {fix}")
        )

    # -- reading ------------------------------------------------------------

    def _read(self) -> str:
        if not os.path.exists(self.path):
            raise self._spec_error("no such file", "give a hosts.yaml path or local:N")
        if os.path.isdir(self.path):
            raise self._spec_error(
                "is a directory, not a file", "give a hosts.yaml path or local:N"
            )
        try:
            with open(self.path, encoding="utf-8-sig") as fh:
                return fh.read()
        except UnicodeDecodeError as err:
            raise self._spec_error(
                f"is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})",
                "give a hosts.yaml file saved as UTF-8",
            ) from None
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise self._spec_error(
                f"cannot read the file ({reason})",
                "check its permissions or give another hosts.yaml path",
            ) from None

    def load(self, spec: str) -> Cluster:
        text = self._read()
        nodes = self.read_nodes(text, self._inventory)
        return Cluster(kind="file", spec=spec, nodes=tuple(nodes), source=self.path)

    def _unknown_keys(
        self, pairs: _Pairs, allowed: tuple[str, ...], where: str
    ) -> None:
        for key, (key_node, _) in pairs.items():
            if key not in allowed:
                raise self.fail(
                    key_node, where, f"unknown key {key!r}", suggest(key, allowed)
                )

    # -- structure ----------------------------------------------------------

    def _inventory(self, root: _YamlNode | None) -> list[Node]:
        where = "inventory"
        if root is None or self.is_null(root):
            raise self.fail(
                root if root is not None else 1,
                where,
                "the file is empty",
                "list at least two hosts under 'hosts:'",
            )
        if isinstance(root, yaml.SequenceNode):
            raise self.fail(
                root,
                where,
                "expected a mapping with a 'hosts:' list, got a list",
                "put the list under a top-level 'hosts:' key",
            )
        if not isinstance(root, yaml.MappingNode):
            raise self.fail(
                root,
                where,
                f"expected a mapping with a 'hosts:' list, got {self.node_kind(root)}",
                "start the file with 'hosts:' followed by one '- name: ...' entry per host",
            )
        top = self.pairs(root, "top level")
        self._unknown_keys(top, TOP_KEYS, "top level")

        defaults: dict[str, Any] = {}
        default_labels: dict[str, str] = {}
        if "defaults" in top:
            defaults, default_labels = self._defaults(top["defaults"][1])

        if "hosts" not in top:
            raise self.fail(
                root, where, "no 'hosts:' list", "add 'hosts:' with at least two hosts"
            )
        hosts_key, hosts_node = top["hosts"]
        if self.is_null(hosts_node) or (
            isinstance(hosts_node, yaml.SequenceNode) and not hosts_node.value
        ):
            raise self.fail(
                hosts_key,
                "hosts",
                "the list is empty",
                "add at least two hosts ('- name: ...', 'address: ...')",
            )
        if not isinstance(hosts_node, yaml.SequenceNode):
            raise self.fail(
                hosts_node,
                "hosts",
                f"expected a list of hosts, got {self.node_kind(hosts_node)}",
                "write each host as '- name: ...' with its keys indented below",
            )
        nodes = self._hosts(hosts_node, defaults, default_labels)
        self._check_mesh(hosts_key, nodes)
        return nodes

    def _defaults(self, node: _YamlNode) -> tuple[dict[str, Any], dict[str, str]]:
        where = "defaults"
        if self.is_null(node):
            return {}, {}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(
                node,
                where,
                f"expected a mapping, got {self.node_kind(node)}",
                "write defaults as 'key: value' lines, e.g. ssh_user: root",
            )
        pairs = self.pairs(node, where)
        allowed = tuple(k for k in HOST_KEYS if k not in REQUIRED_HOST_KEYS)
        for key, (key_node, _) in pairs.items():
            if key in REQUIRED_HOST_KEYS:
                raise self.fail(
                    key_node,
                    where,
                    f"{key!r} cannot be a default",
                    f"set {key!r} on each host",
                )
        self._unknown_keys(pairs, allowed, where)
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        for key, (_, value_node) in pairs.items():
            if key == "labels":
                labels = self._labels(value_node, f"{where} labels")
            else:
                values[key] = self._field(key, value_node, f"{where} {key}")
        return values, labels

    def _hosts(
        self,
        hosts_node: yaml.SequenceNode,
        defaults: dict[str, Any],
        default_labels: dict[str, str],
    ) -> list[Node]:
        nodes: list[Node] = []
        names: dict[str, tuple[str, int]] = {}  # folded name -> (name, line)
        ssh_targets: dict[tuple[str, int | None], tuple[str, int]] = {}
        data_addresses: dict[str, tuple[str, int]] = {}
        for index, host_node in enumerate(hosts_node.value, 1):
            label = f"host #{index}"
            if not isinstance(host_node, yaml.MappingNode):
                raise self.fail(
                    host_node,
                    label,
                    f"expected a mapping (name, address, ...), got {self.node_kind(host_node)}",
                    "write each host as '- name: ...' with its keys indented below",
                )
            label = self._host_label(host_node, label)
            pairs = self.pairs(host_node, label)
            self._unknown_keys(pairs, HOST_KEYS, label)
            for key in REQUIRED_HOST_KEYS:
                if key not in pairs:
                    fix = (
                        "give every host a unique name, e.g. name: web1"
                        if key == "name"
                        else "give the host's SSH address: an IP address, DNS name or ssh_config alias"
                    )
                    raise self.fail(host_node, label, f"missing {key!r}", fix)

            values = dict(defaults)
            labels = dict(default_labels)
            for key in HOST_KEYS:
                if key not in pairs:
                    continue
                value_node = pairs[key][1]
                if key == "labels":
                    labels.update(self._labels(value_node, f"{label} labels"))
                else:
                    values[key] = self._field(key, value_node, f"{label} {key}")

            name = values["name"]
            name_line = pairs["name"][1].start_mark.line + 1
            if name.lower() in names:
                first, line = names[name.lower()]
                also = "" if first == name else f" as {first!r}"
                raise self.fail(
                    name_line,
                    f"host {name!r} name",
                    f"duplicate name (first defined at line {line}{also})",
                    "names must be unique: rename one of the hosts",
                )
            names[name.lower()] = (name, name_line)

            address_node = pairs["address"][1]
            target = (values["address"].lower(), values.get("ssh_port"))
            if target in ssh_targets:
                other, line = ssh_targets[target]
                raise self.fail(
                    address_node,
                    f"host {name!r} address",
                    f"{values['address']!r} is also the address of host {other!r} (line {line})",
                    "give every host its own address (hosts may share one only with different ssh_port values)",
                )
            ssh_targets[target] = (name, address_node.start_mark.line + 1)

            explicit = (
                values.get("data_address") is not None and "data_address" in pairs
            )
            data_node = pairs["data_address"][1] if explicit else address_node
            data_address = values.get("data_address") or values["address"]
            if data_address.lower() in data_addresses:
                other, line = data_addresses[data_address.lower()]
                if explicit:
                    origin = ""
                elif values.get("data_address"):
                    origin = " (from defaults)"
                else:
                    origin = " (taken from address)"
                raise self.fail(
                    data_node,
                    f"host {name!r} data_address",
                    f"{data_address!r}{origin} is also the data address of host {other!r} (line {line})",
                    "give every host its own data_address",
                )
            data_addresses[data_address.lower()] = (name, data_node.start_mark.line + 1)

            values["labels"] = labels
            nodes.append(Node(**values))
        return nodes

    def _host_label(self, host_node: yaml.MappingNode, fallback: str) -> str:
        """``host 'web1'`` when the host has a valid name, else ``fallback``."""
        for key_node, value_node in host_node.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.value == "name"
                and isinstance(value_node, yaml.ScalarNode)
            ):
                name = self.value(value_node)
                if check_name(name) is None:
                    return f"host {name!r}"
        return fallback

    def _field(self, key: str, node: _YamlNode, where: str) -> Any:
        value = self.value(node)
        if value is None and key in OPTIONAL_HOST_KEYS:
            return None
        problem = VALUE_CHECKS[key](value)
        if problem:
            raise self.fail(node, where, problem[0], problem[1])
        if key == "ssh_key":
            return self._key_file(value, node, where)
        return value

    def _key_file(self, value: str, node: _YamlNode, where: str) -> str:
        path = os.path.expanduser(value)
        if not os.path.isabs(path):
            path = os.path.join(self.folder, path)
        path = os.path.normpath(path)
        shown = repr(value) if path == value else f"{value!r} ({path})"
        if not os.path.exists(path):
            raise self.fail(
                node, where, f"{shown} does not exist", "fix the path or create the key"
            )
        if os.path.isdir(path):
            raise self.fail(
                node,
                where,
                f"{shown} is a directory",
                "give the path of the private key file",
            )
        return path

    def _labels(self, node: _YamlNode, where: str) -> dict[str, str]:
        if self.is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(
                node,
                where,
                f"expected a mapping of key: value, got {self.node_kind(node)}",
                "write e.g. labels: {zone: a, rack: r1}",
            )
        labels: dict[str, str] = {}
        for key, (key_node, value_node) in self.pairs(node, where).items():
            if not isinstance(value_node, yaml.ScalarNode):
                raise self.fail(
                    value_node,
                    f"{where} {key}",
                    f"expected a single value, got {self.node_kind(value_node)}",
                    "give a string or number, e.g. zone: a",
                )
            if self.is_null(value_node):
                raise self.fail(
                    value_node,
                    f"{where} {key}",
                    "has no value",
                    "give it a value or remove the label",
                )
            text = value_node.value  # the scalar as written: 'rack: 01' stays '01'
            problem = check_label(key, text)
            if problem:
                raise self.fail(value_node, f"{where} {key}", problem[0], problem[1])
            labels[key] = text
        return labels

    def _check_mesh(self, hosts_key: _YamlNode, nodes: list[Node]) -> None:
        where = "hosts"
        if len(nodes) < 2:
            raise self.fail(
                hosts_key,
                where,
                f"a mesh needs at least 2 hosts, got {len(nodes)}",
                "add another host",
            )
        roles = ", ".join(sorted({n.role for n in nodes}))
        if not any(n.can_send for n in nodes):
            raise self.fail(
                hosts_key,
                where,
                f"no host can send (roles: {roles})",
                "give at least one host role 'client' or 'both'",
            )
        if not any(n.can_receive for n in nodes):
            raise self.fail(
                hosts_key,
                where,
                f"no host can receive (roles: {roles})",
                "give at least one host role 'server' or 'both'",
            )
        if not any(
            s is not r for s in nodes if s.can_send for r in nodes if r.can_receive
        ):
            raise self.fail(  # pragma: no cover - unreachable with the current roles
                hosts_key,
                where,
                "the only sender is also the only receiver",
                "add a host that can send or receive to another",
            )
