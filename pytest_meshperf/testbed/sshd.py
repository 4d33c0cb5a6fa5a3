"""The testbed's SSH side: keys, one sshd per namespace, known_hosts, ssh_config and the hosts.yaml it writes."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence

import yaml

from pytest_meshperf.testbed.processes import (
    SSH_PORT,
    comm,
    kill_all,
    log_tail,
    ns_pids,
    port_answers,
    reap,
    write_file,
)
from pytest_meshperf.testbed.spec import NodeRef, TestbedError

log = logging.getLogger("meshperf.testbed")

SSHD_READY_TIMEOUT = 20.0  # all sshds of one up() answering on port 22
SSHD_STOP_TIMEOUT = 5.0
PORT_POLL_INTERVAL = 0.02


class SshHosts:
    """NetnsTestbed's sshd part: generated keys, sshd started and stopped per node, the files SSH clients read."""

    def _generate_keys(self, names: Sequence[str]) -> None:
        keygen = self._tools["ssh-keygen"]
        paths = [self.user_key] + [self._host_key(name) for name in names]
        for path in paths:
            for stale in (path, path + ".pub"):
                if os.path.exists(stale):
                    os.unlink(stale)
        jobs = [("generating the user key", [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "meshperf-testbed", "-f", self.user_key], None)]
        jobs += [
            (f"generating {name}'s host key", [keygen, "-q", "-t", "ed25519", "-N", "", "-C", f"{name}", "-f", self._host_key(name)], None)
            for name in names
        ]
        self._run_parallel(jobs)
        for path in paths:
            os.chmod(path, 0o600)

    def _host_key(self, name: str) -> str:
        return os.path.join(self._node_dir(name), "ssh_host_ed25519_key")

    # -- sshd ---------------------------------------------------------------------

    def _sshd_config_path(self, name: str) -> str:
        return os.path.join(self._node_dir(name), "sshd_config")

    def _write_ssh_files(self) -> None:
        with open(self.user_key + ".pub") as fh:
            pub = fh.read().strip()
        write_file(self.authorized_keys, pub + "\n", 0o600)
        sftp = "/usr/lib/openssh/sftp-server"
        if not os.path.exists(sftp):
            sftp = "internal-sftp"
        for node in self.nodes:
            d = self._node_dir(node.name)
            config = "\n".join(
                [
                    f"# meshperf netns testbed {self.tag}, {node.name} ({node.netns})",
                    f"Port {SSH_PORT}",
                    "AddressFamily inet",
                    f"ListenAddress {node.address}",
                    f"HostKey {self._host_key(node.name)}",
                    f"PidFile {os.path.join(d, 'sshd.pid')}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "UsePAM no",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "AllowTcpForwarding yes",
                    "AllowAgentForwarding no",
                    "X11Forwarding no",
                    "PermitTunnel no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "UseDNS no",
                    "MaxStartups 128",
                    "MaxSessions 64",
                    "LoginGraceTime 30",
                    "LogLevel INFO",
                    f"Subsystem sftp {sftp}",
                    "",
                ]
            )
            write_file(self._sshd_config_path(node.name), config, 0o600)

    def _start_sshds(self, names: Sequence[str]) -> None:
        sshd = self._tools["sshd"]
        for name in names:
            node = self.node(name)
            logfile = os.path.join(self._node_dir(name), "sshd.log")
            # own UTS namespace: the node's hostname; -D: stays our child, so an early exit is seen at once
            argv = [
                self._tools["ip"], "netns", "exec", node.netns,
                self._tools["unshare"], "--uts",
                "/bin/sh", "-c", 'hostname "$1" && exec "$2" -D -f "$3" -E "$4"',
                "sh", name, sshd, self._sshd_config_path(name), logfile,
            ]  # fmt: skip
            log.debug("testbed %s: starting sshd of %s: %s", self.tag, name, " ".join(argv))
            with open(logfile, "ab") as err:
                self._sshd[name] = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
                )
        self._wait_sshd(names)

    def _wait_sshd(self, names: Sequence[str]) -> None:
        pending = list(names)
        deadline = time.monotonic() + SSHD_READY_TIMEOUT
        for _ in range(int(SSHD_READY_TIMEOUT / PORT_POLL_INTERVAL) + 1):
            still = []
            for name in pending:
                proc = self._sshd[name]
                if proc.poll() is not None:
                    logfile = os.path.join(self._node_dir(name), "sshd.log")
                    raise TestbedError(
                        f"netns testbed {self.tag}: sshd of {name} exited with {proc.returncode}: {log_tail(logfile)}"
                    )
                if not port_answers(self.node(name).address, timeout=0.2):
                    still.append(name)
            pending = still
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(PORT_POLL_INTERVAL)
        if pending:
            raise TestbedError(
                f"netns testbed {self.tag}: sshd of {', '.join(pending)} did not answer on port {SSH_PORT} "
                f"within {SSHD_READY_TIMEOUT:.0f} s (logs in {self.workdir}/NODE/sshd.log)"
            )

    def stop_sshd(self, node: NodeRef, sessions: bool = True) -> None:
        """Stop the node's sshd (the host becomes unreachable over SSH).

        With ``sessions`` (the default) its open SSH sessions end too;
        other processes in the namespace keep running.
        """
        n = self.node(node)
        proc = self._sshd.pop(n.name, None)
        pids = [proc.pid] if proc is not None and proc.poll() is None else []
        if sessions:
            for pid in ns_pids([n.netns]).get(n.netns, []):
                if comm(pid) == "sshd" and pid not in pids:
                    pids.append(pid)
        log.debug("testbed %s: stopping sshd of %s (pids %s)", self.tag, n.name, pids)
        left = kill_all(pids)
        if proc is not None:
            reap(proc)
        if left:
            raise TestbedError(f"netns testbed {self.tag}: sshd processes {left} of {n.name} survived SIGKILL")
        for _ in range(int(SSHD_STOP_TIMEOUT / PORT_POLL_INTERVAL) + 1):
            if not port_answers(n.address, timeout=0.2):
                return
            time.sleep(PORT_POLL_INTERVAL)
        raise TestbedError(f"netns testbed {self.tag}: port {SSH_PORT} of {n.name} still answers after stopping sshd")

    def start_sshd(self, node: NodeRef) -> None:
        """(Re)start the node's sshd and wait until port 22 answers; no-op when it runs."""
        n = self.node(node)
        proc = self._sshd.get(n.name)
        if proc is not None and proc.poll() is None:
            self._wait_sshd([n.name])
            return
        self._start_sshds([n.name])

    def regenerate_host_key(self, node: NodeRef, update_known_hosts: bool = False) -> str:
        """Give the node a new host key and restart its sshd; returns the new public key line.

        ``known_hosts`` keeps the old key unless ``update_known_hosts``, so a
        strict client sees "REMOTE HOST IDENTIFICATION HAS CHANGED".
        """
        n = self.node(node)
        self.stop_sshd(n)
        path = self._host_key(n.name)
        for stale in (path, path + ".pub"):
            if os.path.exists(stale):
                os.unlink(stale)
        self._run([self._tools["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", n.name, "-f", path], f"regenerating {n.name}'s host key")
        os.chmod(path, 0o600)
        self.start_sshd(n)
        if update_known_hosts:
            self._write_known_hosts()
        with open(path + ".pub") as fh:
            return fh.read().strip()

    def trust_host_keys(self) -> None:
        """Rewrite ``known_hosts`` with every node's current host key."""
        self._write_known_hosts()

    # -- files --------------------------------------------------------------------

    def _write_known_hosts(self) -> None:
        lines = []
        for node in self.nodes:
            with open(self._host_key(node.name) + ".pub") as fh:
                keytype, key = fh.read().split()[:2]
            lines.append(f"{node.address} {keytype} {key}\n")
        write_file(self.known_hosts, "".join(lines), 0o644)

    def _write_inventory(self) -> None:
        self._write_known_hosts()
        header = f"# meshperf netns testbed {self.tag}: {self.spec}, {self.subnet}\n# ssh -F {self.ssh_config} node1\n"
        entries = [header]
        for node in self.nodes:
            entries.append(
                f"Host {node.name}\n"
                f"    HostName {node.address}\n"
                f"    Port {SSH_PORT}\n"
                "    User root\n"
                f"    IdentityFile {self.user_key}\n"
                "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                "    BatchMode yes\n"
            )
        write_file(self.ssh_config, "\n".join(entries), 0o644)
        inventory = {
            "defaults": {"role": "both", "ssh_user": "root", "ssh_port": SSH_PORT, "ssh_key": self.user_key},
            "hosts": [{"name": n.name, "address": n.address, "labels": {"netns": n.netns}} for n in self.nodes],
        }
        header = (
            f"# meshperf netns testbed {self.tag} ({self.spec}); host keys: {self.known_hosts}\n"
            "# written by pytest_meshperf.testbed; gone with the testbed\n"
        )
        write_file(self.hosts_yaml, header + yaml.safe_dump(inventory, sort_keys=False), 0o644)
