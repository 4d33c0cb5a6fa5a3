"""The tc commands that shape one testbed node's egress (its ``eth0``).

Only a node rate: one ``tbf`` (exact to about 95% on these kernels; ``netem``
is not available).  Per-link rates (``rate.node1->node2=100mbit``) need to
tell destinations apart, which tbf cannot: then the root is an ``htb`` with
one class per shaped link, picked by a u32 match on the destination address,
and everything else goes to a default class at the node rate (or, when the
node has no rate of its own, straight out: ``htb default 0`` sends
unclassified packets unshaped).  A link class never exceeds the node rate
(all classes hang below one parent at the node rate).  Measured here: an htb


class at 200mbit gives iperf3 191 Mbit/s, tbf 192 Mbit/s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_meshperf.testbed.processes import first_line
from pytest_meshperf.testbed.spec import NodeRef, TestbedError, TestbedNode, check_rate

TBF_BURST = "256kb"  # at least 64 KB, or rates come out uneven
TBF_LATENCY = "20ms"
HTB_BURST = "256kb"
_UNLIMITED = "100gbit"  # the parent class of a node with link rates only: no cap of its own


def shaping_commands(
    tc: str, netns: str, node_rate: str | None, link_rates: Mapping[str, str]
) -> list[list[str]]:
    """argv lists that replace the egress qdisc of ``netns``'s eth0.

    ``link_rates`` maps a destination address to its rate.  With neither a
    node rate nor link rates there is nothing to do (the caller deletes the
    root qdisc).
    """
    base = [tc, "-n", netns]
    if not link_rates:
        if node_rate is None:
            return []
        return [base + ["qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", node_rate,
                        "burst", TBF_BURST, "latency", TBF_LATENCY]]  # fmt: skip
    default = "10" if node_rate else "0"
    commands = [
        base + ["qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", default],
        _htb_class(base, "1:", "1:1", node_rate or _UNLIMITED),
    ]
    if node_rate:
        commands.append(_htb_class(base, "1:1", "1:10", node_rate))
    for index, (address, rate) in enumerate(sorted(link_rates.items()), start=11):
        classid = f"1:{index}"
        commands.append(_htb_class(base, "1:1", classid, rate))
        commands.append(base + ["filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1",
                                "u32", "match", "ip", "dst", address + "/32", "flowid", classid])  # fmt: skip
    return commands


def _htb_class(base: Sequence[str], parent: str, classid: str, rate: str) -> list[str]:
    # quantum fixed: htb's default (rate / r2q) exceeds its limit at these rates and it warns
    return list(base) + ["class", "add", "dev", "eth0", "parent", parent, "classid", classid, "htb",
                         "rate", rate, "ceil", rate, "burst", HTB_BURST, "cburst", HTB_BURST,
                         "quantum", "60000"]  # fmt: skip


class Shaping:
    """NetnsTestbed's traffic shaping: a node's egress rate, or one link's, set and removed while the testbed is up."""

    # -- shaping ------------------------------------------------------------------

    def shape(self, node: NodeRef, rate: str) -> None:
        """Limit the node's egress (eth0) to ``rate``: tbf (burst 256kb, latency 20ms), or htb with link rates."""
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
        if links:  # filters and classes are added, not replaced: start from an empty root
            self._delete_root_qdisc(n)
        for argv in commands:
            self._run(argv, f"shaping {n.name} ({' '.join(argv[3:])})")

    def unshape(self, node: NodeRef) -> None:
        """Remove the node's egress shaping, its links' too (no-op when unshaped)."""
        n = self.node(node)
        self._delete_root_qdisc(n)
        self._rates.pop(n.name, None)
        for link in [link for link in self._link_rates if link[0] == n.name]:
            del self._link_rates[link]

    def _delete_root_qdisc(self, n: TestbedNode) -> None:
        proc = self._run([self._tools["tc"], "-n", n.netns, "qdisc", "del", "dev", "eth0", "root"], f"unshaping {n.name}", check=False)
        if proc.returncode != 0 and "No such file" not in proc.stderr and "Cannot delete qdisc with handle of zero" not in proc.stderr:
            raise TestbedError(f"netns testbed {self.tag}: unshaping {n.name} failed: {first_line(proc.stderr)}")
