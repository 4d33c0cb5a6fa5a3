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
