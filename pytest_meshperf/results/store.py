"""The run directory and the mesh result file.

    <mesh-out>/<run-id>/run.json          run and cluster metadata, written at start
    <mesh-out>/<run-id>/journal/*.jsonl   one line per finished measurement, fsynced before the next starts
    <mesh-out>/<run-id>/index/*.jsonl     per journal line: where it is, its summary row and mesh.csv rows
    <mesh-out>/<run-id>/mesh.json         assembled from the journal at the end (schema: schema/mesh.schema.json)
    <mesh-out>/<run-id>/mesh.csv          one row per measured instance
    <mesh-out>/latest -> <run-id>

Every process (plain pytest, each xdist worker) appends to its own journal file,
and after each record a line to its index file.  ``assemble`` streams: it
indexes the journal lines, then copies one record at a time into mesh.json, so
no run holds every raw tool output in memory at once.  It copies each record's
bytes as they were journaled; the index spares it reading the journal to find
them and parsing their rows and mesh.csv rows, and where an index line is
missing it reads the journal itself (1000 nodes: docs/performance.md).
mesh.json is written to a temporary name and renamed, so it is always valid.
"""

import csv
import io
import json
import os
import re
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from pytest_meshperf import __version__
from pytest_meshperf.errors import UsageError
from pytest_meshperf.measure.measurement import iso

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
        return Journal(os.path.join(self.path, JOURNAL_DIR, "%s.jsonl" % writer),
                       os.path.join(self.path, INDEX_DIR, "%s.jsonl" % writer))


class Journal:
    """Append-only JSON lines; each append is on disk (fsync) before it returns.

    After each record, a line goes to ``index_path`` (when given): where the record is in the journal, and
    what its row and mesh.csv rows are (``_index_entry``).  That index is a cache for ``assemble``, not
    fsynced: where it lacks a line, assemble reads the journal instead."""

    def __init__(self, path, index_path=None):
        self.path, self.index_path = path, index_path
        self._handle = self._index = None

    def append(self, record: Dict[str, Any]):
        if self._handle is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._handle = open(self.path, "ab")
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        offset = os.fstat(self._handle.fileno()).st_size
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        if self.index_path is not None:
            entry = _index_entry(line, offset, record)
            if entry is not None:
                try:
                    if self._index is None:
                        os.makedirs(os.path.dirname(self.index_path), exist_ok=True)
                        self._index = open(self.index_path, "ab")
                    self._index.write(entry)
                    self._index.flush()
                except OSError:   # a cache: without it assemble reads the journal
                    pass

    def close(self):
        for handle in (self._handle, self._index):
            if handle is not None:
                handle.close()
        self._handle = self._index = None


@dataclass(**({"slots": True} if sys.version_info >= (3, 10) else {}))   # a run can have 10^6 of them
class Row:
    """What the terminal summary and reports need of one measurement, without its raw data."""
    src: str
    dst: str
    test: str
    name: str
    status: str
    metrics: Dict[str, float]
    messages: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)   # the record's: why its figures may mislead


@dataclass
class Assembled:
    path: str
    rows: List[Row]
    counts: Dict[str, int]


# -- assembling mesh.json from the journal ------------------------------------------------------------
#
# A journal line is a record as Journal.append writes it: json.dumps(Measurement.to_record() + "name"),
# compact, on one line, so it starts with its pair and test key.  A run of 1000 nodes journals about
# 10^6 of them, several GB, mostly tool output ("raw").  Assembling copies each line's bytes into
# mesh.json as they are (the record without src, dst and test), so mesh.json holds what the journal
# holds; only the spacing inside an entry differs from json.dumps' default.
#
# What else a record gives (its row for the terminal summary, its mesh.csv rows) comes from the index
# line Journal.append wrote after it, which also says where the record is: then the journal is read
# only to copy the records.  A journal region without index lines (a journal written without an index,
# or the index's last line lost in a crash) is read line by line: a line is copied as it is if it has
# the usual shape, and only its small fields are parsed (status, metrics, the instances' fields before
# their "raw", thresholds, error, warnings, name); a line of another shape is parsed in full and
# re-serialised; a line that is not JSON (cut off when its writer died) is skipped.  An index line
# that does not match its journal line makes assemble start again without the index.

