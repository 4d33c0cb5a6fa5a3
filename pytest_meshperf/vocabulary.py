"""Words that the inventory, pytest's options and the ``meshperf`` command share (no imports: start-up reads it)."""

#: Host key checking: OpenSSH's StrictHostKeyChecking yes / accept-new / off.
from __future__ import annotations

HOST_KEY_CHECKS = ("yes", "accept-new", "off")
#: Binaries a node's agent runs: --BINARY names one on every node, --local-BINARY uploads one.
TOOL_BINARIES = ("iperf3", "netperf", "netserver")
