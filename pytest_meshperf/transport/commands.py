"""What ``SshNode`` runs on a node and reads back: one exec channel's result, boot.py's facts line, ``mkdir -p``
over SFTP, and the scripts that stop and find agents (sent as ``python3 -I -S -c SCRIPT ARGS``)."""

import json
import socket
import time
from dataclasses import dataclass


@dataclass
class CommandResult:
    exited: int
    stdout: str
    stderr: str


# SIGTERM makes an agent stop its tool processes and exit; wait (bounded), then SIGKILL (its tools
# die with it: PR_SET_PDEATHSIG).  Only a process whose command line is a meshperf agent is touched.
# With a third argument (the agent's log on the node), the log follows on stdout and is deleted.
STOP_SCRIPT = """\
import os, signal, sys, time
pid, node = int(sys.argv[1]), sys.argv[2]
def alive():
    # Only this node's agent: a recorded PID may have been reused by anything else since.
    try:
        os.kill(pid, 0)
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            args = handle.read().decode('utf-8', 'replace').split('\\0')
    except OSError:
        return False
    agent = 'pytest_meshperf.agent' in args or any(a.endswith('agent.pyz') for a in args)
    return agent and any(args[i:i + 2] == ['--node', node] for i in range(len(args)))
was = alive()
if was:
    os.kill(pid, signal.SIGTERM)
deadline = time.time() + 10
while alive() and time.time() < deadline:
    time.sleep(0.05)
if alive():
    os.kill(pid, signal.SIGKILL)
print('stopped' if was else 'absent')
if len(sys.argv) > 3:  # the agent's log: printed after a 'log' line, then removed
    try:
        with open(sys.argv[3], 'rb') as handle:
            data = handle.read()
    except OSError:
        print('nolog')
    else:
        print('log')
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        os.remove(sys.argv[3])  # only once written out
"""


FIND_AGENTS_SCRIPT = """\
import os, sys
me, net = os.getuid(), os.readlink('/proc/self/ns/net')
want = ['--node', sys.argv[1]]
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        if os.stat('/proc/' + pid).st_uid != me or os.readlink('/proc/%s/ns/net' % pid) != net:
            continue
        with open('/proc/%s/cmdline' % pid, 'rb') as handle:
            args = handle.read().decode('utf-8', 'replace').split('\\0')
    except OSError:
        continue
    agent = any(a.endswith('agent.pyz') for a in args) or 'pytest_meshperf.agent' in args
    if agent and any(args[i:i + 2] == want for i in range(len(args))):
        print(pid)
"""


def read_to_eof(recv, deadline):
    data = b""
    while time.monotonic() < deadline:  # recv itself times out (channel timeout); this bounds the total
        chunk = recv(65536)
        if not chunk:
            return data
        data += chunk
    raise socket.timeout()


def facts_line(stdout):
    """boot.py's facts line in a command's output, or None."""
    for line in stdout.splitlines():
        if line.startswith('{"meshperf_boot"'):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def sftp_makedirs(sftp, path):
    """``mkdir -p`` over SFTP (relative paths start in the home directory, as commands do)."""
    parts = [p for p in path.split("/") if p]
    for depth in range(1, len(parts) + 1):
        prefix = ("/" if path.startswith("/") else "") + "/".join(parts[:depth])
        try:
            sftp.stat(prefix)
            continue
        except FileNotFoundError:
            pass
        try:
            sftp.mkdir(prefix)
        except OSError:
            sftp.stat(prefix)  # created meanwhile by a node sharing this home directory: fine; else it raises
