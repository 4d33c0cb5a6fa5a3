"""Processes and files on the testbed's host side: which tools exist, namespaces' pids, killing them, ports, files."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence

from pytest_meshperf.testbed.spec import TESTBED_RANGE, TestbedError

log = logging.getLogger("meshperf.testbed")

SSH_PORT = 22
# bounds of every wait (seconds unless told)
CMD_TIMEOUT = 30.0  # one ip / tc / ssh-keygen command
TERM_GRACE = 1.5  # SIGTERM -> SIGKILL
KILL_WAIT = 3.0


def which(name: str) -> str | None:
    path = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin:/usr/bin:/bin"
    return shutil.which(name, path=path)


REQUIRED_TOOLS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "unshare": "util-linux",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}


def unavailable_reason() -> str | None:
    """None when this machine can build a netns testbed, else why not (one line)."""
    if not hasattr(os, "geteuid") or not os.path.isdir("/proc/self/ns"):
        return "netns testbed needs Linux network namespaces; use --cluster local:N"
    uid = os.geteuid()
    if uid != 0:
        return f"netns testbed needs root (running as uid {uid}); run as root or use --cluster local:N"
    missing = [f"{tool} ({pkg})" for tool, pkg in REQUIRED_TOOLS.items() if which(tool) is None]
    if missing:
        return f"netns testbed needs {', '.join(missing)}: not found; install them or use --cluster local:N"
    problem, _ = _probe([which("ip"), "netns", "list"])
    if problem:
        return f"netns testbed: 'ip netns list' failed ({problem}); use --cluster local:N"
    problem, refused = _probe([which("unshare"), "--net", "true"])
    if problem:
        needs = "; it needs CAP_SYS_ADMIN" if refused else ""
        return f"netns testbed cannot create network namespaces ({problem}){needs}; use --cluster local:N"
    return None


def _probe(argv: list[str]) -> tuple[str | None, bool]:
    """(why ``argv`` failed, or None when it exited 0; whether it ran and exited non-zero)."""
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc), False
    return (first_line(proc.stderr), True) if proc.returncode != 0 else (None, False)


def first_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else "no error output"


def log_tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, errors="replace") as fh:
            text = fh.read()[-4000:]
    except OSError:
        return "no log"
    picked = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(picked) if picked else "empty log"


def proc_gone(pid: int) -> bool:
    """True when ``pid`` no longer exists or is a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    # state is the field after the ")" that closes comm
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state in (b"Z", b"X")


def ns_pids(netns_names: Sequence[str]) -> dict[str, list[int]]:
    """Processes whose network namespace is one of ``netns_names`` (like ``ip netns pids``)."""
    wanted: dict[tuple[int, int], str] = {}
    for name in netns_names:
        try:
            st = os.stat(f"/run/netns/{name}")
        except OSError:
            continue
        wanted[(st.st_dev, st.st_ino)] = name
    found: dict[str, list[int]] = {name: [] for name in wanted.values()}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        name = wanted.get((st.st_dev, st.st_ino))
        if name is not None:
            found[name].append(int(entry))
    return found


def kill_all(pids: Sequence[int], grace: float = TERM_GRACE) -> list[int]:
    """SIGTERM, then SIGKILL what is left after ``grace`` s; the pids still alive after that."""
    alive = [p for p in pids if not proc_gone(p)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)):
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except OSError as exc:
                log.debug("kill %s %d: %s", sig.name, pid, exc)
        deadline = time.monotonic() + wait
        for _ in range(int(wait / 0.01) + 1):
            alive = [p for p in alive if not proc_gone(p)]
            if not alive or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
    return alive


def port_answers(address: str, port: int = SSH_PORT, timeout: float = 0.5) -> bool:
    check_own_address(address)
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_own_address(address: str) -> None:
    # the hard rule: this module only ever talks to the benchmarking range
    if ipaddress.IPv4Address(address) not in TESTBED_RANGE:  # pragma: no cover - defensive
        raise TestbedError(f"refusing to connect to {address}: outside {TESTBED_RANGE}")


def start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()  # field 22: starttime


def list_dir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            log.debug("listdir %s: %s", path, exc)
        return []


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=KILL_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout=KILL_WAIT)
        except subprocess.TimeoutExpired:
            log.debug("pid %d not reaped", proc.pid)


def write_file(path: str, text: str, mode: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
