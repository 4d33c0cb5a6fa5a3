"""The tc commands that shape one testbed node's egress (its ``eth0``).

One ``htb`` tree, since this kernel has neither netem nor a fair-queueing
qdisc (fq, fq_codel, sfq): below a parent class at the node rate, a default
class for data and a control class that is served first: TCP segments without
data (ACKs, SYN, FIN: u32 matches a 20-byte IP header and under 128 bytes),
ICMP, ARP, and SSH (the testbed's own sessions and agent calls).  Without it a
node that sends one flow and receives another (every node, in a round) queues
the ACKs of the flow it receives behind its own data in one FIFO, and the flow
it receives loses up to a quarter of its rate (6 nodes, 50 Mbit/s, 2 s: min
0.72 of the same link alone with tbf; 0.985 with ACKs first and this queue).  Real hosts keep ACKs apart too:
fq_codel serves sparse flows (ACKs, ARP, handshakes, SSH) first.  Each data class's queue is a ``bfifo``
of 20 ms at its rate (at least 64 KB; GSO batches of 16 KB, see SHAPED_GSO_BYTES), as tbf's ``latency`` was, so that a queue's depth does
not count in a short measurement (a 1000-packet FIFO holds 240 ms at 50 Mbit/s,
which the receiver of a 2 s test waits out).

Per-link rates (``rate.node1->node2=100mbit``) add one class per shaped link,
picked by a u32 match on the destination address, within the node rate (or,
when the node has no rate of its own, below an unlimited parent; then
``htb default 0`` sends unclassified packets unshaped).  Measured here: an
htb class at 200mbit gives iperf3 191 Mbit/s (tbf gave 192).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pytest_meshperf.testbed.processes import first_line
from pytest_meshperf.testbed.spec import NodeRef, TestbedError, TestbedNode, check_rate

HTB_BURST = "256kb"  # at least 64 KB, or rates come out uneven
# A shaped eth0 hands the qdisc GSO batches of at most 16 KB, not 64 KB: a 20 ms byte queue at 20 Mbit/s is
# 50 KB and dropped every 64 KB batch (iperf3: 1.1 Mbit/s through a 20mbit class).  Single segments (GSO off)
# cost so much CPU that 32 nodes at 20 Mbit/s saturated both cores; 16 KB batches cost a quarter of 64 KB ones'
# queue.  Unshaped, the kernel's default.
SHAPED_GSO_BYTES = 16384
UNSHAPED_GSO_BYTES = 65536
QUEUE_S = 0.020  # a data class's queue, in seconds at its rate
MIN_QUEUE_BYTES = 4 * 16384  # four GSO batches (SHAPED_GSO_BYTES), whatever the rate
_UNLIMITED = "100gbit"  # the parent class of a node with link rates only: no cap of its own
_CONTROL_CLASS = "1:2"
_DATA_CLASS = "1:10"
# What the control class carries, as (protocol, u32 matches): TCP segments without data (IP header of 5 words,
# total length < 128: ACKs, SYN, SYN-ACK, FIN, RST), ICMP, SSH both ways (this testbed's own control plane:
# sessions and agent calls), and ARP.  At 64 nodes a round's SYN-ACKs and ARP replies otherwise wait behind the
# destination's own flow, and some are dropped: 1 s retries, a client past its limit, "No route to host".
_CONTROL = [
    ("ip", ["match", "u8", "0x05", "0x0f", "at", "0", "match", "u16", "0x0000", "0xff80", "at", "2",
            "match", "ip", "protocol", "6", "0xff"]),
    ("ip", ["match", "ip", "protocol", "1", "0xff"]),
    ("ip", ["match", "ip", "protocol", "6", "0xff", "match", "ip", "sport", "22", "0xffff"]),
    ("ip", ["match", "ip", "protocol", "6", "0xff", "match", "ip", "dport", "22", "0xffff"]),
    ("arp", ["match", "u32", "0", "0", "at", "0"]),
]  # fmt: skip
_UNIT_BITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
              "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12}  # fmt: skip


def rate_bits_per_s(rate: str) -> float:
    """A tc rate ("200mbit", "25mbps": bytes) in bits per second."""
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", rate).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_BITS[unit]


def shaping_commands(
    tc: str, netns: str, node_rate: str | None, link_rates: Mapping[str, str]
) -> list[list[str]]:
    """argv lists that build the egress qdisc of ``netns``'s eth0 on an empty root.

    ``link_rates`` maps a destination address to its rate.  With neither a
    node rate nor link rates there is nothing to do (the caller deletes the
    root qdisc).
    """
    if node_rate is None and not link_rates:
        return []
    base = [tc, "-n", netns]
    parent_rate = node_rate or _UNLIMITED
    commands = [
        base + ["qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb",
                "default", _DATA_CLASS.split(":")[1] if node_rate else "0"],
        _htb_class(base, "1:", "1:1", parent_rate),
        _htb_class(base, "1:1", _CONTROL_CLASS, parent_rate, prio=0),
    ]  # fmt: skip
    # a filter priority holds one protocol: ip's filters at 1, arp's at 2, the links' (ip, after those) at 3
    commands += [_filter(base, 1 if protocol == "ip" else 2, matches, _CONTROL_CLASS, protocol)
                 for protocol, matches in _CONTROL]
    leaves = {_DATA_CLASS: node_rate} if node_rate else {}
    for index, (address, rate) in enumerate(sorted(link_rates.items()), start=11):
        classid = f"1:{index}"
        leaves[classid] = rate
        commands.append(_filter(base, 3, ["match", "ip", "dst", address + "/32"], classid))
    for classid, rate in leaves.items():
        commands.append(_htb_class(base, "1:1", classid, rate, prio=1))
        limit = max(MIN_QUEUE_BYTES, int(rate_bits_per_s(rate) / 8 * QUEUE_S))
        commands.append(base + ["qdisc", "add", "dev", "eth0", "parent", classid, "bfifo", "limit", str(limit)])
    return commands


def _htb_class(base: Sequence[str], parent: str, classid: str, rate: str, prio: int | None = None) -> list[str]:
    # quantum fixed: htb's default (rate / r2q) exceeds its limit at these rates and it warns
    argv = list(base) + ["class", "add", "dev", "eth0", "parent", parent, "classid", classid, "htb",
                         "rate", rate, "ceil", rate, "burst", HTB_BURST, "cburst", HTB_BURST,
                         "quantum", "60000"]  # fmt: skip
    return argv + (["prio", str(prio)] if prio is not None else [])


def _filter(base: Sequence[str], prio: int, matches: Sequence[str], classid: str, protocol: str = "ip") -> list[str]:
    return list(base) + ["filter", "add", "dev", "eth0", "parent", "1:", "protocol", protocol, "prio", str(prio),
                         "u32", *matches, "flowid", classid]  # fmt: skip


class Shaping:
    """NetnsTestbed's traffic shaping: a node's egress rate, or one link's, set and removed while the testbed is up."""

    # -- shaping ------------------------------------------------------------------

    def shape(self, node: NodeRef, rate: str) -> None:
        """Limit the node's egress (eth0) to ``rate`` (htb: control packets first, data in a 20 ms queue)."""
        n = self.node(node)
        problem = check_rate(rate)
        if problem:
            raise TestbedError(f"netns testbed {self.tag}: cannot shape {n.name}: {problem}")
        self._rates[n.name] = rate
        self._apply_shaping(n)

    def shape_link(self, src: NodeRef, dst: NodeRef, rate: str) -> None:
        """Limit what ``src`` sends to ``dst`` to ``rate`` (htb on src's eth0, within src's own rate)."""
        s, d = self.node(src), self.node(dst)
        problem = check_rate(rate)
        if problem or s.name == d.name:
            problem = problem or "a link joins two different nodes"
            raise TestbedError(f"netns testbed {self.tag}: cannot shape {s.name}->{d.name}: {problem}")
        self._link_rates[(s.name, d.name)] = rate
        self._apply_shaping(s)

    def _apply_shaping(self, n: TestbedNode) -> None:
        links = {self.node(d).address: r for (s, d), r in self._link_rates.items() if s == n.name}
        commands = shaping_commands(self._tools["tc"], n.netns, self._rates.get(n.name), links)
        self._delete_root_qdisc(n)  # classes, filters and leaves are added, not replaced: start from an empty root
        if commands:
            self._gso_bytes(n, SHAPED_GSO_BYTES)
        for argv in commands:
            self._run(argv, f"shaping {n.name} ({' '.join(argv[3:])})")

    def _gso_bytes(self, n: TestbedNode, size: int) -> None:
        self._run([self._tools["ip"], "-n", n.netns, "link", "set", "eth0", "gso_max_size", str(size)],
                  f"setting {n.name}'s eth0 gso_max_size to {size}")

    def unshape(self, node: NodeRef) -> None:
        """Remove the node's egress shaping, its links' too (no-op when unshaped)."""
        n = self.node(node)
        self._delete_root_qdisc(n)
        self._gso_bytes(n, UNSHAPED_GSO_BYTES)
        self._rates.pop(n.name, None)
        for link in [link for link in self._link_rates if link[0] == n.name]:
            del self._link_rates[link]

    def _delete_root_qdisc(self, n: TestbedNode) -> None:
        proc = self._run([self._tools["tc"], "-n", n.netns, "qdisc", "del", "dev", "eth0", "root"], f"unshaping {n.name}", check=False)
        if proc.returncode != 0 and "No such file" not in proc.stderr and "Cannot delete qdisc with handle of zero" not in proc.stderr:
            raise TestbedError(f"netns testbed {self.tag}: unshaping {n.name} failed: {first_line(proc.stderr)}")
