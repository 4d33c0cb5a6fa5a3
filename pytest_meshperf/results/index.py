"""The journal's index: where each record's line is, read from the index files or found by scanning the journal."""
from __future__ import annotations

import json
import os
import re
from array import array

from pytest_meshperf.results.layout import (
    _HEAD,
)

_INDEX_AT = re.compile(rb'"journal":\[(\d+),(\d+)\],')
_STATUSES = {'"passed"': "passed", '"failed"': "failed", '"error"': "error"}
_STATUS_NAMES = {name: name for name in _STATUSES.values()}
INDEX_CHUNK_BYTES = 8 * 1024 * 1024   # journal read while indexing, at a time


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
