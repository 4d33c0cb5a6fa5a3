"""How the controller starts agents on nodes and reaches them: one module per transport.

A transport turns a ``Node`` into a running agent and gives back an
``AgentHandle``: a way to open an authenticated connection and a way to stop it.
``local`` runs agents as child processes on this machine (the embedded cluster);
the SSH transport (Fabric) will launch them on remote nodes the same way.
"""
from __future__ import annotations

from pytest_meshperf.cluster.model import Node
from pytest_meshperf.transport import local
from pytest_meshperf.transport.base import AgentHandle, is_local  # noqa: F401  (the transports' shared face, re-exported)
from pytest_meshperf.transport.options import SshOptions


def start_agent(node: Node, secret: str, log_dir: str, lease_s: float, run_id: str,
                ssh_options: SshOptions | None = None, nodes_by_name: dict[str, Node] | None = None) -> AgentHandle:
    """Start ``node``'s agent with the transport that reaches it; raises AgentError (TransportError)."""
    if is_local(node):
        return local.start_agent(node, secret, log_dir, lease_s)
    from pytest_meshperf.transport.ssh import SshNode  # the SSH stack (paramiko, ~0.2 s) only for remote nodes
    remote = SshNode(node, ssh_options or SshOptions(), nodes_by_name)
    try:
        remote.connect()
        # One remote command: checks python and the tools, verifies the bundle, starts the agent (agent/boot.py).
        handle = remote.start_agent(secret, lease_s, run_id, log_dir)
    except BaseException:
        remote.close()
        raise
    return handle
