"""Run-wide SSH settings, apart from the SSH stack itself: reading options must not import paramiko."""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from pytest_meshperf.errors import UsageError
from pytest_meshperf.vocabulary import TOOL_BINARIES

REMOTE_HOME_DIR = ".meshperf"
CONNECT_TIMEOUT_S = 10.0


@dataclass
class SshOptions:
    """Run-wide SSH settings; per-host inventory keys override some of them."""
    host_key_check: str | None = None      # None: inventory key, then ssh_config, then "yes"
    known_hosts: str | None = None         # None: ssh_config UserKnownHostsFile, then ~/.ssh/known_hosts
    ssh_config: str | None = None          # None: ~/.ssh/config (as OpenSSH)
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    tool_paths: dict[str, str] = field(default_factory=dict)    # binary -> path on every node (--iperf3, --netserver)
    local_tools: dict[str, str] = field(default_factory=dict)   # binary -> local file to upload (--local-iperf3)
    echo: Callable[[str], None] | None = None                # -v: show every remote command
    remote_dir: str = REMOTE_HOME_DIR                           # on each node; relative paths are in the home


def ssh_options_from(opt: argparse.Namespace, base_dir: str) -> SshOptions:
    """SshOptions from pytest's (or the CLI's) options; paths relative to where the run started."""

    def path(value):
        return os.path.abspath(os.path.join(base_dir, os.path.expanduser(value))) if value else None

    local_tools = {}
    for binary in TOOL_BINARIES:
        given = getattr(opt, "meshperf_local_" + binary, None)
        if given and not os.path.isfile(path(given)):
            raise UsageError(f"--local-{binary} {given}: no such file; give the path of the {binary} binary on this "
                             "machine to upload")
        if given:
            local_tools[binary] = path(given)
    for name in ("meshperf_known_hosts", "meshperf_ssh_config"):
        value = getattr(opt, name, None)
        if value and name == "meshperf_ssh_config" and not os.path.isfile(path(value)):
            raise UsageError(f"--ssh-config {value}: no such file")
    remote_dir = getattr(opt, "meshperf_remote_dir", None) or ".meshperf"
    if remote_dir.startswith("~/"):  # remote commands start in the home directory
        remote_dir = remote_dir[2:]
    if not re.match(r"^[A-Za-z0-9._/+-]+$", remote_dir) or remote_dir.startswith("-") or \
            ".." in remote_dir.split("/"):
        raise UsageError(f"--mesh-remote-dir {remote_dir!r}: give a plain directory path (letters, digits, . _ - / +), "
                         "relative to the home directory (~/ allowed) or absolute")
    return SshOptions(remote_dir=remote_dir, host_key_check=getattr(opt, "meshperf_host_keys", None),
                      known_hosts=path(getattr(opt, "meshperf_known_hosts", None)),
                      ssh_config=path(getattr(opt, "meshperf_ssh_config", None)),
                      connect_timeout_s=getattr(opt, "meshperf_connect_timeout", 10.0),
                      tool_paths={name: getattr(opt, "meshperf_" + name) for name in TOOL_BINARIES
                                  if getattr(opt, "meshperf_" + name, None)},
                      local_tools=local_tools)
