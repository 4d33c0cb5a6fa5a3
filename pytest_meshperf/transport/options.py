"""Run-wide SSH settings, apart from the SSH stack itself: reading options must not import paramiko."""

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

REMOTE_HOME_DIR = ".meshperf"
CONNECT_TIMEOUT_S = 10.0


@dataclass
class SshOptions:
    """Run-wide SSH settings; per-host inventory keys override some of them."""
    host_key_check: Optional[str] = None      # None: inventory key, then ssh_config, then "yes"
    known_hosts: Optional[str] = None         # None: ssh_config UserKnownHostsFile, then ~/.ssh/known_hosts
    ssh_config: Optional[str] = None          # None: ~/.ssh/config (as OpenSSH)
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    tool_paths: Dict[str, str] = field(default_factory=dict)    # binary -> path on every node (--iperf3, --netserver)
    local_tools: Dict[str, str] = field(default_factory=dict)   # binary -> local file to upload (--local-iperf3)
    echo: Optional[Callable[[str], None]] = None                # -v: show every remote command
    remote_dir: str = REMOTE_HOME_DIR                           # on each node; relative paths are in the home
