"""The run directory and the mesh result file.

    <mesh-out>/<run-id>/run.json          run and cluster metadata, written at start
    <mesh-out>/<run-id>/journal/*.jsonl   one line per finished measurement, fsynced before the next starts
    <mesh-out>/<run-id>/mesh.json         assembled from the journal at the end (schema: schema/mesh.schema.json)
    <mesh-out>/<run-id>/mesh.csv          one row per measured instance
    <mesh-out>/latest -> <run-id>

Every process (plain pytest, each xdist worker) appends to its own journal file.
``assemble`` streams: it indexes the journal lines, then copies one record at a
time into mesh.json, so no run holds every raw tool output in memory at once.
mesh.json is written to a temporary name and renamed, so it is always valid.
"""

import csv
import datetime
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from . import __version__
from .measurement import iso

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
MESH_FILE = "mesh.json"
CSV_FILE = "mesh.csv"
JOURNAL_DIR = "journal"
LATEST = "latest"
CSV_METRICS = ("throughput_bps", "throughput_reverse_bps", "retransmits", "jitter_ms", "lost_percent",
               "lost_packets", "packets",
               "cpu_local_percent", "cpu_remote_percent", "latency_mean_us", "latency_p50_us", "latency_p90_us",
               "latency_p99_us", "transaction_rate")


def new_run_id(epoch: float) -> str:
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return "%s-%s" % (stamp, secrets.token_hex(2))


def _write_json_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class RunDir:
    out_dir: str
    run_id: str

    @property
    def path(self) -> str:
        return os.path.join(self.out_dir, self.run_id)

    @property
    def mesh_json(self) -> str:
        return os.path.join(self.path, MESH_FILE)

    @property
    def csv(self) -> str:
        return os.path.join(self.path, CSV_FILE)

    @property
    def logs(self) -> str:
        return os.path.join(self.path, "agents")

    def create(self, run: Dict[str, Any], cluster: Dict[str, Any]):
        os.makedirs(os.path.join(self.path, JOURNAL_DIR), exist_ok=True)
        self.write_meta(run, cluster)
        self._point_latest()

    def write_meta(self, run, cluster):
        _write_json_atomic(os.path.join(self.path, RUN_FILE), {"run": run, "cluster": cluster})

    def read_meta(self):
        with open(os.path.join(self.path, RUN_FILE), encoding="utf-8") as handle:
            return json.load(handle)

    def _point_latest(self):
        link = os.path.join(self.out_dir, LATEST)
        tmp = link + ".%d.tmp" % os.getpid()
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.run_id, tmp)
            os.replace(tmp, link)
        except OSError:  # no symlinks here: a plain file naming the run
            with open(link + ".txt", "w") as handle:
                handle.write(self.run_id + "\n")

    def journal(self, writer: str) -> "Journal":
        return Journal(os.path.join(self.path, JOURNAL_DIR, "%s.jsonl" % writer))


class Journal:
    """Append-only JSON lines; each append is on disk (fsync) before it returns."""

    def __init__(self, path):
        self.path = path
        self._handle = None

    def append(self, record: Dict[str, Any]):
        if self._handle is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class Row:
    """What the terminal summary and reports need of one measurement, without its raw data."""
    src: str
    dst: str
    test: str
    name: str
    status: str
    metrics: Dict[str, float]
    messages: List[str] = field(default_factory=list)


@dataclass
class Assembled:
    path: str
    rows: List[Row]
    counts: Dict[str, int]


def _index(journal_dir):
    """(file, offset, src, dst, test) per journal line; unreadable tails (a writer killed mid-line) are skipped."""
    entries = []
    if not os.path.isdir(journal_dir):
        return entries
    for name in sorted(os.listdir(journal_dir)):
        if not name.endswith(".jsonl"):
            continue
        path = os.path.join(journal_dir, name)
        with open(path, "rb") as handle:
            offset = 0
            for line in handle:
                try:
                    record = json.loads(line)
                    entries.append((path, offset, record["src"], record["dst"], record["test"]))
                except (ValueError, KeyError, TypeError):
                    pass
                offset += len(line)
    return entries


def _read_at(path, offset):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return json.loads(handle.readline())


