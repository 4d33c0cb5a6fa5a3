"""How the controller starts agents on nodes and reaches them: one module per transport.

A transport turns a ``Node`` into a running agent and gives back an
``AgentHandle``: a way to open an authenticated connection and a way to stop it.
``local`` runs agents as child processes on this machine (the embedded cluster);
the SSH transport (Fabric) will launch them on remote nodes the same way.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict


@dataclass
class AgentHandle:
    node: str
    endpoint: Dict[str, Any]          # plain builtins: passed to xdist workers as-is
    connect: Callable[[], Any]        # returns a socket-like object connected to the agent
    info: Dict[str, Any] = field(default_factory=dict)   # the agent's ready line
    stop: Callable[[], None] = lambda: None


def is_local(node) -> bool:
    """A node on this machine: a loopback address and no SSH settings."""
    import ipaddress
    try:
        loopback = ipaddress.ip_address(node.address).is_loopback
    except ValueError:
        return False
    return loopback and not (node.ssh_user or node.ssh_port or node.ssh_key)


def start_agent(node, secret, log_dir, lease_s):
    """Start ``node``'s agent with the transport that reaches it."""
    from ..errors import AgentError
    from . import local
    if is_local(node):
        return local.start_agent(node, secret, log_dir, lease_s)
    raise AgentError("%s (%s): remote nodes need the SSH transport, which this version of meshperf does not "
                     "have yet; use nodes on loopback addresses or --cluster local:N" % (node.name, node.address))
