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
        classid = "1:%d" % index
        commands.append(_htb_class(base, "1:1", classid, rate))
        commands.append(base + ["filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1",
                                "u32", "match", "ip", "dst", address + "/32", "flowid", classid])  # fmt: skip
    return commands


def _htb_class(base: Sequence[str], parent: str, classid: str, rate: str) -> list[str]:
    # quantum fixed: htb's default (rate / r2q) exceeds its limit at these rates and it warns
    return list(base) + ["class", "add", "dev", "eth0", "parent", parent, "classid", classid, "htb",
                         "rate", rate, "ceil", rate, "burst", HTB_BURST, "cburst", HTB_BURST,
                         "quantum", "60000"]  # fmt: skip
