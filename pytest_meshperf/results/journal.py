"""The journal: one line per finished measurement, fsynced before the next starts, and its index line."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from pytest_meshperf.errors import ResultsWriteError
from pytest_meshperf.results.layout import (
    _HEAD,
    CSV_METRICS,
)


class Journal:
    """Append-only JSON lines; each append is on disk (fsync) before it returns.

    After each record, a line goes to ``index_path`` (when given): where the record is in the journal, and
    what its row and mesh.csv rows are (``_index_entry``).  That index is a cache for ``assemble``, not
    fsynced: where it lacks a line, assemble reads the journal instead."""

    def __init__(self, path: str, index_path: str | None = None) -> None:
        self.path, self.index_path = path, index_path
        self._handle = self._index = None

    def append(self, record: dict[str, Any]) -> None:
        """ResultsWriteError when the line cannot be made durable (a full disk): the journal is cut back to
        the records before it, each whole."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        offset = None
        try:
            if self._handle is None:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._handle = open(self.path, "ab", buffering=0)   # unbuffered: a failed write is this line's
            offset = os.fstat(self._handle.fileno()).st_size
            view = memoryview(line)
            while view:   # bounded: each write takes at least a byte or raises
                view = view[self._handle.write(view):]
            os.fsync(self._handle.fileno())
        except OSError as exc:
            self._cut(offset)
            raise ResultsWriteError(f"cannot write the journal {self.path}: {exc.strerror or exc}")
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

    def _cut(self, offset):
        """After a failed append: back to ``offset`` (a torn line would spoil the journal's last record)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            if offset is not None:
                os.ftruncate(handle.fileno(), offset)
            handle.close()
        except OSError:
            pass

    def close(self) -> None:
        """Close the journal and its index; the index is a cache: an error closing it is dropped."""
        handle, index, self._handle, self._index = self._handle, self._index, None, None
        if index is not None:
            try:
                index.close()
            except OSError:
                pass
        if handle is not None:
            try:
                handle.close()
            except OSError as exc:
                raise ResultsWriteError(f"cannot close the journal {self.path}: {exc.strerror or exc}")


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
                  "doubtful": record.get("doubtful") or [],
                  "csv": _csv_rows(record, metrics, error)}
        return line[:head.end()] + json.dumps(fields, separators=(",", ":"))[1:].encode("ascii") + b"\n"
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
