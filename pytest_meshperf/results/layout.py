"""The run directory's layout: file names, the schema version, mesh.csv's columns, a journal line's head, atomic JSON writes.

    <mesh-out>/<run-id>/run.json          run and cluster metadata, written at start
    <mesh-out>/<run-id>/journal/*.jsonl   one line per finished measurement, fsynced before the next starts
    <mesh-out>/<run-id>/index/*.jsonl     per journal line: where it is, its summary row and mesh.csv rows
    <mesh-out>/<run-id>/mesh.json         assembled from the journal at the end (schema: schema/mesh.schema.json)
    <mesh-out>/<run-id>/mesh.csv          one row per measured instance
    <mesh-out>/latest -> <run-id>
"""
from __future__ import annotations

import json
import os
import re

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
MESH_FILE = "mesh.json"
CSV_FILE = "mesh.csv"
JOURNAL_DIR = "journal"
INDEX_DIR = "index"
LATEST = "latest"
CSV_METRICS = ("throughput_bps", "throughput_reverse_bps", "retransmits", "jitter_ms", "lost_percent",
               "lost_packets", "packets",
               "cpu_local_percent", "cpu_remote_percent", "latency_mean_us", "latency_p50_us", "latency_p90_us",
               "latency_p99_us", "transaction_rate")


def _write_json_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


_JSON_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_HEAD = re.compile(rb'\{"src":(' + _JSON_STRING + rb'),"dst":(' + _JSON_STRING + rb'),"test":(' + _JSON_STRING
                   + rb'),')


def record_head(line: bytes) -> tuple[str, str, str] | None:
    """(src, dst, test) of a journal line as Journal.append writes it, without parsing the rest; or None."""
    head = _HEAD.match(line)
    if head is None:
        return None
    try:
        return tuple(json.loads(part) for part in head.groups())
    except ValueError:
        return None