_JSON_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_HEAD = re.compile(rb'\{"src":(' + _JSON_STRING + rb'),"dst":(' + _JSON_STRING + rb'),"test":(' + _JSON_STRING
                   + rb'),')
_INDEX_AT = re.compile(rb'"journal":\[(\d+),(\d+)\],')
_STATUSES = {'"passed"': "passed", '"failed"': "failed", '"error"': "error"}
_STATUS_NAMES = {name: name for name in _STATUSES.values()}
INDEX_CHUNK_BYTES = 8 * 1024 * 1024   # journal read while indexing, at a time
READ_BATCH_BYTES = 16 * 1024 * 1024   # journal lines read at a time, in file order, then written in mesh order
_READ_GAP_BYTES = 64 * 1024           # lines this close in a file are read with one read, the gap too


def _csv_rows(record, metrics, error):
    """mesh.csv's rows of a record, from the instance column on (the columns before are run id, src, dst,
    test and status), as csv.writer writes them."""
    if record.get("kind") == "check":   # a check's verdict (checks.py) measured nothing
        return []
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    rows = []
    for inst in record.get("instances") or [None]:
        get = (inst or {}).get
        inst_metrics = get("metrics", metrics)
        writer.writerow([get("instance"), get("pid"), get("client_port"), get("server_port"), get("start"),
                         get("end"), *[inst_metrics.get(m, "") for m in CSV_METRICS], get("command", ""),
                         error or ""])
        rows.append(text.getvalue())
        text.seek(0)
        text.truncate()
    return rows


def _index_entry(line, offset, record):
    """The index line of journal line ``line`` (bytes, found at ``offset``) holding ``record``: the line's
    own src/dst/test head, "journal": [offset, length], then status, name, metrics, messages, warnings and
    mesh.csv's rows; None when the line does not start with that head."""
    head = _HEAD.match(line)
    if head is None:
        return None
    try:
        status, metrics, error = record.get("status", "error"), record.get("metrics", {}), record.get("error")
        messages = [t["message"] for t in record.get("thresholds", []) if t.get("passed") is False]
        if error:
            messages.insert(0, error)
        fields = {"journal": [offset, len(line)], "status": status, "name": record.get("name", record["test"]),
                  "metrics": metrics, "messages": messages, "warnings": record.get("warnings") or [],
                  "csv": _csv_rows(record, metrics, error)}
        return line[:head.end()] + json.dumps(fields, separators=(",", ":"))[1:].encode("ascii") + b"\n"
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def record_head(line: bytes):
    """(src, dst, test) of a journal line as Journal.append writes it, without parsing the rest; or None."""
    head = _HEAD.match(line)
    if head is None:
        return None
    try:
        return tuple(json.loads(part) for part in head.groups())
    except ValueError:
        return None


class _StaleIndex(Exception):
    """An index line does not match its journal line."""


def _another_head(data, start, end):
    """Whether a record head (src, dst and test as strings) begins in ``data[start:end]``."""
    at = data.find(b'{"src":"', start, end)
    while at >= 0:
        if _HEAD.match(data, at, end):
            return True
        at = data.find(b'{"src":"', at + 1, end)
    return False


def _advise_sequential(handle):
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass


