"""SSH trust both ways: the host key policy a connection verifies nodes with, and what a failed login means."""

import logging
import os
import shlex
import threading

import paramiko
from fabric import Connection

log = logging.getLogger("meshperf.ssh")

_known_hosts_lock = threading.Lock()


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's accept-new: remember an unknown key; a changed key still fails (paramiko checks that first)."""

    def __init__(self, path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _known_hosts_lock:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write("%s %s %s\n" % (hostname, key.get_name(), key.get_base64()))
        log.info("accept-new: added %s key of %s to %s", key.get_name(), hostname, self.path)


def explain(exc, node):
    text = str(exc)
    if isinstance(exc, paramiko.PasswordRequiredException) or "encrypted" in text.lower():
        return ("the key %s needs a passphrase; meshperf never prompts: load it into ssh-agent (ssh-add) "
                "or use a key without one" % (node.node.ssh_key or "file"))
    if isinstance(exc, paramiko.AuthenticationException):
        return ("authentication failed for user %s (%s); meshperf uses keys and never prompts for a password: "
                "check ssh_user and ssh_key" % (node.conn.user if node.conn else node.node.ssh_user or "?", text))
    if "not found in known_hosts" in text:
        return ("unknown host key: %s holds no key for this host; check its key and add it "
                "(ssh-keyscan -p %d %s >> %s), or opt out with --ssh-host-keys accept-new (or off for throwaway labs)"
                % (node.known_hosts, node.node.ssh_port or 22, shlex.quote(node.conn.host if node.conn else
                                                                          node.node.address), node.known_hosts))
    return text


def apply_host_key_policy(conn, node, options):
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
