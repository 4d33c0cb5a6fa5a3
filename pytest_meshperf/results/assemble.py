"""The mesh result file assembled from the journals: mesh.json and mesh.csv, streamed, written atomically.

Every process (plain pytest, each xdist worker) appends to its own journal file,
and after each record a line to its index file.  ``assemble`` streams: it
indexes the journal lines, then copies one record at a time into mesh.json, so
no run holds every raw tool output in memory at once.  It copies each record's
bytes as they were journaled; the index spares it reading the journal to find
them and parsing their rows and mesh.csv rows, and where an index line is
missing it reads the journal itself (1000 nodes: docs/performance.md).
mesh.json is written to a temporary name and renamed, so it is always valid.
"""
from __future__ import annotations

import csv
import io
import json
import os
from array import array
from dataclasses import dataclass

from pytest_meshperf import __version__
from pytest_meshperf.results.diagnosis_file import read_diagnosis
from pytest_meshperf.results.index import _STATUS_NAMES, _STATUSES, _index, _StaleIndex
from pytest_meshperf.results.layout import (
    CSV_METRICS,
    INDEX_DIR,
    JOURNAL_DIR,
    SCHEMA_VERSION,
)
from pytest_meshperf.results.rows import Row
from pytest_meshperf.results.rundir import RunDir
from pytest_meshperf.spec.units import iso


@dataclass
class Assembled:
    path: str
    rows: list[Row]
    counts: dict[str, int]


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

READ_BATCH_BYTES = 16 * 1024 * 1024   # journal lines read at a time, in file order, then written in mesh order
_READ_GAP_BYTES = 64 * 1024           # lines this close in a file are read with one read, the gap too


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
        raise ValueError(f"the value ends at {stop}, not {end}")
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
            # doubtful (validity.py): just before warnings, as to_record writes it
            at_doubtful = text.rfind(',"doubtful":', at, at_warnings) if at_warnings >= 0 else -1
            if at_doubtful >= 0:
                doubtful = _value_at(text, at_doubtful + 12, at_warnings)
            elif '"doubtful":' in text[at:end]:
                name = None
            else:
                doubtful = []
            # "passed":false can only be a key and its value (quotes in strings are escaped).
            thresholds = _value_at(listed, 0, len(listed)) if '"passed":false' in listed else []
        except ValueError:
            name = None
        if isinstance(name, str):
            return {"thresholds": thresholds, "error": error, "warnings": warnings, "doubtful": doubtful,
                    "name": name}
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

    def __init__(self, out, csv_handle, run_id, amend=None):
        self.out, self.csv_handle, self.run_id = out, csv_handle, run_id
        self.amend = amend or {}   # (src, dst, test) -> JSON of the entry's "diagnosis" (diagnosis_file.py)
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
        extra = self.amend.get((src, dst, test)) if self.amend else None
        if extra is not None:   # the record's last byte is its closing brace
            body = bytes(body)[:-1] + b',"diagnosis":' + extra + b"}"
        out.write(body)
        self.first_test = False

    def _row(self, src, dst, test, name, status, metrics, messages, warnings, doubtful=()):
        names = self._names
        self.counts[status] = self.counts.get(status, 0) + 1
        row_metrics = {names.setdefault(k, k): v for k, v in metrics.items()} if isinstance(metrics, dict) \
            else metrics
        self.rows.append(Row(src, dst, test, names.setdefault(name, name) if isinstance(name, str) else name,
                             status, row_metrics, messages, warnings, list(doubtful)))

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
            row = (fields["name"], status, fields["metrics"], fields["messages"], fields["warnings"],
                   fields.get("doubtful") or [])
        except (ValueError, KeyError, TypeError):   # UnicodeDecodeError is a ValueError
            raise _StaleIndex(src, dst, test)
        end = len(line) - (2 if line[-2] == 13 else 1)   # 13: "\r"
        self._entry(src, dst, test, b"{", line[copy:end])
        self._row(src, dst, test, *row)
        field = self._csv_field
        prefix = f"{field(self.run_id)},{field(src)},{field(dst)},{field(test)},{field(status)},"
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
        self._row(src, dst, test, tail.get("name", test), status, metrics, messages, tail.get("warnings") or [],
                  tail.get("doubtful") or [])
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


def assemble(run_dir: RunDir, finished: float, interrupted: bool, exit_status: int | None) -> Assembled:
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
        diagnosis = read_diagnosis(run_dir.path)
        writer = _MeshWriter(out, csv_handle, run.get("id"), _amendments(diagnosis))
        writer.csv.writerow(["run_id", "src", "dst", "test", "status", "instance", "pid", "client_port",
                             "server_port", "start", "end", *CSV_METRICS, "command", "error"])
        out.write((f'{{\n"meshperf_version": {json.dumps(__version__)},\n"schema_version": {SCHEMA_VERSION},\n"run": '
                   f'{json.dumps(run, indent=1)},\n"cluster": {json.dumps(cluster, indent=1)},\n"sources": '
                   '{').encode("ascii"))
        _copy_records(index, order, writer)
        writer.close()
        out.write(b"\n}")
        if diagnosis is not None:
            out.write(b',\n"diagnosis": ' + json.dumps(diagnosis.get("findings") or []).encode("ascii"))
        out.write(b"\n}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, run_dir.mesh_json)
    os.replace(run_dir.csv + ".tmp", run_dir.csv)
    return Assembled(run_dir.mesh_json, writer.rows, writer.counts)


def _amendments(diagnosis):
    """(src, dst, test) -> the JSON its entry gets as "diagnosis" (its findings, its re-tests)."""
    amend = {}
    for test, links in ((diagnosis or {}).get("links") or {}).items():
        for lid, part in links.items():
            src, _, dst = lid.partition("->")
            amend[(src, dst, test)] = json.dumps(part, separators=(",", ":")).encode("ascii")
    return amend
