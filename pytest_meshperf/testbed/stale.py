"""Testbeds left behind by a process that died without tearing down (SIGKILL): find them, remove them."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Sequence

from pytest_meshperf.testbed.processes import (
    CMD_TIMEOUT,
    first_line,
    kill_all,
    list_dir,
    ns_pids,
    proc_gone,
    start_time,
    which,
)
from pytest_meshperf.testbed.spec import TestbedError

log = logging.getLogger("meshperf.testbed")

KILL_ROUNDS = 5  # scans of the namespaces' processes in down()
OWNER_ALIAS = "meshperf-testbed"  # alias of the root veth: owner pid and start time


def remove_testbed(tag: str, extra_pids: Sequence[int] = ()) -> list[str]:
    """Kill every process in the ``tag`` namespaces, delete its root veth and namespaces; the problems left."""
    ip = which("ip") or "ip"
    prefix = tag + "-"
    namespaces = sorted(e for e in list_dir("/run/netns") if e.startswith(prefix))
    left: list[int] = []
    # rescan: a process may fork (sshd accepting, a shell starting a command) while we kill
    for _ in range(KILL_ROUNDS):
        pids = [p for ps in ns_pids(namespaces).values() for p in ps if not proc_gone(p)]
        pids += [p for p in extra_pids if p not in pids and not proc_gone(p)]
        if not pids:
            break
        log.debug("testbed %s: killing %d processes", tag, len(pids))
        left = kill_all(pids)
    problems = []
    if left:
        problems.append(f"processes {left} survived SIGKILL")
    veth = f"{tag}-h"
    if os.path.exists(f"/sys/class/net/{veth}"):
        log.debug("testbed %s: ip link del %s", tag, veth)
        proc = subprocess.run([ip, "link", "del", veth], check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT)
        if proc.returncode != 0 and os.path.exists(f"/sys/class/net/{veth}"):
            problems.append(f"ip link del {veth}: {first_line(proc.stderr)}")
    if namespaces:
        log.debug("testbed %s: deleting %d namespaces", tag, len(namespaces))
        subprocess.run(
            [ip, "-force", "-batch", "-"],
            input="".join(f"netns del {ns}\n" for ns in namespaces),
            check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT,
        )  # fmt: skip
    remaining = [e for e in list_dir("/run/netns") if e.startswith(prefix)]
    remaining += [e for e in list_dir("/sys/class/net") if e.startswith(prefix)]
    if remaining:
        problems.append("still there: " + ", ".join(sorted(remaining)))
    return problems


def owner_alias() -> str:
    return f"{OWNER_ALIAS}:pid={os.getpid()}:start={start_time(os.getpid())}"


def stale_testbeds() -> list[str]:
    """Tags of testbeds whose owning process is gone (killed before it could tear down)."""
    ip = which("ip") or "ip"
    try:
        proc = subprocess.run([ip, "-j", "link", "show"], check=False, capture_output=True, text=True, timeout=CMD_TIMEOUT)
        links = json.loads(proc.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    stale = []
    for link in links:
        alias, name = link.get("ifalias", ""), link.get("ifname", "")
        found = re.fullmatch(rf"{OWNER_ALIAS}:pid=(\d+):start=(\d+)", alias)
        if not found or not re.fullmatch(r"mp[0-9a-f]{4}-h", name):
            continue
        pid, start = int(found.group(1)), found.group(2)
        if proc_gone(pid) or start_time(pid) != start:
            stale.append(name[:-2])
    return stale


def cleanup_stale() -> list[str]:
    """Remove every testbed whose owner process died (e.g. pytest got SIGKILL); the tags removed.

    Testbeds of running processes (parallel runs, other users) are left alone.
    """
    removed = []
    for tag in stale_testbeds():
        problems = remove_testbed(tag)
        if problems:
            raise TestbedError(f"netns testbed {tag}: cleaning up the stale testbed failed: {'; '.join(problems)}")
        log.debug("testbed %s: stale testbed removed", tag)
        removed.append(tag)
    return removed
