"""What deploy ships to a node (the agent bundle, --local-TOOL binaries) and how: one SFTP session, atomic renames."""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
from typing import Any, NamedTuple

import paramiko

from pytest_meshperf.errors import TransportError
from pytest_meshperf.transport import bundle as agent_bundle
from pytest_meshperf.transport.commands import sftp_makedirs
from pytest_meshperf.transport.options import SshOptions


class Shipment(NamedTuple):
    name: str           # "agent", or the tool binary's name
    data: bytes
    sha256: str
    remote_path: str    # under the remote dir; named after the content, so a changed file lands beside the old
    mode: int


def shipments(options: SshOptions) -> list[Shipment]:
    """The agent bundle, and each --local-TOOL binary."""
    shipped = agent_bundle.build()
    items = [Shipment("agent", shipped.data, shipped.sha256,
                      posixpath.join(options.remote_dir, "agent", shipped.version_dir, "agent.pyz"), 0o644)]
    for tool, local in sorted(options.local_tools.items()):
        with open(local, "rb") as handle:
            data = handle.read()
        digest = hashlib.sha256(data).hexdigest()
        items.append(Shipment(tool, data, digest,
                              posixpath.join(options.remote_dir, "bin", f"{tool}-{digest[:12]}", tool), 0o755))
    return items


def upload(node: Any, items: list[Shipment], needed: set[str]) -> dict[str, dict[str, Any]]:
    """Upload the shipments whose remote path is in ``needed`` over one SFTP session of ``node`` (an SshNode;
    the session creates the directories: no remote command); returns {name: {path, transferred_bytes, sha256}}."""
    shipped, sftp = {}, None
    for name, data, sha256, remote_path, mode in items:
        shipped[name] = {"path": remote_path, "transferred_bytes": 0, "sha256": sha256}
        if remote_path not in needed:
            continue
        # Unique per upload: nodes may share a home directory (NFS), and all uploads of a run share one pid.
        tmp = f"{remote_path}.tmp-{node.node.name}-{os.urandom(4).hex()}"
        if node.options.echo:
            node.options.echo(f"{node.node.name}: sftp put {len(data)} bytes -> {remote_path}")
        try:
            sftp = sftp or node.connect().sftp()  # one session for every file
            sftp_makedirs(sftp, posixpath.dirname(remote_path))
            sftp.putfo(io.BytesIO(data), tmp)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, remote_path)
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(f"{node.where}: uploading {remote_path} failed: {exc}")
        shipped[name]["transferred_bytes"] = len(data)
    return shipped  # the SFTP session stays open: Fabric keeps it for the connection (the log fetch)
