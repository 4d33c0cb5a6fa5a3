"""What ``SshNode`` runs on a node and reads back: one exec channel's result, boot.py's facts line, ``mkdir -p``
over SFTP, and the script that stops and finds agents (sent as ``python3 -I -S -c SCRIPT ARGS``)."""
from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class CommandResult:
    exited: int
    stdout: str
    stderr: str


# Stops agents of one node and finds the others, in one command:
#   AGENTS_SCRIPT NODE PIDS MODE [LOG]
# PIDS: comma-separated, the recorded agents to stop (may be empty).  MODE: '-' (only those), 'find' (also
# list this user's other agents of NODE in this network namespace), 'all' (and stop them too).  SIGTERM
# makes an agent stop its tools and exit; wait (bounded), then SIGKILL (its tools die with it:
# PR_SET_PDEATHSIG).  Only a process whose command line is NODE's meshperf agent is touched: a recorded PID
# may have been reused by anything since.  Prints {"stopped": [...], "others": [...]}; with LOG (the
# agent's log on the node), then 'log' and the log itself, which is then deleted (or 'nolog').
AGENTS_SCRIPT = """\
import json, os, signal, sys, time
node, mode = sys.argv[1], sys.argv[3]
recorded = [int(p) for p in sys.argv[2].split(',') if p]
def is_agent(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            args = handle.read().decode('utf-8', 'replace').split('\\0')
    except OSError:
        return False
    agent = 'pytest_meshperf.agent' in args or any(a.endswith('agent.pyz') for a in args)
    return agent and any(args[i:i + 2] == ['--node', node] for i in range(len(args)))
others = []
if mode != '-':
    me, net = os.getuid(), os.readlink('/proc/self/ns/net')
    for pid in map(int, filter(str.isdigit, os.listdir('/proc'))):
        try:
            mine = os.stat('/proc/%d' % pid).st_uid == me and os.readlink('/proc/%d/ns/net' % pid) == net
        except OSError:
            continue
        if mine and pid not in recorded and is_agent(pid):
            others.append(pid)
running = [pid for pid in recorded + (others if mode == 'all' else []) if is_agent(pid)]
def signal_all(signum):
    for pid in filter(is_agent, running):
        try:
            os.kill(pid, signum)
        except OSError:  # gone meanwhile
            pass
signal_all(signal.SIGTERM)
deadline = time.time() + 10
while any(map(is_agent, running)) and time.time() < deadline:
    time.sleep(0.05)
signal_all(signal.SIGKILL)
print(json.dumps({'stopped': running, 'others': others}))
if len(sys.argv) > 4:
    try:
        with open(sys.argv[4], 'rb') as handle:
            data = handle.read()
    except OSError:
        print('nolog')
    else:
        print('log')
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        os.remove(sys.argv[4])  # only once written out
"""


#   LAUNCH_SCRIPT REMOTE_DIR BUNDLE SHA256 BOOT-ARGS...
# Runs before anything from the remote dir does (the controller sends it; the node's files are not trusted):
# the bundle (and every --expect'ed upload: tools the agent runs), every directory from / down to them and the
# bundle's unpacked copy (lib-*) must be owned by this
# user or root and writable by nobody else (a sticky directory above REMOTE_DIR, such as /tmp, is fine: others
# cannot replace what is ours in it); then the bundle's bytes must hash to SHA256.  Refused: one JSON line
# {"meshperf_refused": why} and exit LAUNCH_REFUSED; a missing or different bundle: exit 3 (NEEDS_UPLOAD,
# nothing printed).  Else the bundle runs (agent/boot.py) with BOOT-ARGS, in this process.
LAUNCH_REFUSED = 5
LAUNCH_SCRIPT = """\
import hashlib, json, os, runpy, stat, sys
root, bundle, digest = (os.path.realpath(p) if i < 2 else p for i, p in enumerate(sys.argv[1:4]))
me = os.getuid()
def why(path, below_root):
    try:
        st = os.lstat(path)
    except OSError as exc:
        return None if exc.errno == 2 else '%s: %s' % (path, exc)
    if st.st_uid not in (me, 0):
        return '%s belongs to uid %d, not to this user (%d) or root' % (path, st.st_uid, me)
    if st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and not below_root):
        return '%s is writable by %s (mode %04o)' % (path, 'group and others' if st.st_mode & 0o022 == 0o022
                                                    else 'its group' if st.st_mode & 0o020 else 'others',
                                                    stat.S_IMODE(st.st_mode))
    return None
def refuse(reason):
    sys.stdout.write(json.dumps({'meshperf_refused': 'refusing to run the agent from %s: %s; whoever can write '
                                 'there could run code as this user (chmod 700 it, or choose another '
                                 '--mesh-remote-dir)' % (root, reason)}) + '\\n')
    sys.exit(REFUSED)
args = sys.argv[4:]
shipped = [os.path.realpath(args[i + 1].rpartition('=')[0]) for i in range(len(args) - 1) if args[i] == '--expect']
for target in [bundle] + shipped:   # the bundle, and every uploaded tool the agent will run
    parts = target.split('/')
    for depth in range(2, len(parts) + 1):
        path = '/'.join(parts[:depth])
        reason = why(path, path == root or path.startswith(root + '/'))
        if reason:
            refuse(reason)
lib = os.path.join(os.path.dirname(bundle), 'lib-' + digest[:16])
if os.path.isdir(lib) and not os.path.islink(lib):
    for top, dirs, files in os.walk(lib):
        for name in [top] + [os.path.join(top, n) for n in dirs + files]:
            reason = why(name, True)
            if reason:
                refuse(reason)
elif os.path.lexists(lib):
    refuse('%s is not a directory' % lib)
try:
    with open(bundle, 'rb') as handle:
        ok = hashlib.sha256(handle.read()).hexdigest() == digest
except OSError:
    ok = False
if not ok:
    sys.exit(3)
sys.argv = [bundle] + sys.argv[4:]
runpy.run_path(bundle, run_name='__main__')
""".replace("REFUSED", str(LAUNCH_REFUSED))


def read_to_eof(recv: Callable[[int], bytes], deadline: float) -> bytes:
    data = b""
    while time.monotonic() < deadline:  # recv itself times out (channel timeout); this bounds the total
        chunk = recv(65536)
        if not chunk:
            return data
        data += chunk
    raise socket.timeout()


def facts_line(stdout: str) -> dict[str, Any] | None:
    """boot.py's facts line in a command's output, or None."""
    for line in stdout.splitlines():
        if line.startswith('{"meshperf_boot"'):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def sftp_makedirs(sftp: Any, path: str) -> None:
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
            sftp.mkdir(prefix, mode=0o700)   # nobody else may write where the agent runs from (LAUNCH_SCRIPT)
        except OSError:
            sftp.stat(prefix)  # created meanwhile by a node sharing this home directory: fine; else it raises
