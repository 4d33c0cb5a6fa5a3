"""How the controller starts agents on nodes and reaches them: one module per transport.

A transport turns a ``Node`` into a running agent and gives back an
``AgentHandle``: a way to open an authenticated connection and a way to stop it.
``local`` runs agents as child processes on this machine (the embedded cluster);
the SSH transport (Fabric) will launch them on remote nodes the same way.
"""

from pytest_meshperf.transport.base import AgentHandle, is_local  # noqa: F401  (the transports' shared face, re-exported)


def start_agent(node, secret, log_dir, lease_s, run_id, ssh_options=None, nodes_by_name=None):
    """Start ``node``'s agent with the transport that reaches it; raises AgentError (TransportError)."""
    from pytest_meshperf.transport import local
    if is_local(node):
        return local.start_agent(node, secret, log_dir, lease_s)
    from pytest_meshperf.transport.options import SshOptions
    from pytest_meshperf.transport.ssh import SshNode
    remote = SshNode(node, ssh_options or SshOptions(), nodes_by_name)
    try:
        remote.connect()
        # One remote command: checks python and the tools, verifies the bundle, starts the agent (agent/boot.py).
        handle = remote.start_agent(secret, lease_s, run_id, log_dir)
    except BaseException:
        remote.close()
        raise
    return handle
