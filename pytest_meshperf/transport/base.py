"""What every transport shares: the handle of a started agent, and which nodes are this machine's."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable

from pytest_meshperf.cluster.model import Node


@dataclass
class AgentHandle:
    node: str
    endpoint: dict[str, Any]          # plain builtins: {"kind", "host", "port", "data_address"}, for xdist workers too
    connect: Callable[[], Any]        # returns a socket-like object connected to the agent
    info: dict[str, Any] = field(default_factory=dict)   # the agent's ready line
    # Stops the agent; given agent.shutdown's answer (with its log) when the agent has already exited.
    stop: Callable[[dict[str, Any] | None], None] = lambda reply=None: None
    log_on_node: bool = False         # its log is on the node: at stop, ask for it (agent.shutdown with log)


def is_local(node: Node) -> bool:
    """A node on this machine: a loopback address and no SSH settings."""
    try:
        loopback = ipaddress.ip_address(node.address).is_loopback
    except ValueError:
        return False
    return loopback and not (node.ssh_user or node.ssh_port or node.ssh_key or getattr(node, "ssh_jump", None))
