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


GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")   # OpenSSH's default


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's accept-new: remember an unknown key; a changed key still fails (paramiko checks that first).
    ``alias``: ssh_config's HostKeyAlias, the name to remember it under; ``hashed``: HashKnownHosts."""

    def __init__(self, path: str, alias: str | None = None, hashed: bool = False) -> None:
        self.path, self.alias, self.hashed = path, alias, hashed

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        name = self.alias or hostname
        written = paramiko.HostKeys.hash_host(name) if self.hashed else name
        with _known_hosts_lock:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(f"{written} {key.get_name()} {key.get_base64()}\n")
        log.info("accept-new: added %s key of %s to %s", key.get_name(), name, self.path)


def _files(value: Any) -> list[str]:
    """An ssh_config list of files (a string of words, or a list of them), each expanded."""
    if not value:
        return []
    words = value.split() if isinstance(value, str) else [w for item in value for w in str(item).split()]
    return [os.path.expanduser(word) for word in words if word.lower() != "none"]


def _lookup_name(host: str, port: int) -> str:
    """The name known_hosts files give a host: ``host``, or ``[host]:port`` off port 22 (as OpenSSH writes it)."""
    return host if int(port or 22) == 22 else f"[{host}]:{port}"


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
    config = conn.ssh_config
    # Every file OpenSSH would read: --ssh-known-hosts, else each UserKnownHostsFile (the first is the one
    # accept-new writes), and each GlobalKnownHostsFile; hashed entries (|1|...) match as they do for ssh.
    user_files = [os.path.expanduser(options.known_hosts)] if options.known_hosts else (
        _files(config.get("userknownhostsfile")) or [os.path.expanduser("~/.ssh/known_hosts")])
    global_files = _files(config.get("globalknownhostsfile")) if config.get("globalknownhostsfile") else list(
        GLOBAL_KNOWN_HOSTS)
    known = user_files[0]
    alias = config.get("hostkeyalias")
    client = conn.client
    if check == "off":
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    else:
        if os.path.exists(known):
            client.load_host_keys(known)
        for extra in user_files[1:] + global_files:
            if os.path.isfile(extra):
                try:
                    client.load_system_host_keys(extra)   # read only: nothing is ever written there
                except (OSError, paramiko.SSHException) as exc:
                    log.warning("cannot read the known hosts file %s: %s", extra, exc)
        if alias:
            _known_under_alias(client, alias, _lookup_name(conn.host, conn.port), [known] + user_files[1:]
                               + global_files)
        hashed = str(config.get("hashknownhosts", "no")).lower() == "yes"
        client.set_missing_host_key_policy(paramiko.RejectPolicy() if check == "yes" else
                                           AcceptNewPolicy(known, alias, hashed))
    if isinstance(conn.gateway, Connection):  # a ProxyJump hop is verified like any host
        apply_host_key_policy(conn.gateway, node, options)
    return check, known


def _known_under_alias(client: paramiko.SSHClient, alias: str, name: str, files: list[str]) -> None:
    """ssh_config's HostKeyAlias: the host's keys are the ones known for ``alias``; paramiko looks hosts up by
    ``name`` only, so the alias's keys are added under it (in memory) before the connection checks them."""
    for path in files:
        if not os.path.isfile(path):
            continue
        try:
            keys = paramiko.HostKeys(path)
        except (OSError, paramiko.SSHException):
            continue
        for keytype, key in (keys.lookup(alias) or {}).items():
            client.get_host_keys().add(name, keytype, key)
