"""``--mesh-export FILE``: a run's measurements as the spec's flat JSON list (netperf-orchestrate ``--export``).

    [{"client": "node1", "server": "node2", "client_address": "127.0.0.11", "server_address": "127.0.0.12",
      "success": true, "exit_code": 0, "elapsed_time": 2.01, "stdout": "<the tool's output>",
      "command": "iperf3 -c 127.0.0.12 ...", "test": "...", "instance": 1, "status": "passed", "error": null}, ...]

One entry per tool instance of every measurement (one per pair and test with the
default single instance), in mesh.json's order, built from an assembled mesh.json;
the spec's keys first, then meshperf's own (test, instance, status, error).  A
measurement that produced no result has one entry with success false and the reason
in ``error``; if its client ran (the entry's ``client``), with that client's command,
exit code, elapsed time and stdout (its last 64 KiB), as the spec's users debug a failed link.  Written to a temporary file, fsynced and renamed: never half written.
"""
from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from typing import Any

from pytest_meshperf.errors import UsageError

SPEC_KEYS = ("client", "server", "client_address", "server_address", "success", "exit_code", "elapsed_time",
             "stdout", "command")
MESHPERF_KEYS = ("test", "instance", "status", "error")


def export_path(value: str | None, base_dir: str, option: str = "--mesh-export") -> str | None:
    """``--mesh-export``'s absolute path, checked before anything is measured; UsageError with the fix."""
    if not value:
        return None
    path = os.path.abspath(os.path.join(base_dir, os.path.expanduser(value)))
    if os.path.isdir(path):
        raise UsageError(f"{option} {value}: is a directory; give the path of the JSON file to write")
    if not os.path.isdir(os.path.dirname(path)):
        raise UsageError(f"{option} {value}: the directory {os.path.dirname(path)} does not exist; create it or give "
                         "another path")
    return path


def export_entries(mesh: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The export's entries of a loaded mesh.json, in its order (source, destination, test, instance)."""
    nodes = mesh["cluster"]["nodes"]
    for src, source in mesh["sources"].items():
        for dst, destination in source["destinations"].items():
            pair = {"client": src, "server": dst, "client_address": _address(nodes, src),
                    "server_address": _address(nodes, dst)}
            for test, entry in destination["tests"].items():
                if entry.get("kind") == "check":   # a check's verdict (checks.py) measured nothing
                    continue
                for instance in entry["instances"] or [None]:
                    yield _entry(pair, test, entry, instance)


def _entry(pair, test, entry, instance):
    measured = instance is not None and entry["status"] != "error"
    client = entry.get("client")
    if instance is None and client:   # an error after the client ran: what it ran, how it ended, what it printed
        elapsed, exit_code, stdout, command = (_seconds(client["started"], client["ended"]), client["exit_code"],
                                               client["stdout"], client["command"])
    elif instance is None:  # an error before any client ran: no command, no output; the reason is in error
        elapsed, exit_code, stdout, command = _seconds(entry["started"], entry["finished"]), None, "", ""
    else:
        elapsed = _seconds(instance["start"], instance["end"])
        exit_code, stdout, command = instance.get("exit_code"), _stdout(instance["raw"]), instance["command"]
    out = dict(pair, success=measured, exit_code=exit_code, elapsed_time=elapsed, stdout=stdout, command=command)
    out.update(test=test, instance=instance["instance"] if instance else None, status=entry["status"],
               error=entry["error"])
    return out


def _address(nodes, name):
    node = nodes.get(name) or {}
    return node.get("data_address") or node.get("address")


def _stdout(raw):
    """The tool's output as text: kept text as it is, netperf's stdout, parsed JSON (iperf3 -J) serialized again."""
    if raw is None:
        return ""
    if isinstance(raw, dict) and "selectors" in raw and isinstance(raw.get("stdout"), str):
        return raw["stdout"]   # netperf: its own output, as netperf-orchestrate exported it
    return raw if isinstance(raw, str) else json.dumps(raw, indent=2)


def _seconds(start, end):
    if not start or not end:
        return None
    parse = datetime.datetime.fromisoformat
    return round((parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds(), 3)


def write_export(mesh_path: str, path: str) -> int:
    """Write the export of the mesh.json at ``mesh_path`` to ``path`` atomically; returns the number of entries.

    mesh.json is read whole (about its size in memory); the entries are written one at a time."""
    with open(mesh_path, encoding="utf-8") as handle:
        mesh = json.load(handle)
    tmp = f"{path}.tmp-{os.getpid()}"
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("[")
            for entry in export_entries(mesh):
                handle.write(",\n  " if count else "\n  ")
                handle.write(json.dumps(entry))
                count += 1
            handle.write("\n]\n" if count else "]\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count
