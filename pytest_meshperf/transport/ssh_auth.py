"""SSH trust both ways: the host key policy a connection verifies nodes with, and what a failed login means."""
from __future__ import annotations

import logging
import os
import shlex
import threading
from typing import Any

import paramiko
from fabric import Connection

from pytest_meshperf.cluster.model import Node
from pytest_meshperf.transport.options import SshOptions

log = logging.getLogger("meshperf.ssh")

_known_hosts_lock = threading.Lock()


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's accept-new: remember an unknown key; a changed key still fails (paramiko checks that first)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _known_hosts_lock:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.info("accept-new: added %s key of %s to %s", key.get_name(), hostname, self.path)


def explain(exc: BaseException, node: Any) -> str:   # node: the SshNode that failed to log in
    text = str(exc)
    if isinstance(exc, paramiko.PasswordRequiredException) or "encrypted" in text.lower():
        return (f"the key {node.node.ssh_key or 'file'} needs a passphrase; meshperf never prompts: load it into "
                "ssh-agent (ssh-add) or use a key without one")
    if isinstance(exc, paramiko.AuthenticationException):
        return (f"authentication failed for user {node.conn.user if node.conn else node.node.ssh_user or '?'} ({text}"
                "); meshperf uses keys and never prompts for a password: check ssh_user and ssh_key")
    if "not found in known_hosts" in text:
        host = shlex.quote(node.conn.host if node.conn else node.node.address)
        return (f"unknown host key: {node.known_hosts} holds no key for this host; check its key and add it "
                f"(ssh-keyscan -p {node.node.ssh_port or 22} {host} >> {node.known_hosts}), or opt out with "
                "--ssh-host-keys accept-new (or off for throwaway labs)")
    return text


def apply_host_key_policy(conn: Connection, node: Node, options: SshOptions) -> tuple[str, str]:
    """Set ``conn``'s (and its jump hosts') host key policy; returns (check, known_hosts path)."""
    check = options.host_key_check or node.host_key_check
    if check is None:
        strict = str(conn.ssh_config.get("stricthostkeychecking", "yes")).lower()
        check = {"no": "off", "off": "off", "accept-new": "accept-new"}.get(strict, "yes")
    known = options.known_hosts
    if known is None:
        files = conn.ssh_config.get("userknownhostsfile")
        known = (files.split()[0] if isinstance(files, str) else files[0]) if files else "~/.ssh/known_hosts"
    known = os.path.expanduser(known)
    client = conn.client
    if check == "off":
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    else:
        if os.path.exists(known):
            client.load_host_keys(known)
        client.set_missing_host_key_policy(paramiko.RejectPolicy() if check == "yes" else AcceptNewPolicy(known))
    if isinstance(conn.gateway, Connection):  # a ProxyJump hop is verified like any host
        apply_host_key_policy(conn.gateway, node, options)
    return check, known
