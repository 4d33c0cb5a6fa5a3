"""Reading results back: a run's mesh.json found from a folder or run directory, its entries and rows."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from pytest_meshperf.errors import UsageError
from pytest_meshperf.results.layout import (
    LATEST,
    MESH_FILE,
)
from pytest_meshperf.results.rows import Row


def resolve(path: str) -> str:
    """A mesh.json, a run directory, or a results folder (its ``latest`` run) -> the mesh.json path."""
    for candidate in (path, os.path.join(path, MESH_FILE), os.path.join(path, LATEST, MESH_FILE)):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(path)


def resolve_mesh(path: str, what: str = "") -> str:
    """``resolve`` for a path the user gave (``what``: the option or argument that named it); a one-line
    UsageError when there is no mesh.json there."""
    try:
        return resolve(path)
    except FileNotFoundError:
        raise UsageError("%s: no mesh.json there; give a mesh.json, a run directory or a results folder"
                         % (f"{what} {path}" if what else path)) from None


def iter_entries(mesh: dict[str, Any], checks: bool = False) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(source, destination, test key, entry) of every measurement in a loaded mesh.json, in its order; with
    ``checks``, the verdicts of check items (``"kind": "check"``, checks.py) too."""
    for src, source in mesh.get("sources", {}).items():
        for dst, destination in source.get("destinations", {}).items():
            for key, entry in destination.get("tests", {}).items():
                if checks or entry.get("kind") != "check":
                    yield src, dst, key, entry


def entry_messages(entry: dict[str, Any]) -> list[str]:
    """What went wrong in an entry: its error, the messages of the thresholds it failed, then its baseline's."""
    messages = [t["message"] for t in entry.get("thresholds", []) if t.get("passed") is False]
    messages += [m["message"] for m in ((entry.get("baseline") or {}).get("metrics") or {}).values()
                 if m.get("passed") is False and m.get("message")]
    if entry.get("error"):
        messages.insert(0, entry["error"])
    if not messages and entry.get("status") == "failed" and entry.get("doubtful"):   # --mesh-doubtful=fail
        messages.append("doubtful: " + "; ".join(entry["doubtful"]))
    return messages


def load_rows(mesh_path: str) -> tuple[list[str], list[Row], dict[str, int]]:
    """(node names, rows, counts) of a mesh.json, for summaries and reports."""
    return load_summary(mesh_path)[:3]


def load_summary(mesh_path: str) -> tuple[list[str], list[Row], dict[str, int], list[dict[str, Any]] | None]:
    """(node names, rows, counts, diagnosis) of a mesh.json; diagnosis None when the run made none."""
    with open(mesh_path, encoding="utf-8") as handle:
        mesh = json.load(handle)
    rows, counts = [], {"passed": 0, "failed": 0, "error": 0}
    for src, dst, key, entry in iter_entries(mesh, checks=True):
        rows.append(Row(src, dst, key, entry.get("name", key), entry["status"], entry.get("metrics", {}),
                        entry_messages(entry), entry.get("warnings") or [], entry.get("doubtful") or []))
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return list(mesh.get("cluster", {}).get("nodes", {})), rows, counts, mesh.get("diagnosis")
