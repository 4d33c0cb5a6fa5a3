"""Validate meshperf result files: ``from support.meshcheck import validate_mesh_file``.

``validate_mesh_file(path)`` checks a mesh.json against
``pytest_meshperf/schema/mesh.schema.json`` (strict JSON: NaN and Infinity are
rejected) plus what a JSON Schema cannot say: every source and destination is
a node of ``cluster.nodes``, no node measures itself, and ``run.id`` names the
run directory.  ``validate_mesh_csv(path, doc)`` checks mesh.csv against the
mesh.json it was written with.  Both raise ``AssertionError`` listing every
problem, and return what they read.
"""

import csv
import json
import os
from importlib import resources

from jsonschema import Draft202012Validator, FormatChecker

CSV_HEADER = [
    "run_id", "src", "dst", "test", "status", "instance", "pid", "client_port", "server_port", "start", "end",
    "throughput_bps", "throughput_reverse_bps", "retransmits", "jitter_ms", "lost_percent", "lost_packets", "packets",
    "cpu_local_percent",
    "cpu_remote_percent", "latency_mean_us", "latency_p50_us", "latency_p90_us", "latency_p99_us",
    "transaction_rate", "command", "error",
]


def load_schema():
    """The packaged schema (as installed, so package-data is exercised too)."""
    text = resources.files("pytest_meshperf").joinpath("schema/mesh.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def validator():
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def schema_errors(doc):
    """Every schema violation of ``doc`` as 'path: message' lines (empty when valid)."""
    errors = sorted(validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {_short(e.message)}" for e in errors]


def _short(message, limit=300):
    return message if len(message) <= limit else message[:limit] + "..."


def _reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def load_strict(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle, parse_constant=_reject_constant)


def consistency_errors(doc, path=None):
    """Cross-references a JSON Schema cannot express."""
    problems = []
    nodes = (doc.get("cluster") or {}).get("nodes") or {}
    for src, source in (doc.get("sources") or {}).items():
        if src not in nodes:
            problems.append(f"sources/{src}: not a node of cluster.nodes")
        for dst in (source.get("destinations") or {}):
            if dst not in nodes:
                problems.append(f"sources/{src}/destinations/{dst}: not a node of cluster.nodes")
            if dst == src:
                problems.append(f"sources/{src}/destinations/{dst}: a node measured against itself")
    run_id = (doc.get("run") or {}).get("id")
    if path is not None and run_id is not None:
        folder = os.path.basename(os.path.dirname(os.path.realpath(path)))
        if folder != run_id:
            problems.append(f"run/id: {run_id!r}, but the file is in run directory {folder!r}")
    return problems


def validate_mesh_file(path):
    """Validate the mesh.json at ``path``; returns the parsed document."""
    doc = load_strict(path)
    problems = schema_errors(doc) + consistency_errors(doc, path)
    if problems:
        listed = "\n  ".join(problems)
        raise AssertionError(f"{path} does not follow mesh.schema.json:\n  {listed}")
    return doc


def iter_entries(doc):
    """(src, dst, test key, entry) for every measurement, in file order."""
    for src, source in doc["sources"].items():
        for dst, destination in source["destinations"].items():
            for key, entry in destination["tests"].items():
                yield src, dst, key, entry


def validate_mesh_csv(path, doc):
    """mesh.csv has the documented header and one row per instance (one for an entry without any, none for
    a check's verdict)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    problems = []
    if not rows or rows[0] != CSV_HEADER:
        problems.append(f"header is {rows[0] if rows else None!r}, expected {CSV_HEADER!r}")
    expected = []
    for src, dst, key, entry in iter_entries(doc):
        if entry.get("kind") == "check":
            continue
        for inst in entry["instances"] or [None]:
            expected.append([doc["run"]["id"], src, dst, key, entry["status"],
                             "" if inst is None else str(inst["instance"])])
    got = [row[:6] for row in rows[1:]]
    if got != expected:
        problems.append(f"rows (run_id, src, dst, test, status, instance) {got!r} do not match mesh.json's "
                        f"{expected!r}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(CSV_HEADER):
            problems.append(f"line {number} has {len(row)} columns, expected {len(CSV_HEADER)}")
    if problems:
        listed = "\n  ".join(problems)
        raise AssertionError(f"{path}:\n  {listed}")
    return rows


def node_overlaps(doc):
    """Pairs of measurements in which one node sent twice, or received twice, at the same moment.

    Uses the instances' recorded start and end (the client process's lifetime on the node)."""
    import datetime

    def when(text):
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()

    spans = {}
    for src, dst, key, entry in iter_entries(doc):
        for inst in entry.get("instances") or []:   # a check's verdict (kind "check") has none
            span = (when(inst["start"]), when(inst["end"]), f"{key} {src}->{dst}")
            spans.setdefault(("send", src), []).append(span)
            spans.setdefault(("recv", dst), []).append(span)
    clashes = []
    for (role, node), items in spans.items():
        items.sort()
        for (s1, e1, a), (s2, e2, b) in zip(items, items[1:]):
            if s2 < e1:
                clashes.append(f"{node} {role}: {a} overlaps {b}")
    return clashes
