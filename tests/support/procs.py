"""Watching the processes an inner pytest run starts: agents and tool processes.

Every loop here is bounded in time: a test that waits for a process waits at
most its deadline and then fails with what it saw.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil


@contextlib.contextmanager
def inner_pytest(pytester, *args):
    """A pytest run in the background (``proc``), killed on the way out whatever happened to the test.

    Its SIGINT is the default, as in a terminal: a shell's background job (CI started with ``&``) inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler, so a Ctrl-C test would see the run
    go on to the end and exit 0."""
    proc = pytester.popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *map(str, args)],
                          stdin=pytester.CLOSE_STDIN, preexec_fn=_default_sigint)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


TOOL_NAMES = ("iperf3", "netperf", "netserver")


def is_iperf3(proc):
    return is_tool(proc, ("iperf3",))


def is_tool(proc, names=TOOL_NAMES):
    """A measurement tool process: iperf3, netperf or netserver (and netserver's per-test children)."""
    try:
        return proc.name() in names
    except psutil.Error:
        return False


def argv(proc):
    """A process's command line; [] once it has ended (a zombie has none: psutil raises)."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def is_agent(proc):
    return "pytest_meshperf.agent" in " ".join(argv(proc))


def wait_for(predicate, timeout_s, interval_s=0.05, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def find_iperf3(pid, role_flag, bind=None):
    """The first iperf3 below ``pid`` whose command line has ``role_flag`` ('-c' client, '-s' server), bound to
    ``bind`` if given (``-B ADDRESS``: a client binds its source's address, a server its destination's)."""
    return find_tool(pid, "iperf3", role_flag, bind)


def find_tool(pid, name, flag=None, bind=None):
    """The first ``name`` process below ``pid`` (whose command line has ``flag`` and ``-B bind``, if given)."""
    for proc in descendants(pid):
        try:
            argv = proc.cmdline()
            bound = bind is None or any(a == "-B" and b == bind for a, b in zip(argv, argv[1:]))
            if is_tool(proc, (name,)) and (flag is None or flag in argv) and bound:
                return proc
        except psutil.Error:
            continue
    return None


def alive(procs):
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def journal_records(out_dir):
    """Records journaled so far by the newest run under ``out_dir``."""
    latest = os.path.join(str(out_dir), "latest", "journal")
    records = []
    if os.path.isdir(latest):
        for name in os.listdir(latest):
            with open(os.path.join(latest, name)) as handle:
                for line in handle:
                    if line.endswith("\n"):
                        records.append(json.loads(line))
    return records


def processes_on(tb, names=("iperf3",), agent=True):
    """Tool and agent processes living in the testbed's network namespaces."""
    found = []
    for node in tb.nodes:
        pids = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if comm in names or (agent and "agent.pyz" in cmdline):
                found.append((node.name, int(pid), cmdline.strip()))
    return found