class _Index:
    """One entry per journal record, in compact columns (no per-line objects): which file, where in it,
    the ids of its source, destination and test key; where its src/dst/test head ends (0: parse the line
    in full); and its index line, if any (``line_size`` 0: none).  Entries are numbered in journal order
    (files by name, lines in order)."""

    def __init__(self):
        self.paths, self.index_paths = [], []
        self.nodes, self.tests = {}, {}            # name -> id, in order of first appearance
        self._node_tokens, self._test_tokens = {}, {}   # a name's JSON spelling -> id
        self.file, self.offset, self.size = array("I"), array("q"), array("I")
        self.src, self.dst, self.test = array("I"), array("I"), array("I")
        self.copy = array("I")
        self.line_offset, self.line_size = array("q"), array("I")

    def __len__(self):
        return len(self.offset)

    @staticmethod
    def _id(table, name):
        return table.setdefault(name, len(table))

    def _token_id(self, tokens, table, token):
        found = tokens.get(token)
        if found is None:
            found = tokens[token] = self._id(table, json.loads(token))
        return found

    def _append(self, file_no, offset, size, head, copy, line_offset=0, line_size=0):
        self.file.append(file_no)
        self.offset.append(offset)
        self.size.append(size)
        self.src.append(self._token_id(self._node_tokens, self.nodes, head.group(1)))
        self.dst.append(self._token_id(self._node_tokens, self.nodes, head.group(2)))
        self.test.append(self._token_id(self._test_tokens, self.tests, head.group(3)))
        self.copy.append(copy)
        self.line_offset.append(line_offset)
        self.line_size.append(line_size)

    def add(self, file_no, offset, data, start=0, end=None):
        """The journal line ``data[start:end]``, found at ``offset`` in journal file ``file_no``."""
        end = len(data) if end is None else end
        head = _HEAD.match(data, start, end)
        # A line that ends in a newline was written whole; a second record head in it means a writer
        # died mid-line and another one appended to the same file: parse those in full.
        if head is not None and data[end - 1:end] == b"\n" and not _another_head(data, head.end(), end):
            self._append(file_no, offset, end - start, head, head.end() - start)
            return
        try:
            record = json.loads(data[start:end])
            names = (record["src"], record["dst"], record["test"])
        except (ValueError, KeyError, TypeError):
            return  # not a record: a line cut off when its writer died
        if not all(isinstance(name, str) for name in names):
            return
        self.file.append(file_no)
        self.offset.append(offset)
        self.size.append(end - start)
        self.src.append(self._id(self.nodes, names[0]))
        self.dst.append(self._id(self.nodes, names[1]))
        self.test.append(self._id(self.tests, names[2]))
        self.copy.append(0)
        self.line_offset.append(0)
        self.line_size.append(0)

    def scan(self, file_no, handle, start, stop):
        """Every line of the journal region [start, stop), read front to back in large chunks."""
        handle.seek(start)
        offset, pending = start, b""   # where the next line starts; the start of a line the last chunk cut
        while offset + len(pending) < stop:
            chunk = handle.read(min(INDEX_CHUNK_BYTES, stop - offset - len(pending)))
            if not chunk:
                break
            at = 0
            if pending:
                newline = chunk.find(b"\n")
                if newline < 0:
                    pending += chunk
                    continue
                line = pending + chunk[:newline + 1]
                self.add(file_no, offset, line)
                offset, at, pending = offset + len(line), newline + 1, b""
            newline = chunk.find(b"\n", at)
            while newline >= 0:
                self.add(file_no, offset, chunk, at, newline + 1)
                offset += newline + 1 - at
                at = newline + 1
                newline = chunk.find(b"\n", at)
            pending = chunk[at:]
        if pending:   # a last line without its newline: kept only if it is a whole record
            self.add(file_no, offset, pending)

    def read_index(self, file_no, handle, size, index_path):
        """The journal's records from its index file, and the regions no index line covers read line by
        line; False if there is no index file."""
        try:
            lines = open(index_path, "rb")
        except OSError:
            return False
        covered, line_offset = 0, 0   # journal read up to here; where the next index line starts
        with lines:
            for line in lines:
                head = _HEAD.match(line)
                at = _INDEX_AT.match(line, head.end()) if head is not None and line.endswith(b"\n") else None
                if at is not None:
                    offset, length = int(at.group(1)), int(at.group(2))
                    if covered <= offset and offset + length <= size:
                        if offset > covered:
                            self.scan(file_no, handle, covered, offset)
                        self._append(file_no, offset, length, head, head.end(), line_offset, len(line))
                        covered = offset + length
                line_offset += len(line)
        if covered < size:
            self.scan(file_no, handle, covered, size)
        return True