def assemble(run_dir: RunDir, finished: float, interrupted: bool, exit_status: Optional[int]) -> Assembled:
    meta = run_dir.read_meta()
    run, cluster = dict(meta["run"]), meta["cluster"]
    order = {name: i for i, name in enumerate(cluster.get("nodes", {}))}
    entries = _index(os.path.join(run_dir.path, JOURNAL_DIR))
    entries.sort(key=lambda e: (order.get(e[2], len(order)), e[2], order.get(e[3], len(order)), e[3], e[4]))
    rows, counts = [], {"passed": 0, "failed": 0, "error": 0}
    run.update(finished=iso(finished), interrupted=bool(interrupted), exit_status=exit_status)
    tmp = run_dir.mesh_json + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out, open(run_dir.csv + ".tmp", "w", newline="",
                                                        encoding="utf-8") as csv_handle:
        writer = csv.writer(csv_handle)
        writer.writerow(["run_id", "src", "dst", "test", "status", "instance", "pid", "client_port", "server_port",
                         "start", "end", *CSV_METRICS, "command", "error"])
        out.write('{\n"meshperf_version": %s,\n"schema_version": %d,\n"run": %s,\n"cluster": %s,\n"sources": {'
                  % (json.dumps(__version__), SCHEMA_VERSION, json.dumps(run, indent=1), json.dumps(cluster, indent=1)))
        current_src = current_dst = None
        seen_tests = set()
        for path, offset, src, dst, test in entries:
            if (src, dst, test) in seen_tests:  # a test re-run under the same key keeps its first record
                continue
            seen_tests.add((src, dst, test))
            record = _read_at(path, offset)
            if src != current_src:
                if current_src is not None:
                    out.write("}}}}")
                out.write('%s\n%s: {"destinations": {' % ("," if current_src is not None else "", json.dumps(src)))
                current_src, current_dst = src, None
            if dst != current_dst:
                if current_dst is not None:
                    out.write("}},")
                out.write('\n %s: {"tests": {' % json.dumps(dst))
                current_dst, first_test = dst, True
            entry = {k: v for k, v in record.items() if k not in ("src", "dst", "test")}
            out.write('%s\n  %s: %s' % ("" if first_test else ",", json.dumps(test), json.dumps(entry)))
            first_test = False
            status = record.get("status", "error")
            counts[status] = counts.get(status, 0) + 1
            messages = [t["message"] for t in record.get("thresholds", []) if t.get("passed") is False]
            if record.get("error"):
                messages.insert(0, record["error"])
            rows.append(Row(src, dst, test, record.get("name", test), status, record.get("metrics", {}), messages))
            for inst in record.get("instances") or [None]:
                inst = inst or {}
                metrics = inst.get("metrics", record.get("metrics", {}))
                writer.writerow([run.get("id"), src, dst, test, status, inst.get("instance"), inst.get("pid"),
                                 inst.get("client_port"), inst.get("server_port"), inst.get("start"),
                                 inst.get("end"), *[metrics.get(m, "") for m in CSV_METRICS],
                                 inst.get("command", ""), record.get("error") or ""])
        if current_src is not None:
            out.write("}}}}")
        out.write("\n}\n}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, run_dir.mesh_json)
    os.replace(run_dir.csv + ".tmp", run_dir.csv)
    return Assembled(run_dir.mesh_json, rows, counts)


def resolve(path: str) -> str:
    """A mesh.json, a run directory, or a results folder (its ``latest`` run) -> the mesh.json path."""
    for candidate in (path, os.path.join(path, MESH_FILE), os.path.join(path, LATEST, MESH_FILE)):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(path)


def load_rows(mesh_path: str):
    """(node names, rows, counts) of a mesh.json, for summaries and reports."""
    with open(mesh_path, encoding="utf-8") as handle:
        mesh = json.load(handle)
    rows, counts = [], {"passed": 0, "failed": 0, "error": 0}
    for src, source in mesh.get("sources", {}).items():
        for dst, destination in source.get("destinations", {}).items():
            for key, entry in destination.get("tests", {}).items():
                messages = [t["message"] for t in entry.get("thresholds", []) if t.get("passed") is False]
                if entry.get("error"):
                    messages.insert(0, entry["error"])
                rows.append(Row(src, dst, key, entry.get("name", key), entry["status"], entry.get("metrics", {}),
                                messages))
                counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return list(mesh.get("cluster", {}).get("nodes", {})), rows, counts
