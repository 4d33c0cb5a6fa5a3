"""Bringing a netns testbed up: a tag, an uncontested /24, the bridge, veths and namespaces, then sshd."""

from __future__ import annotations

import atexit
import ipaddress
import json
import logging
import os
import re
import secrets
import time

from pytest_meshperf.plan.links import split_link
from pytest_meshperf.testbed.processes import (
    REQUIRED_TOOLS,
    list_dir,
    unavailable_reason,
    which,
)
from pytest_meshperf.testbed.spec import TESTBED_RANGE, TestbedError, TestbedNode, TestbedUnavailableError
from pytest_meshperf.testbed.stale import owner_alias

log = logging.getLogger("meshperf.testbed")

HOST_OCTET = 254  # the root namespace's address in the testbed /24


def node_mac(address: str) -> str:
    """A node's eth0 MAC address: locally administered, the address's last three octets (unique in the /24;
    testbeds do not share a bridge)."""
    octets = ipaddress.IPv4Address(address).packed[1:]
    return "02:6d:70:" + ":".join(f"{octet:02x}" for octet in octets)
SUBNET_ATTEMPTS = 10
TAG_ATTEMPTS = 20
_UNSAFE_PATH_CHARS = re.compile(r"[\s\"'#%\\]")


class Build:
    """NetnsTestbed's up(): build the namespaces and links, in as few ip/tc calls as will do."""

    # -- up -----------------------------------------------------------------------

    def up(self) -> Build:
        """Build the testbed; on any failure (or Ctrl-C) tear down what was built, then raise."""
        if self._is_up:
            return self
        reason = unavailable_reason()
        if reason:
            raise TestbedUnavailableError(reason)
        self._tools = {tool: which(tool) for tool in REQUIRED_TOOLS}  # type: ignore[misc]
        bad = _UNSAFE_PATH_CHARS.search(self.workdir)
        if bad:
            raise TestbedError(
                f"netns testbed: workdir {self.workdir!r} contains {bad.group()!r}; "
                "use a path without spaces, quotes, '#', '%' or backslashes (it goes into sshd_config)"
            )
        started = time.monotonic()
        if not self._atexit_registered:
            atexit.register(self._atexit_down)
            self._atexit_registered = True
        try:
            self._build()
        except BaseException as exc:
            log.debug("testbed %s: up() failed (%s: %s); tearing down", self.tag, type(exc).__name__, exc)
            try:
                self.down()
            except Exception as err:  # noqa: BLE001 - the original error matters more
                log.error("netns testbed %s: teardown after failed up() failed: %s", self.tag, err)
            raise
        self._is_up = True
        self.timings["up"] = time.monotonic() - started
        log.debug("testbed %s: up in %.3f s (%d nodes, %s)", self.tag, self.timings["up"], self.spec.nodes, self.subnet)
        return self

    def _step(self, name: str, started: float) -> float:
        now = time.monotonic()
        self.timings[name] = now - started
        log.debug("testbed %s: %s took %.3f s", self.tag, name, now - started)
        return now

    def _build(self) -> None:
        t = time.monotonic()
        self.tag = self.subnet = self.host_address = None  # a second up() after down(): all new
        self.nodes, self._by_name = [], {}
        self._rates.clear()
        self._link_rates.clear()
        os.makedirs(self.workdir, exist_ok=True)
        names = self.spec.names
        for name in names:
            os.makedirs(self._node_dir(name), exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self._generate_keys(names)
        t = self._step("keys", t)

        self.tag = self._new_tag()
        log.debug("testbed %s: building %s in %s", self.tag, self.spec, self.workdir)
        tag = self.tag
        # namespaces, and the root namespace's veth into the switch
        self._ip_batch(
            None,
            [f"netns add {self.switch_netns}"]
            + [f"netns add {tag}-n{i}" for i in range(1, len(names) + 1)]
            + [
                f"link add {self.host_veth} type veth peer name {tag}-hs netns {self.switch_netns}",
                # who owns the testbed: cleanup_stale() removes it when that process is gone
                f"link set {self.host_veth} alias {owner_alias()}",
            ],
            "creating namespaces",
        )
        t = self._step("namespaces", t)
        self._claim_subnet()
        t = self._step("subnet", t)
        assert self.subnet is not None
        hosts = list(self.subnet.hosts())
        self.nodes = [TestbedNode(name, str(hosts[i]), f"{tag}-n{i + 1}") for i, name in enumerate(names)]
        self._by_name = {n.name: n for n in self.nodes}
        prefix = self.subnet.prefixlen
        # each node: lo, eth0 with its address; the peer goes straight into the switch
        self._run_parallel(
            [
                (
                    f"configuring {node.name}",
                    [self._tools["ip"], "-n", node.netns, "-batch", "-"],
                    "".join(
                        line + "\n"
                        for line in (
                            "link set lo up",
                            f"link add eth0 address {node_mac(node.address)} type veth peer name "
                            f"{self._port_name(i)} netns {self.switch_netns}",
                            f"addr add {node.address}/{prefix} dev eth0",
                            "link set eth0 up",
                        )
                    ),
                )
                for i, node in enumerate(self.nodes, 1)
            ]
        )
        t = self._step("nodes", t)
        ports = [f"{tag}-hs"] + [self._port_name(i) for i in range(1, len(names) + 1)]
        self._ip_batch(
            self.switch_netns,
            ["link set lo up", f"link add {self.bridge} type bridge stp_state 0", f"link set {self.bridge} up"]
            + [f"link set {port} master {self.bridge} up" for port in ports],
            "building the switch",
        )
        t = self._step("switch", t)
        self._static_neighbours()
        t = self._step("neighbours", t)
        for name, rate in self.spec.rates.items():
            self._rates[name] = rate
        for link, rate in self.spec.link_rates.items():
            src, dst = split_link(link)
            self._link_rates[(src, dst)] = rate
        for name in {*self._rates, *(src for src, _ in self._link_rates)}:
            self._apply_shaping(self.node(name))
        t = self._step("shaping", t)
        self._write_ssh_files()
        self._start_sshds([n.name for n in self.nodes])
        t = self._step("sshd", t)
        self._write_inventory()

    def _static_neighbours(self) -> None:
        """Every node, and this machine, knows every other's MAC address for good: no ARP at all.  Pairs of a
        mesh talk once each, minutes apart, so their entries expire between; at 64 nodes every round then
        began with 64 ARP broadcasts, each copied to 64 ports by the software bridge, and some requests or
        replies were dropped on the way (the kernel's backlog on 2 CPUs): "No route to host", 1 s retries."""
        with open(f"/sys/class/net/{self.host_veth}/address", encoding="ascii") as handle:
            host_mac = handle.read().strip()
        everyone = [(node.address, node_mac(node.address)) for node in self.nodes]
        everyone.append((self.host_address, host_mac))

        def lines(me: str | None, dev: str) -> str:
            return "".join(f"neigh replace {address} lladdr {mac} nud permanent dev {dev}\n"
                           for address, mac in everyone if address != me)
        self._run_parallel(
            [(f"neighbours of {node.name}", [self._tools["ip"], "-n", node.netns, "-batch", "-"],
              lines(node.address, "eth0")) for node in self.nodes]
            + [("neighbours of this machine", [self._tools["ip"], "-batch", "-"], lines(self.host_address, self.host_veth))]
        )  # fmt: skip

    def _new_tag(self) -> str:
        for _ in range(TAG_ATTEMPTS):
            tag = "mp" + secrets.token_hex(2)
            taken = any(entry.startswith(tag + "-") for entry in list_dir("/run/netns")) or any(
                entry.startswith(tag + "-") for entry in list_dir("/sys/class/net")
            )
            if not taken:
                return tag
        raise TestbedError(f"netns testbed: no free name tag after {TAG_ATTEMPTS} attempts; remove stale 'mp*' namespaces")

    def _root_routes(self) -> list[tuple[ipaddress.IPv4Network, str]]:
        proc = self._run([self._tools["ip"], "-j", "-4", "route", "show", "table", "all"], "reading routes")
        routes = []
        for route in json.loads(proc.stdout or "[]"):
            dst = route.get("dst", "")
            if dst in ("default", "0.0.0.0/0", ""):
                continue
            try:
                routes.append((ipaddress.IPv4Network(dst, strict=False), route.get("dev", "")))
            except ValueError:
                continue
        return routes

    def _claim_subnet(self) -> None:
        """Pick a /24 of 198.18.0.0/15 no root route overlaps; verify nobody took it meanwhile."""
        rng = secrets.SystemRandom()
        for attempt in range(1, SUBNET_ATTEMPTS + 1):
            used = [net for net, _ in self._root_routes() if net.overlaps(TESTBED_RANGE)]
            free = [net for net in TESTBED_RANGE.subnets(new_prefix=24) if not any(net.overlaps(u) for u in used)]
            if not free:
                raise TestbedError(
                    f"netns testbed {self.tag}: every /24 of {TESTBED_RANGE} is routed already; remove stale testbeds"
                )
            net = rng.choice(free)
            host = f"{net.network_address + HOST_OCTET}/{net.prefixlen}"
            self._ip_batch(None, [f"addr add {host} dev {self.host_veth}", f"link set {self.host_veth} up"], "addressing the root veth")
            # another testbed may have picked the same /24 at the same moment: both back off
            others = [dev for dst, dev in self._root_routes() if dst.overlaps(net) and dev != self.host_veth]
            if not others:
                self.subnet = net
                self.host_address = str(net.network_address + HOST_OCTET)
                log.debug("testbed %s: subnet %s (attempt %d)", self.tag, net, attempt)
                return
            log.debug("testbed %s: %s also routed via %s; trying another", self.tag, net, ", ".join(others))
            self._run([self._tools["ip"], "addr", "del", host, "dev", self.host_veth], "releasing a subnet", check=False)
            time.sleep(rng.uniform(0.01, 0.1))
        raise TestbedError(f"netns testbed {self.tag}: no uncontested /24 in {TESTBED_RANGE} after {SUBNET_ATTEMPTS} attempts")
