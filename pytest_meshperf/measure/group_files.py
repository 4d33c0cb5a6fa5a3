"""The run directory's group files: ``<run>/groups/<hash>.json``, one per group measured at once (a burst or
incast test, a round), written (fsynced) under ``<hash>.lock`` by the process that measured it, and read by
every other process (xdist workers) whose pair tests take their shares from it.  A worker killed mid-group
drops the lock, and the next test of the group runs it again.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from typing import IO, Any

from pytest_meshperf.errors import ClientRun, MeasurementError
from pytest_meshperf.measure.measurement import Instance, Measurement
from pytest_meshperf.measure.runner import LEASE_WAIT_S

GROUP_DIR = "groups"


def measurement_from_dict(data: dict[str, Any]) -> Measurement:
    data = dict(data)
    data["instances"] = [Instance(**inst) for inst in data["instances"]]
    data["client"] = ClientRun(**data["client"]) if data.get("client") else None
    return Measurement(**data)


def group_file(folder: str, digest: str, label: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The group ``digest``'s file in ``folder``: read if another process (an xdist worker) ran the group, else
    ``run()`` under the file's lock and written (fsynced) before any pair test of the group reports from it."""
    lock = lock_group(folder, digest, label, LEASE_WAIT_S)
    with lock:
        group = read_group(folder, digest)
        if group is None:
            group = run()
            write_group(folder, digest, group)
        return group


def lock_group(folder: str, digest: str, label: str, wait_s: float,
               cancelled: Callable[[], bool] | None = None) -> IO[str] | None:
    """The group's lock file, locked (close it to unlock): waits up to ``wait_s`` (MeasurementError past it);
    with ``wait_s`` 0 one try.  None when another process holds it (``wait_s`` 0) or ``cancelled()``."""
    os.makedirs(folder, exist_ok=True)
    handle = open(os.path.join(folder, digest + ".lock"), "w")
    try:
        deadline, delay = time.monotonic() + wait_s, 0.01
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if wait_s == 0 or (cancelled is not None and cancelled()):
                    handle.close()
                    return None
                if time.monotonic() > deadline:
                    raise MeasurementError(f"the group of {label} did not finish within {wait_s:.0f} s")
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
    except BaseException:
        handle.close()
        raise


def read_group(folder: str, digest: str) -> dict[str, Any] | None:
    """The group's file, if a process has written it."""
    try:
        with open(os.path.join(folder, digest + ".json"), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def write_group(folder: str, digest: str, group: dict[str, Any]) -> None:
    path = os.path.join(folder, digest + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(group))  # json.dump encodes in Python, json.dumps in C: 5x faster here
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