def _index(journal_dir, index_dir=None) -> _Index:
    """Every record of the journal files (sorted by name): from their index files in ``index_dir`` where
    there are any, else read once, front to back."""
    index = _Index()
    if not os.path.isdir(journal_dir):
        return index
    for name in sorted(os.listdir(journal_dir)):
        if not name.endswith(".jsonl"):
            continue
        path = os.path.join(journal_dir, name)
        index_path = os.path.join(index_dir, name) if index_dir else None
        file_no = len(index.paths)
        index.paths.append(path)
        index.index_paths.append(index_path)
        with open(path, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            if index_path is None or not index.read_index(file_no, handle, size, index_path):
                _advise_sequential(handle)
                index.scan(file_no, handle, 0, size)
    return index


def _mesh_order(index, cluster):
    """The index's entry numbers in mesh.json order: source and destination in inventory order (nodes not
    in it after, by name), then test key; a test journaled twice under one key in journal order."""
    order = {name: i for i, name in enumerate(cluster.get("nodes", {}))}
    node_names, test_names = list(index.nodes), list(index.tests)
    node_rank, test_rank = [0] * len(node_names), [0] * len(test_names)
    for rank, i in enumerate(sorted(range(len(node_names)),
                                    key=lambda i: (order.get(node_names[i], len(order)), node_names[i]))):
        node_rank[i] = rank
    for rank, i in enumerate(sorted(range(len(test_names)), key=test_names.__getitem__)):
        test_rank[i] = rank
    nodes, tests, count = max(len(node_names), 1), max(len(test_names), 1), len(index)
    # One integer per entry: (source, destination, test, journal position), sorted as numbers.
    keys = [((node_rank[s] * nodes + node_rank[d]) * tests + test_rank[t]) * count + i
            for i, (s, d, t) in enumerate(zip(index.src, index.dst, index.test))]
    keys.sort()
    return array("q", (key % count for key in keys))


_decoder = json.JSONDecoder()


def _value_at(text, at, end=None):
    """The JSON value starting at ``text[at]``; ValueError unless it ends at ``end`` (when given)."""
    value, stop = _decoder.raw_decode(text, at)
    if end is not None and stop != end:
        raise ValueError("the value ends at %d, not %d" % (stop, end))
    return value


def _tail(text, start, end):
    """thresholds, error, warnings and name of the record text whose members from "thresholds" on are
    ``text[start:end]``.  Where they follow each other as to_record and the fixture write them
    (thresholds, error, ..., warnings, group, name last), the thresholds are parsed only if one failed
    (only those end up in a row) and the rest not at all; otherwise the whole tail is parsed."""
    at_error = text.find('],"error":', start, end) if text.startswith('"thresholds":[', start) else -1
    listed = text[start + 13:at_error + 1]   # the thresholds, if that "]" closes their list
    if at_error >= 0 and text[end - 1] == "}" and listed.count("[") == listed.count("]") and \
            listed.count("{") == listed.count("}"):
        try:
            error, at = _decoder.raw_decode(text, at_error + 10)
            at_name = text.rfind(',"name":', at, end)
            name = _value_at(text, at_name + 8, end - 1) if at_name >= 0 else None
            # warnings: the value that ends where the top-level "group" (else "name") begins
            at_group = text.rfind(',"group":', at, at_name)
            after = at_group if at_group >= 0 else at_name
            at_warnings = text.rfind(',"warnings":', at, after)
            if at_warnings >= 0:
                warnings = _value_at(text, at_warnings + 12, after)
            elif '"warnings":' in text[at:end]:
                name = None   # somewhere else: parse it all
            else:
                warnings = []
            # "passed":false can only be a key and its value (quotes in strings are escaped).
            thresholds = _value_at(listed, 0, len(listed)) if '"passed":false' in listed else []
        except ValueError:
            name = None
        if isinstance(name, str):
            return {"thresholds": thresholds, "error": error, "warnings": warnings, "name": name}
    return json.loads("{" + text[start:end])


def _skim(line, start):
    """(body end, status, metrics, tail, instances) of a line as Journal.append writes it, whose head
    (src, dst, test) ends at ``start``, without parsing the tool outputs: ``line[start:end]`` is the record
    after its src/dst/test keys, ``tail`` its thresholds (those that failed, at least), error, warnings and
    name, ``instances`` each instance's fields before its "raw".  None when the line does not have that
    shape.  ``line`` is bytes or a memoryview."""
    try:
        text = str(line, "ascii")   # json.dumps writes ASCII; positions in the text are positions in the line
    except UnicodeDecodeError:
        return None
    end = len(text) - (2 if text.endswith("\r\n") else 1 if text.endswith("\n") else 0)
    at_instances = text.find(',"instances":[', start)
    if at_instances < 0:
        return None
    at_thresholds = text.rfind('],"thresholds":[', at_instances)
    at_metrics = text.rfind(',"metrics":', start, at_instances)
    at_status = text.rfind(',"status":', start, at_metrics) if at_metrics >= 0 else -1
    if at_thresholds < 0 or at_status < 0:
        return None
    status = _STATUSES.get(text[at_status + 10:at_metrics])
    if status is None:
        return None
    metrics_text = text[at_metrics + 11:at_instances]
    instances = []
    at = at_instances + 14
    try:
        while at < at_thresholds:
            if not text.startswith('{"instance":', at):
                return None
            at_raw = text.find(',"raw":', at, at_thresholds)
            if at_raw < 0:
                return None
            instance = json.loads(text[at:at_raw] + "}")
            if not isinstance(instance, dict) or instance.get("instance") != len(instances) + 1:
                return None
            instances.append(instance)
            following = text.find('},{"instance":', at_raw, at_thresholds)
            at = following + 2 if following >= 0 else at_thresholds
        # One instance: the pair's metrics are its metrics, mostly the very same text.
        metrics = None
        if len(instances) == 1 and isinstance(instances[0].get("metrics"), dict):
            at_own = text.rfind(',"metrics":', at_instances, at_raw)
            if text[at_own + 11:at_raw] == metrics_text:
                metrics = dict(instances[0]["metrics"])
        if metrics is None:
            metrics = json.loads(metrics_text)
        tail = _tail(text, at_thresholds + 2, end)
    except ValueError:
        return None
    if not isinstance(metrics, dict) or not isinstance(tail, dict):
        return None
    return end, status, metrics, tail, instances


class _MeshWriter:
    """Writes mesh.json's sources, mesh.csv and the rows, one record at a time, in mesh order."""

    def __init__(self, out, csv_handle, run_id):
        self.out, self.csv_handle, self.run_id = out, csv_handle, run_id
        self.csv = csv.writer(csv_handle)
        self.rows, self.counts = [], {"passed": 0, "failed": 0, "error": 0}
        self.current_src = self.current_dst = None
        self.first_test = True
        self._keys = {}     # name -> its JSON spelling as a key
        self._names = {}    # one string object per distinct test name and metric name kept in the rows
        self._quoted = {}   # run id, node, test key, status -> as csv.writer writes it

    def _key(self, name):
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = json.dumps(name).encode("ascii")
        return key

    def _entry(self, src, dst, test, opening, body):
        out = self.out
        if src != self.current_src:
            out.write(b'%s\n%s: {"destinations": {' % (b"}}}}," if self.current_src is not None else b"",
                                                        self._key(src)))
            self.current_src, self.current_dst = src, None
        if dst != self.current_dst:
            out.write(b'%s\n %s: {"tests": {' % (b"}}," if self.current_dst is not None else b"", self._key(dst)))
            self.current_dst, self.first_test = dst, True
        out.write(b'%s\n  %s: %s' % (b"" if self.first_test else b",", self._key(test), opening))
        out.write(body)
        self.first_test = False

    def _row(self, src, dst, test, name, status, metrics, messages, warnings):
        names = self._names
        self.counts[status] = self.counts.get(status, 0) + 1
        row_metrics = {names.setdefault(k, k): v for k, v in metrics.items()} if isinstance(metrics, dict) \
            else metrics
        self.rows.append(Row(src, dst, test, names.setdefault(name, name) if isinstance(name, str) else name,
                             status, row_metrics, messages, warnings))

    def _csv_field(self, text):
        quoted = self._quoted.get(text)
        if quoted is None:
            field = io.StringIO(newline="")
            csv.writer(field).writerow([text, ""])   # two fields: csv.writer quotes a lone empty one
            quoted = self._quoted[text] = field.getvalue()[:-3]
        return quoted

    def add_indexed(self, src, dst, test, line, copy, index_line):
        """Writes journal line ``line`` (its head ends at ``copy``) with what its index line says."""
        if len(line) <= copy or line[:copy] != index_line[:copy] or line[-1] != 10:   # 10: "\n"
            raise _StaleIndex(src, dst, test)
        try:
            fields = json.loads(str(index_line, "ascii"))
            status, csv_rows = fields["status"], fields["csv"]
            status = _STATUS_NAMES.get(status, status)   # one string object per status in the rows
            row = (fields["name"], status, fields["metrics"], fields["messages"], fields["warnings"])
        except (ValueError, KeyError, TypeError):   # UnicodeDecodeError is a ValueError
            raise _StaleIndex(src, dst, test)
        end = len(line) - (2 if line[-2] == 13 else 1)   # 13: "\r"
        self._entry(src, dst, test, b"{", line[copy:end])
        self._row(src, dst, test, *row)
        field = self._csv_field
        prefix = "%s,%s,%s,%s,%s," % (field(self.run_id), field(src), field(dst), field(test), field(status))
        for csv_row in csv_rows:
            self.csv_handle.write(prefix + csv_row)

    def add(self, src, dst, test, line, copy):
        """Writes one journal line (bytes or memoryview; ``copy``: where its head ends, 0: parse it in
        full); False if it is not a record after all (nothing written)."""
        parts = _skim(line, copy) if copy else None
        if parts is not None:
            end, status, metrics, tail, instances = parts
            self._entry(src, dst, test, b"{", line[copy:end])
        else:
            try:
                record = json.loads(bytes(line))
            except ValueError:
                return False
            if not isinstance(record, dict):
                return False
            entry = {k: v for k, v in record.items() if k not in ("src", "dst", "test")}
            self._entry(src, dst, test, b"", json.dumps(entry, separators=(",", ":")).encode("ascii"))
            status, metrics, tail = record.get("status", "error"), record.get("metrics", {}), record
            instances = record.get("instances")
        error = tail.get("error")
        messages = [t["message"] for t in tail.get("thresholds", []) if t.get("passed") is False]
        if error:
            messages.insert(0, error)
        self._row(src, dst, test, tail.get("name", test), status, metrics, messages, tail.get("warnings") or [])
        fields = (self.run_id, src, dst, test, status)
        for inst in (instances or [None]) if tail.get("kind") != "check" else ():
            get = (inst or {}).get
            inst_metrics = get("metrics", metrics)
            self.csv.writerow([*fields, get("instance"), get("pid"), get("client_port"), get("server_port"),
                               get("start"), get("end"), *[inst_metrics.get(m, "") for m in CSV_METRICS],
                               get("command", ""), error or ""])
        return True

    def close(self):
        if self.current_src is not None:
            self.out.write(b"}}}}")


def _read_lines(handles, files, offsets, sizes, entries):
    """{entry: its line as a memoryview} for ``entries`` (sorted, i.e. in file order) of the columns
    ``files``, ``offsets``, ``sizes``: neighbouring lines are read with one read."""
    lines = {}
    count, position = len(entries), 0
    while position < count:
        first = entries[position]
        file_no, start = files[first], offsets[first]
        stop, last = start + sizes[first], position + 1
        while last < count:
            entry = entries[last]
            if files[entry] != file_no or not 0 <= offsets[entry] - stop <= _READ_GAP_BYTES:
                break
            stop = offsets[entry] + sizes[entry]
            last += 1
        handle = handles[file_no]
        handle.seek(start)
        data = memoryview(handle.read(stop - start))
        for entry in entries[position:last]:
            at = offsets[entry] - start
            lines[entry] = data[at:at + sizes[entry]]
        position = last
    return lines


def _copy_records(index, order, writer):
    """Reads the lines in batches of about READ_BATCH_BYTES (each batch in file order, so reads run forward
    through the files) and hands them to ``writer`` in mesh order; the first record of a key wins."""
    node_names, test_names = list(index.nodes), list(index.tests)
    handles = [open(path, "rb", buffering=0) for path in index.paths]
    index_handles = [open(path, "rb", buffering=0) if path and os.path.exists(path) else None
                     for path in index.index_paths]
    try:
        written = None   # (src, dst, test) ids of the last record written
        position, count = 0, len(order)
        while position < count:
            batch, size = [], 0
            while position < count and (not batch or size < READ_BATCH_BYTES):
                entry = order[position]
                batch.append(entry)
                size += index.size[entry]
                position += 1
            in_file_order = sorted(batch)
            lines = _read_lines(handles, index.file, index.offset, index.size, in_file_order)
            index_lines = _read_lines(index_handles, index.file, index.line_offset, index.line_size,
                                      [e for e in in_file_order if index.line_size[e]])
            for entry in batch:
                key = (index.src[entry], index.dst[entry], index.test[entry])
                if key == written:   # a test re-run under the same key keeps its first record
                    continue
                src, dst, test = node_names[key[0]], node_names[key[1]], test_names[key[2]]
                if index.line_size[entry]:
                    writer.add_indexed(src, dst, test, lines.pop(entry), index.copy[entry], index_lines.pop(entry))
                    written = key
                elif writer.add(src, dst, test, lines.pop(entry), index.copy[entry]):
                    written = key
    finally:
        for handle in handles + index_handles:
            if handle is not None:
                handle.close()


def assemble(run_dir: RunDir, finished: float, interrupted: bool, exit_status: Optional[int]) -> Assembled:
    try:
        return _assemble(run_dir, finished, interrupted, exit_status, use_index=True)
    except _StaleIndex:   # an index that does not match the journal: read the journal alone
        return _assemble(run_dir, finished, interrupted, exit_status, use_index=False)


def _assemble(run_dir, finished, interrupted, exit_status, use_index):
    meta = run_dir.read_meta()
    run, cluster = dict(meta["run"]), meta["cluster"]
    index = _index(os.path.join(run_dir.path, JOURNAL_DIR), os.path.join(run_dir.path, INDEX_DIR) if use_index
                   else None)
    order = _mesh_order(index, cluster)
    run.update(finished=iso(finished), interrupted=bool(interrupted), exit_status=exit_status)
    tmp = run_dir.mesh_json + ".tmp"
    with open(tmp, "wb", buffering=1024 * 1024) as out, open(run_dir.csv + ".tmp", "w", newline="",
                                                              encoding="utf-8") as csv_handle:
        writer = _MeshWriter(out, csv_handle, run.get("id"))
        writer.csv.writerow(["run_id", "src", "dst", "test", "status", "instance", "pid", "client_port",
                             "server_port", "start", "end", *CSV_METRICS, "command", "error"])
        out.write(('{\n"meshperf_version": %s,\n"schema_version": %d,\n"run": %s,\n"cluster": %s,\n"sources": {'
                   % (json.dumps(__version__), SCHEMA_VERSION, json.dumps(run, indent=1),
                      json.dumps(cluster, indent=1))).encode("ascii"))
        _copy_records(index, order, writer)
        writer.close()
        out.write(b"\n}\n}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, run_dir.mesh_json)
    os.replace(run_dir.csv + ".tmp", run_dir.csv)
    return Assembled(run_dir.mesh_json, writer.rows, writer.counts)


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
                         % ("%s %s" % (what, path) if what else path)) from None


def iter_entries(mesh: Dict[str, Any], checks: bool = False):
    """(source, destination, test key, entry) of every measurement in a loaded mesh.json, in its order; with
    ``checks``, the verdicts of check items (``"kind": "check"``, checks.py) too."""
    for src, source in mesh.get("sources", {}).items():
        for dst, destination in source.get("destinations", {}).items():
            for key, entry in destination.get("tests", {}).items():
                if checks or entry.get("kind") != "check":
                    yield src, dst, key, entry


def entry_messages(entry: Dict[str, Any]) -> List[str]:
    """What went wrong in an entry: its error, the messages of the thresholds it failed, then its baseline's."""
    messages = [t["message"] for t in entry.get("thresholds", []) if t.get("passed") is False]
    messages += [m["message"] for m in ((entry.get("baseline") or {}).get("metrics") or {}).values()
                 if m.get("passed") is False and m.get("message")]
    if entry.get("error"):
        messages.insert(0, entry["error"])
    return messages


def load_rows(mesh_path: str):
    """(node names, rows, counts) of a mesh.json, for summaries and reports."""
    with open(mesh_path, encoding="utf-8") as handle:
        mesh = json.load(handle)
    rows, counts = [], {"passed": 0, "failed": 0, "error": 0}
    for src, dst, key, entry in iter_entries(mesh, checks=True):
        rows.append(Row(src, dst, key, entry.get("name", key), entry["status"], entry.get("metrics", {}),
                        entry_messages(entry), entry.get("warnings") or []))
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return list(mesh.get("cluster", {}).get("nodes", {})), rows, counts
